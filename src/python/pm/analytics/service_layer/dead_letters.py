"""Parked messages: list them, redrive them through the normal path, or discard them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pm.analytics.domain.broker import ParkedMessage, RedriveOutcome
from pm.analytics.domain.model import InvalidEvent, Tally
from pm.analytics.service_layer.services import AnalyticsUnitOfWork, Decoder, RawMessage


class DeadLetterUnitOfWork(AnalyticsUnitOfWork, Protocol):
    """The batch unit of work plus the dead letters themselves."""

    def parked(self, ids: Sequence[int] | None) -> list[ParkedMessage]:
        """The letters with these ids (all when None), oldest first, locked until the transaction ends."""

    def release(self, ids: Sequence[int]) -> int:
        """Delete these letters; how many there were."""

    def still_parked(self, letter_id: int, error: str) -> None:
        """Keep the letter, with the error of its latest attempt."""


def redrive(uow: DeadLetterUnitOfWork, ids: Sequence[int] | None, decode: Decoder) -> RedriveOutcome:
    """Decode the parked messages again and record them exactly as the consumer does, in one transaction:
    a decodable one is counted (unless its event id was counted before) and leaves the dead letters; an
    undecodable one stays parked with the new error. Redriving twice counts nothing twice."""
    with uow:
        letters = uow.parked(ids)
        events, sources, done = [], [], []
        still = 0
        for letter in letters:
            try:
                events.append(decode(letter.payload))
            except InvalidEvent as exc:
                uow.still_parked(letter.id, str(exc))
                still += 1
                continue
            sources.append(
                RawMessage(letter.topic, letter.partition, letter.offset, letter.key, letter.payload)
            )
            done.append(letter.id)
        new = uow.events.add_new_events(events, sources)
        uow.events.add_to_aggregates(Tally.of(new))
        uow.release(done)
        uow.commit()
    missing = 0 if ids is None else len(set(ids)) - len(letters)
    return RedriveOutcome(
        recorded=len(new), duplicates=len(events) - len(new), still_parked=still, missing=missing
    )


def discard(uow: DeadLetterUnitOfWork, ids: Sequence[int] | None) -> int:
    """Delete parked messages for good (all when `ids` is None); how many went."""
    with uow:
        letters = uow.parked(ids)
        gone = uow.release([letter.id for letter in letters])
        uow.commit()
    return gone
