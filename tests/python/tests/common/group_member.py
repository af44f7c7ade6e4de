"""A second consumer-group member in its own process, for the Kafka tests.

`python -m tests.common.group_member BOOTSTRAP TOPIC GROUP` runs a ConsumerLoop and prints one line per
change of its assignment (`assigned 0,2`) and one per received event (`event <event_id>`); SIGTERM stops
it cleanly (exit 0).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from pm.common.kafka import ConsumerLoop
from pm.proto.events.v1.patient_event_pb2 import PatientEvent


def main() -> None:
    bootstrap, topic, group = sys.argv[1:4]
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def handle(records: list[Any]) -> None:
        for record in records:
            say(f"event {PatientEvent.FromString(record.value).event_id}")

    loop = ConsumerLoop(bootstrap, [topic], group, handle, client_id="group-member", poll_timeout_ms=100)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    loop.start()
    reported: frozenset[int] | None = None
    while not stopping.wait(0.05):
        partitions = frozenset(tp.partition for tp in loop.assignment)
        if partitions != reported:
            reported = partitions
            say("assigned " + ",".join(str(p) for p in sorted(partitions)))
    loop.stop()


if __name__ == "__main__":
    main()
