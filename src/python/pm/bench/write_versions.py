"""The processes of one version of the code for `pm.bench.write_cost`: a billing gRPC server and a patient
service on fresh PostgreSQL databases, each database behind a proxy that counts the queries it receives
(`pm.bench.pgwire`). A baseline version runs from another `src/python` folder, first on `PYTHONPATH`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

from pm.bench.harness import wait_healthy
from pm.bench.pgwire import QueryLog
from pm.common.pgadmin import DEFAULT_ADMIN_URL, create_database, drop_database

KID = "write-cost"
ISSUER = "pm-auth"

# The children are source text (run with `python -c`): the baseline tree has no pm.bench.write_cost.
BILLING = """
import signal, sys, threading
from pm.billing.bootstrap import MIGRATIONS, create_server
from pm.billing.config import Settings
from pm.common.config import Env
from pm.common.db import Database, migrate
from pm.common.logs import configure_logging

port, url, migrate_url = sys.argv[1:]
configure_logging("billing", "WARNING")
migrate(migrate_url, MIGRATIONS)
database = Database(url)
server, _ = create_server(Settings.from_env(Env({})), database, address=f"127.0.0.1:{port}")
server.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
server.stop(0)
"""

PATIENT = """
import sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pm.common.config import Env
from pm.common.logs import configure_logging
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.common.web import serve
from pm.patient.bootstrap import bootstrap, prepare_database
from pm.patient.config import Settings

port, url, migrate_url, kafka, topic, billing, key_file, kid, issuer = sys.argv[1:]
configure_logging("patient", "WARNING")
env = {
    "PM_PATIENT_DATABASE_URL": url,
    "PM_KAFKA_BOOTSTRAP_SERVERS": kafka,
    "PM_PATIENT_TOPIC": topic,
    "PM_BILLING_GRPC_TARGET": billing,
    "PM_LOG_LEVEL": "WARNING",
}
prepare_database(Settings.from_env(Env({**env, "PM_PATIENT_DATABASE_URL": migrate_url})))
settings = Settings.from_env(Env(env))
public = load_pem_public_key(Path(key_file).read_bytes())
service = bootstrap(settings, verifier=TokenVerifier(StaticKeys({kid: public}), issuer=issuer))
serve(service.app, host="127.0.0.1", port=int(port), service="patient", on_start=[service.start],
      on_stop=[service.stop])
"""


class Version:
    """One version's billing and patient processes, their databases and the proxies in front of them."""

    def __init__(
        self, name: str, source: Path | None, ports: list[int], kafka: str, key_file: Path, prefix: str
    ) -> None:
        self.name = name
        suffix = uuid.uuid4().hex[:6]
        self.databases = {svc: f"{prefix}_{name}_{svc}_{suffix}" for svc in ("patient", "billing")}
        self.urls = {svc: create_database(DEFAULT_ADMIN_URL, db) for svc, db in self.databases.items()}
        self.wire = {
            "patient": QueryLog(port=ports[0]).__enter__(),
            "billing": QueryLog(port=ports[1]).__enter__(),
        }
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        billing_port, patient_port = ports[2], ports[3]

        def spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdin=subprocess.DEVNULL)

        self.billing = spawn(
            BILLING, str(billing_port), self.wire["billing"].url(self.urls["billing"]), self.urls["billing"]
        )
        self.patient = spawn(
            PATIENT,
            str(patient_port),
            self.wire["patient"].url(self.urls["patient"]),
            self.urls["patient"],
            kafka,
            f"patient-{name}-{suffix}",
            f"127.0.0.1:{billing_port}",
            str(key_file),
            KID,
            ISSUER,
        )
        self.url = f"http://127.0.0.1:{patient_port}"
        self.engine = sa.create_engine(self.urls["patient"], poolclass=sa.pool.NullPool)

    def wait_ready(self) -> None:
        # 200: UP, or DEGRADED while the relay is still connecting to the broker.
        if not wait_healthy(
            f"{self.url}/health", timeout=90, interval=0.2, processes=(self.billing, self.patient)
        ):
            raise RuntimeError(f"the {self.name} services did not become healthy")

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far (user + system) by the patient and billing processes."""
        used = {}
        for svc, process in (("patient", self.patient), ("billing", self.billing)):
            times = psutil.Process(process.pid).cpu_times()
            used[svc] = times.user + times.system
        return used

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one()
            )

    def drained(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} relay did not publish in {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        for process in (self.patient, self.billing):
            process.terminate()
        for process in (self.patient, self.billing):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        for wire in self.wire.values():
            wire.__exit__(None, None, None)
        self.engine.dispose()
        for db in self.databases.values():
            drop_database(DEFAULT_ADMIN_URL, db)
