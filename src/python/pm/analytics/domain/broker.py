"""What the broker view shows: topics and their offsets, a consumer group's lag, parked messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class BrokerUnreachable(Exception):
    """The broker did not answer in time; the message says what failed (no message contents in it)."""


@dataclass(frozen=True)
class PartitionOffsets:
    """`first`: the oldest offset still in the log; `next`: the offset the next message will get."""

    partition: int
    first: int
    next: int

    @property
    def messages(self) -> int:
        return max(0, self.next - self.first)


@dataclass(frozen=True)
class TopicOffsets:
    name: str
    partitions: list[PartitionOffsets]


@dataclass(frozen=True)
class PartitionLag:
    """`committed` is None while the group has committed nothing on the partition: everything is lag."""

    partition: int
    committed: int | None
    first: int
    next: int

    @property
    def lag(self) -> int:
        start = self.first if self.committed is None else self.committed
        return max(0, self.next - start)


@dataclass(frozen=True)
class BrokerMessage:
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: bytes | None


@dataclass(frozen=True)
class MessagePage:
    """Messages of one partition with offsets in [`start`, `end`), newest first; `start` is where the
    next (older) page ends, or None when this page reaches the oldest message kept."""

    messages: list[BrokerMessage]
    first: int
    next: int
    older: int | None


@dataclass(frozen=True)
class ParkedMessage:
    id: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes | None
    error: str
    parked_at: datetime

    @property
    def reason(self) -> str:
        """The kind of failure, for people scanning the list: the error says the details."""
        return parking_reason(self.error)


def parking_reason(error: str) -> str:
    if error.startswith("unknown event_type"):
        return "unknown type"
    if error.startswith("not a PatientEvent") or error == "empty message":
        return "decode error"
    return "invalid event"


@dataclass(frozen=True)
class RedriveOutcome:
    """What a redrive did: recorded (new events counted), duplicates (already counted before, now
    released), still parked (undecodable still; kept with the new error), missing (no such letter)."""

    recorded: int = 0
    duplicates: int = 0
    still_parked: int = 0
    missing: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "stillParked": self.still_parked,
            "missing": self.missing,
        }
