"""The gateway's broker routes (every one ADMIN only), for the tests that check them at the gateway and on
the whole system."""

from __future__ import annotations

BROKER_ROUTES = [
    ("GET", "/api/broker/outbox"),
    ("GET", "/api/broker/topics"),
    ("GET", "/api/broker/topics/patient/partitions/0/messages"),
    ("GET", "/api/broker/consumer-groups"),
    ("GET", "/api/broker/dead-letters"),
    ("DELETE", "/api/broker/dead-letters"),
    ("POST", "/api/broker/dead-letters/redrive"),
    ("POST", "/api/broker/dead-letters/1/redrive"),
    ("DELETE", "/api/broker/dead-letters/1"),
]
