"""web.serve as a real process: start, health, graceful stop on SIGTERM, clear failure on a taken port."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pm.common.broker import free_port, free_ports
from pm.common.tls import ClientTls
from pm.common.tokens import JwksKeys
from tests.common.certs import CertificateAuthority


def start(port: int, markers: Path, **settings: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.common.serve_app", str(port), str(markers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_healthy(
    url: str, process: subprocess.Popen[str], timeout: float = 15.0, verify: ssl.SSLContext | bool = True
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"service exited early: {process.communicate()[1]}")
        try:
            return httpx.get(f"{url}/health", timeout=1, verify=verify)
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("service did not answer /health in time")


@pytest.fixture
def service(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    process = start(port, tmp_path)
    yield process, f"http://127.0.0.1:{port}", tmp_path
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_serve_answers_health_and_stops_cleanly_on_sigterm(service) -> None:  # type: ignore[no-untyped-def]
    process, url, markers = service
    response = wait_healthy(url, process)
    assert response.status_code == 200
    assert response.json()["status"] == "UP"
    assert (markers / "started").exists()
    assert not (markers / "stopped").exists()

    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert time.monotonic() - signalled < 10
    assert process.returncode == 0, stderr
    assert (markers / "stopped").exists()
    assert "Traceback" not in stderr


def test_sigterm_lets_an_in_flight_request_finish(service) -> None:  # type: ignore[no-untyped-def]
    process, url, markers = service
    wait_healthy(url, process)
    result: dict[str, httpx.Response] = {}
    request = threading.Thread(target=lambda: result.update(slow=httpx.get(f"{url}/slow", timeout=10)))
    request.start()
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    request.join(10)
    assert result["slow"].status_code == 200
    assert result["slow"].text == "done"
    process.communicate(timeout=10)
    assert process.returncode == 0
    assert (markers / "stopped").exists()


def test_a_port_in_use_stops_the_service_with_one_line_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(port, tmp_path)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode != 0
    lines = stderr.splitlines()
    assert lines == [f"testapp: port {port} on 127.0.0.1 is already in use (set PM_TESTAPP_PORT)"]
    assert not (tmp_path / "started").exists()
    assert not (tmp_path / "stopped").exists()


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=15)


def test_serve_speaks_https_only_when_given_a_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    issued = ca.issue("service", server=True)
    port = free_port()
    process = start(
        port,
        tmp_path,
        PM_HTTP_TLS_CERT_FILE=str(issued.cert_file),
        PM_HTTP_TLS_KEY_FILE=str(issued.key_file),
    )
    try:
        trusted = ClientTls(ca_file=ca.cert_file)
        url = f"https://127.0.0.1:{port}"
        assert wait_healthy(url, process, verify=trusted.ssl_context()).status_code == 200
        with pytest.raises(httpx.ConnectError):  # the system's CAs do not know ours
            httpx.get(f"{url}/health", timeout=5)
        with pytest.raises(httpx.TransportError):  # no plaintext on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        # The key fetch trusts PM_HTTP_TLS_CA_FILE's CA: the document arrives (it just holds no keys).
        with pytest.raises(RuntimeError, match="no usable keys"):
            JwksKeys(f"{url}/health", tls=trusted).ping()
        with pytest.raises(httpx.ConnectError):
            JwksKeys(f"{url}/health").ping()
    finally:
        stop(process)


def test_serve_with_a_client_ca_requires_a_client_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    issued = ca.issue("service", server=True)
    client = ca.issue("client", server=False)
    port = free_port()
    process = start(
        port,
        tmp_path,
        PM_HTTP_TLS_CERT_FILE=str(issued.cert_file),
        PM_HTTP_TLS_KEY_FILE=str(issued.key_file),
        PM_HTTP_TLS_CLIENT_CA_FILE=str(ca.cert_file),
    )
    try:
        url = f"https://127.0.0.1:{port}"
        with_certificate = ClientTls(ca.cert_file, client.cert_file, client.key_file).ssl_context()
        assert wait_healthy(url, process, verify=with_certificate).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=5, verify=ClientTls(ca.cert_file).ssl_context())
    finally:
        stop(process)


def test_free_ports_are_all_different() -> None:
    """Taken one at a time, free ports can repeat (the kernel may give the port it just gave out and got
    back): a system started on such a list had two services on one port (CI of 2026-12-03: 'patient: port
    49847 is already in use', the gateway's). 500 ports one at a time repeat one almost always."""
    ports = free_ports(500)
    assert len(set(ports)) == 500
