"""The analytics process: bad settings, migrate, and the whole wiring (JWKS, broker, database, SIGTERM)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from pm.analytics.main import main
from pm.common.broker import free_port, wait_for_port
from pm.common.db import Database
from pm.common.kafka import ensure_topics, make_producer
from tests.analytics.conftest import event_bytes, wait_until
from tests.support.servers import LiveServer
from tests.support.tokens import jwks


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ANALYTICS_PORT", "-1"),
        ("PM_ANALYTICS_DATABASE_URL", "oracle://db"),
        ("PM_KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("PM_JWKS_URL", "ftp://keys"),
        ("PM_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_setting_stops_start_with_one_line_naming_it(monkeypatch, capsys, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert variable in err


def test_migrate_creates_the_schema_and_exits(monkeypatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'analytics.db'}"
    monkeypatch.setenv("PM_ANALYTICS_DATABASE_URL", url)
    main(["migrate"])
    database = Database(url)
    assert {"patient_event", "totals", "registrations_per_month", "dead_letter"} <= set(
        inspect(database.engine).get_table_names()
    )
    database.dispose()


def jwks_app(document: dict):
    body = json.dumps(document).encode()

    async def app(scope, _receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def test_the_process_consumes_serves_and_stops_within_10s_on_sigterm(
    postgres_url, kafka_bootstrap, signing_key
) -> None:
    topic = f"patient-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic])
    producer = make_producer(kafka_bootstrap, client_id="analytics-test")
    for _ in range(3):
        producer.send(topic, key=str(uuid.uuid4()).encode(), value=event_bytes("created"))
    producer.flush(timeout=10)
    producer.close(timeout=5)
    port = free_port()
    with LiveServer(jwks_app(jwks(signing_key))) as keys:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
        env.update(
            PYTHONPATH=os.pathsep.join(sys.path),
            PM_ANALYTICS_PORT=str(port),
            PM_ANALYTICS_DATABASE_URL=postgres_url,
            PM_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            PM_PATIENT_TOPIC=topic,
            PM_PATIENT_DLQ_TOPIC=f"{topic}.dlq",
            PM_ANALYTICS_CONSUMER_GROUP=f"analytics-{uuid.uuid4().hex[:8]}",
            PM_JWKS_URL=f"{keys.url}/.well-known/jwks.json",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "pm.analytics.main"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_port(port, timeout=30)
            url = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {signing_key.mint()}"}

            def created() -> int:
                response = httpx.get(f"{url}/analytics/summary", headers=headers, timeout=5)
                return response.json()["patientsCreated"] if response.status_code == 200 else -1

            wait_until(lambda: created() == 3, what="3 events through the running service")
            assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "UP"
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            _, stderr = process.communicate(timeout=10)
            assert time.monotonic() - started < 10
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    assert process.returncode == 0
    assert '"msg": "consumer stopped"' in stderr
    assert "Traceback" not in stderr
