"""Every error under /fhir leaves as a FHIR `OperationOutcome` (application/fhir+json).

The service's error machinery (pm.common.problems: the domain error table, Connexion's parameter
validation, the bearer check, unknown paths, unexpected failures) speaks problem+json everywhere. This ASGI
wrapper rewrites those answers on /fhir paths only, keeping status and headers (`WWW-Authenticate`,
`Retry-After`), so no FHIR operation needs an error path of its own.
"""

from __future__ import annotations

import json
from typing import Any

from pm.common.fhir import FHIR_JSON, outcome_from_problem
from pm.common.problems import PROBLEM_JSON
from pm.common.web import ASGIApp, Message, Receive, Scope, Send

FHIR_PREFIX = "/fhir"
# A problem body is small; anything larger is passed through untouched rather than buffered.
_MAX_PROBLEM_BYTES = 65_536


def is_fhir_path(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


class FhirOutcomes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def rewrite(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                if _is_problem(message):
                    start = message  # held until the body is complete
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > _MAX_PROBLEM_BYTES:  # not a problem body after all: let it through as it is
                held, start = start, None
                await send(held)
                await send({**message, "body": b"".join(chunks)})
                return
            if message.get("more_body"):
                return
            await _send_outcome(send, start, b"".join(chunks))
            start = None

        await self.app(scope, receive, rewrite)


def _is_problem(message: Message) -> bool:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == PROBLEM_JSON.encode())
    return False


async def _send_outcome(send: Send, start: Message, body: bytes) -> None:
    status = int(start["status"])
    try:
        problem: Any = json.loads(body)
    except ValueError:
        problem = None
    outcome = json.dumps(outcome_from_problem(status, problem), separators=(",", ":")).encode()
    headers = [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(outcome)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": outcome})
