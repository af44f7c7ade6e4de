"""Billing's HTTP side exists for /health and /metrics (served by ServiceMiddleware); all else is 404."""

from __future__ import annotations

from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.web import Receive, Scope, Send


async def not_found_app(scope: Scope, _receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = problem_bytes(404, "Not Found", "Billing serves only /health and /metrics over HTTP; use gRPC.")
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
