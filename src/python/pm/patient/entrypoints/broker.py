"""The outbox side of the broker view (ADMIN): the backlog, and whether the relay reaches the broker."""

from __future__ import annotations

import logging
from typing import Any

from connexion import request

from pm.common.problems import DATABASE_UNAVAILABLE, Problem
from pm.common.tokens import require_role
from pm.patient.adapters.outbox_backlog import outbox_backlog
from pm.patient.adapters.relay import OutboxRelay

log = logging.getLogger(__name__)


def outbox(token_info: dict[str, Any]) -> Any:
    require_role(token_info, "ADMIN")
    relay: OutboxRelay = request.state.relay
    try:
        backlog = outbox_backlog(relay.database)
    except DATABASE_UNAVAILABLE:
        raise Problem(
            503, "Service Unavailable", "The patient database is unavailable; retry later."
        ) from None
    try:
        relay.check()
        error = None
    except Exception as exc:  # noqa: BLE001 - reported to the operator, not raised: events only wait
        error = f"The relay cannot publish to the broker: {str(exc)[:200]}"
    body = {
        "pending": backlog.pending,
        "oldestPendingAt": (
            None
            if backlog.oldest_created_at is None
            else backlog.oldest_created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ),
        "oldestPendingSeconds": round(backlog.oldest_age_seconds(), 3),
        "publishedSinceStart": relay.published,
        "topic": relay.settings.topic,
        "brokerReachable": error is None,
        "error": error,
    }
    return body, 200, {"Content-Type": "application/json"}
