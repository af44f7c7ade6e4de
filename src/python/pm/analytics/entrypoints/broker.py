"""The broker view (ADMIN): topics and offsets, newest messages, consumer lag, and the dead letters.

Every call needs role ADMIN. Redrive and discard are audited: one log line each, with the actor and what
was done (ids and counts, never message contents).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connexion.exceptions import ProblemException
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.domain.broker import BrokerMessage, BrokerUnreachable, ParkedMessage
from pm.analytics.domain.model import InvalidEvent
from pm.analytics.service_layer import dead_letters
from pm.analytics.service_layer.dead_letters import DeadLetterUnitOfWork
from pm.common.errors import StoreUnavailable
from pm.common.tokens import require_role
from pm.proto.events.v1 import patient_event_pb2 as pb

log = logging.getLogger(__name__)
audit = logging.getLogger("pm.analytics.audit")

Response = tuple[Any, int, dict[str, str]]


@dataclass
class BrokerDesk:
    """What the broker view needs, built by the composition root."""

    view: Any  # KafkaBrokerView or a fake with the same methods
    dead_letters: Any  # SqlDeadLetterReader
    unit_of_work: Callable[[], DeadLetterUnitOfWork]
    topic: str
    group: str


class BrokerHandlers:
    """The broker operations of api/openapi.yaml (operationId `broker.<method>`), bound by bootstrap."""

    def __init__(self, desk: BrokerDesk | None) -> None:
        self.desk = desk

    def topics(self, token_info: dict[str, Any]) -> Response:
        desk = self._desk(token_info)
        return _reachable(
            "topics",
            lambda: [
                {
                    "name": t.name,
                    "partitions": [
                        {
                            "partition": p.partition,
                            "firstOffset": p.first,
                            "nextOffset": p.next,
                            "messages": p.messages,
                        }
                        for p in t.partitions
                    ],
                }
                for t in desk.view.topics()
            ],
        )

    def messages(
        self,
        topic: str,
        partition: int,
        token_info: dict[str, Any],
        limit: int = 20,
        before: int | None = None,
    ) -> Response:
        desk = self._desk(token_info)
        try:
            page = desk.view.messages(topic, partition, before=before, limit=limit)
        except LookupError:
            raise ProblemException(
                status=404, title="Not Found", detail="No such topic or partition."
            ) from None
        except BrokerUnreachable as exc:
            raise ProblemException(
                status=503,
                title="Broker Unreachable",
                detail=f"The broker cannot be reached: {exc}",
                headers={"Retry-After": "5"},
            ) from None
        return _json(
            {
                "topic": topic,
                "partition": partition,
                "firstOffset": page.first,
                "nextOffset": page.next,
                "olderBefore": page.older,
                "messages": [_message(m) for m in page.messages],
            }
        )

    def consumer_groups(self, token_info: dict[str, Any]) -> Response:
        desk = self._desk(token_info)

        def groups() -> list[dict[str, Any]]:
            lags = desk.view.group_lag(desk.group, desk.topic)
            partitions = [
                {
                    "partition": p.partition,
                    "committedOffset": p.committed,
                    "firstOffset": p.first,
                    "nextOffset": p.next,
                    "lag": p.lag,
                }
                for p in lags
            ]
            total = sum(p.lag for p in lags)
            return [{"group": desk.group, "topic": desk.topic, "totalLag": total, "partitions": partitions}]

        return _reachable("groups", groups)

    def list_dead_letters(
        self, token_info: dict[str, Any], limit: int = 50, after: int | None = None
    ) -> Response:
        desk = self._desk(token_info)
        page = _stored(lambda: desk.dead_letters.page(limit=limit, after=after))
        total = _stored(desk.dead_letters.count)
        return _json({"total": total, "items": [_parked(letter) for letter in page]})

    def redrive_dead_letter(self, letter: int, token_info: dict[str, Any]) -> Response:
        desk = self._desk(token_info)
        outcome = _stored(lambda: dead_letters.redrive(desk.unit_of_work(), [letter], decode_patient_event))
        _audit(token_info, "redrive", [letter], outcome.as_json())
        if outcome.missing:
            raise ProblemException(status=404, title="Not Found", detail="No such parked message.")
        return _json(outcome.as_json())

    def redrive_all(self, token_info: dict[str, Any]) -> Response:
        desk = self._desk(token_info)
        outcome = _stored(lambda: dead_letters.redrive(desk.unit_of_work(), None, decode_patient_event))
        _audit(token_info, "redrive", "all", outcome.as_json())
        return _json(outcome.as_json())

    def discard_dead_letter(self, letter: int, token_info: dict[str, Any]) -> Any:
        desk = self._desk(token_info)
        gone = _stored(lambda: dead_letters.discard(desk.unit_of_work(), [letter]))
        _audit(token_info, "discard", [letter], {"discarded": gone})
        if not gone:
            raise ProblemException(status=404, title="Not Found", detail="No such parked message.")
        return None, 204, {}

    def discard_all(self, token_info: dict[str, Any]) -> Response:
        desk = self._desk(token_info)
        gone = _stored(lambda: dead_letters.discard(desk.unit_of_work(), None))
        _audit(token_info, "discard", "all", {"discarded": gone})
        return _json({"discarded": gone})

    def _desk(self, token_info: dict[str, Any]) -> BrokerDesk:
        require_role(token_info, "ADMIN")
        desk = self.desk
        if desk is None:  # an app built without one (some tests): said plainly, never a 500
            raise ProblemException(
                status=503,
                title="Service Unavailable",
                detail="The broker view is not configured in this process.",
            )
        return desk


def _audit(token_info: dict[str, Any], action: str, ids: Any, outcome: dict[str, Any]) -> None:
    audit.info(
        f"dead letters: {action}",
        extra={"audit": True, "actor": token_info.get("sub"), "action": action, "ids": ids, **outcome},
    )


def _stored(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except StoreUnavailable as exc:
        log.warning("analytics database unavailable", extra={"error": str(exc)})
        raise ProblemException(
            status=503,
            title="Service Unavailable",
            detail="The analytics database is unavailable; retry later.",
        ) from None


def _reachable(key: str, read: Callable[[], list[dict[str, Any]]]) -> Response:
    """`{"reachable": true, "error": null, <key>: read()}`; with the broker away, `reachable` false, the
    reason, and an empty list."""
    try:
        items = read()
    except BrokerUnreachable as exc:
        log.warning("broker unreachable for the broker view", extra={"error": str(exc)})
        return _json({"reachable": False, "error": f"The broker cannot be reached: {exc}", key: []})
    return _json({"reachable": True, "error": None, key: items})


def _message(message: BrokerMessage) -> dict[str, Any]:
    event, error = _decoded(message.value)
    return {
        "offset": message.offset,
        "timestamp": None if message.timestamp is None else _timestamp(message.timestamp),
        "key": _text(message.key),
        "headers": [{"name": name, "value": _text(value)} for name, value in message.headers],
        "size": len(message.value or b""),
        "event": event,
        "error": error,
    }


def _decoded(value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The message as a PatientEvent (every field the schema knows), and why analytics would park it."""
    event: dict[str, Any] | None = None
    if value:
        parsed = pb.PatientEvent()
        try:
            parsed.ParseFromString(value)
            event = MessageToDict(parsed)
        except (DecodeError, ValueError):
            event = None
    try:
        decode_patient_event(value)
    except InvalidEvent as exc:
        return event, str(exc)
    return event, None


def _parked(letter: ParkedMessage) -> dict[str, Any]:
    payload = letter.payload or b""
    return {
        "id": letter.id,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": _text(letter.key),
        "error": letter.error,
        "reason": letter.reason,
        "parkedAt": _timestamp(letter.parked_at),
        "size": len(payload),
        "payloadBase64": base64.b64encode(payload).decode("ascii"),
    }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(body: Any, status: int = 200) -> Response:
    return body, status, {"Content-Type": "application/json"}
