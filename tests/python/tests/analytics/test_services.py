"""record_batch over a fake unit of work: what is stored, counted and parked, and that it commits once."""

import dataclasses
import uuid
from collections.abc import Sequence

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.domain.model import PatientEvent, Tally
from pm.analytics.service_layer.services import DeadLetter, RawMessage, record_batch
from tests.analytics.conftest import event_bytes


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.events = self  # the store attached to this unit of work
        self.stored: dict[uuid.UUID, PatientEvent] = {}
        self.tallies: list[Tally] = []
        self.parked: dict[tuple[str, int, int], DeadLetter] = {}
        self.commits = 0

    def __enter__(self) -> "FakeUnitOfWork":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        self.commits += 1

    def add_new_events(
        self, events: Sequence[PatientEvent], messages: Sequence[RawMessage]
    ) -> list[PatientEvent]:
        new = []
        for event in events:
            if event.event_id not in self.stored:
                self.stored[event.event_id] = event
                new.append(event)
        return new

    def add_to_aggregates(self, tally: Tally) -> None:
        self.tallies.append(tally)

    def park(self, dead_letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        new = [
            d
            for d in dead_letters
            if (d.message.topic, d.message.partition, d.message.offset) not in self.parked
        ]
        for letter in new:
            self.parked[(letter.message.topic, letter.message.partition, letter.message.offset)] = letter
        return new

    def erase_patient(self, patient_id: str) -> int:
        mine = [key for key, event in self.stored.items() if event.patient_id == patient_id]
        for key in mine:
            self.stored[key] = dataclasses.replace(self.stored[key], name="", email="")
        return len(mine)


def messages(*values: bytes | None) -> list[RawMessage]:
    return [RawMessage("patient", 0, offset, b"key", value) for offset, value in enumerate(values)]


def test_a_batch_stores_new_events_counts_them_and_parks_the_rest_in_one_commit() -> None:
    uow = FakeUnitOfWork()
    same = str(uuid.uuid4())
    batch = messages(
        event_bytes("created", event_id=same),
        event_bytes("created", event_id=same),
        b"junk",
        event_bytes("deleted"),
    )
    result = record_batch(uow, batch, decode_patient_event)
    assert (result.recorded, result.duplicates) == (2, 1)
    assert [d.message.offset for d in result.parked] == [2]
    assert "not a PatientEvent" in result.parked[0].error
    assert (uow.tallies[0].created, uow.tallies[0].deleted) == (1, 1)
    assert uow.commits == 1


def test_a_redelivered_batch_adds_nothing_and_parks_nothing_twice() -> None:
    uow = FakeUnitOfWork()
    batch = messages(event_bytes("created"), b"junk")
    record_batch(uow, batch, decode_patient_event)
    again = record_batch(uow, batch, decode_patient_event)
    assert (again.recorded, again.duplicates, again.parked) == (0, 1, [])
    assert uow.tallies[-1] == Tally()
