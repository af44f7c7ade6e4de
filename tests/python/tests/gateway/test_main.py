"""The gateway as a process: configuration errors, `migrate`, serving, and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from pm.common.broker import free_port, wait_for_port
from tests.gateway.conftest import EchoUpstream, SigningKey


def run_gateway(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pm.gateway.main", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_bad_setting_stops_start_up_with_one_line_naming_it() -> None:
    process = run_gateway({"PM_GATEWAY_READ_TIMEOUT": "soon"})
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.strip().splitlines() == [
        "gateway: configuration error: PM_GATEWAY_READ_TIMEOUT must be a number, got 'soon'"
    ]


def test_migrate_has_nothing_to_do_and_exits_0() -> None:
    process = run_gateway({}, "migrate")
    process.communicate(timeout=30)
    assert process.returncode == 0


def test_serves_then_stops_gracefully_on_sigterm(
    upstreams: dict[str, tuple[EchoUpstream, str]], jwks: tuple, signing_key: SigningKey
) -> None:
    upstreams["patient"][0].delay = 1.0
    upstreams["patient"][0].slow_arrived.clear()
    port = free_port()
    process = run_gateway(
        {
            "PM_GATEWAY_PORT": str(port),
            "PM_AUTH_URL": upstreams["auth"][1],
            "PM_PATIENT_URL": upstreams["patient"][1],
            "PM_ANALYTICS_URL": upstreams["analytics"][1],
            "PM_JWKS_URL": jwks[1],
        }
    )
    try:
        wait_for_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        results: list[int] = []
        in_flight = threading.Thread(
            target=lambda: results.append(
                httpx.get(
                    f"{url}/api/patients/slow",
                    headers={"Authorization": f"Bearer {signing_key.token()}"},
                    timeout=10,
                ).status_code
            )
        )
        in_flight.start()
        # SIGTERM only once the request is being served (a fixed pause raced the connect under load).
        assert upstreams["patient"][0].slow_arrived.wait(20)
        stop_sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        in_flight.join(10)
        _out, err = process.communicate(timeout=10)
        assert time.monotonic() - stop_sent < 10
        assert results == [200]
        assert process.returncode == 0
        assert '"msg": "stopped"' in err
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
