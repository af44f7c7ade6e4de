"""How many audited changes a second the chain head lets through:
`./pants run src/python/pm/bench:audit_chain -- [--writers N] [--seconds N] [--rounds N]`.

Every change to a patient appends its audit entry in its own transaction, under the chain head's row lock
(pm.patient.adapters.audit). The lock is held from the append to the commit, so the time it is held caps
the writes of the whole system, however many processes serve them. This runner measures that cap on one
fresh PostgreSQL database: `--writers` processes each run transactions that append one entry and commit,
as fast as they can, for `--seconds`, in two modes that alternate by round:

- `server`: the entry appended by the database's `audit_append` (migration 0008), what the service does;
- `here`: the entry timed on the head, hashed in the writer's process and inserted in two more round trips
  (`SqlAuditLog.append_here`), what a single entry used before.

With more writers than cores (the default: 8 on this 2-core machine) a writer that holds the lock often
waits for a core before it can send its next statement, as a service's thread waits for its turn.
Prints appends per second for each round and mode, the median ratio server/here, and checks the chain.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from datetime import UTC, datetime

from pm.bench.measure import load
from pm.common.db import Database, migrate
from pm.common.pgadmin import DEFAULT_ADMIN_URL, create_database, drop_database
from pm.patient.adapters.repository import SqlUnitOfWork
from pm.patient.bootstrap import MIGRATIONS
from pm.patient.domain.audit import AuditEntry
from pm.patient.service_layer.audit import AuditService

MODES = ("server", "here")


def _entry() -> AuditEntry:
    return AuditEntry(
        at=datetime.now(UTC),
        action="patient.update",
        status=200,
        actor="nurse@example.com",
        role="USER",
        patient_id=uuid.uuid4(),
        request_id=str(uuid.uuid4()),
        client="10.0.0.1",
    )


def _writer(url: str, mode: str, until: float, counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    database = Database(url)
    done = 0
    try:
        while time.monotonic() < until:
            with SqlUnitOfWork(database) as uow:
                if mode == "server":
                    uow.audit.append(_entry())
                else:
                    uow.audit.append_here([_entry()])
                uow.commit()
            done += 1
    finally:
        database.dispose()
        counts.put(done)


def _round(url: str, mode: str, writers: int, seconds: float) -> float:
    counts: multiprocessing.Queue[int] = multiprocessing.Queue()
    until = time.monotonic() + 1.0 + seconds  # a second for the processes to start
    processes = [
        multiprocessing.Process(target=_writer, args=(url, mode, until, counts)) for _ in range(writers)
    ]
    for process in processes:
        process.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in processes)
    for process in processes:
        process.join(10)
    return total / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    args = parser.parse_args(argv)

    name = f"pm_bench_chain_{uuid.uuid4().hex[:8]}"
    url = create_database(args.admin_url, name)
    try:
        migrate(url, MIGRATIONS)
        print(f"load before: {load()}; {args.writers} writers, {args.seconds:g} s per round")
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for index in range(args.rounds):
            for mode in MODES if index % 2 == 0 else MODES[::-1]:
                rate = _round(url, mode, args.writers, args.seconds)
                rates[mode].append(rate)
                print(f"  round {index + 1} {mode:6s} {rate:8.1f} appends/s", flush=True)
        ratios = [s / h for s, h in zip(rates["server"], rates["here"], strict=True)]
        for mode in MODES:
            print(f"{mode:6s} median {statistics.median(rates[mode]):8.1f} appends/s")
        print(
            f"server / here: median {statistics.median(ratios):.2f} (rounds {[round(r, 2) for r in ratios]})"
        )
        database = Database(url)
        try:
            verdict = AuditService(lambda: SqlUnitOfWork(database)).verify()
        finally:
            database.dispose()
        print(f"chain: {'intact' if verdict.intact else 'BROKEN'}, {verdict.entries} entries")
        print(f"load after: {load()}")
    finally:
        drop_database(args.admin_url, name)


if __name__ == "__main__":
    main()
