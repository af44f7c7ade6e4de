"""A diagnostic route for the benchmark's framework floor, mounted only when PM_PATIENT_BENCH_FLOOR=1.

`GET /__floor/patients/{id}` does what `GET /patients/{id}` does — verify the bearer token with the same
verifier, the same primary-key SELECT through the same repository, pool and driver, the same JSON body and
ETag — but as a bare ASGI route: no Connexion routing, no request or response validation, no Flask. The
benchmark divides the real route's throughput by this one to show what the framework costs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from pm.common.db import Database
from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.tokens import InvalidToken, TokenVerifier, bearer_token
from pm.common.web import ASGIApp, Receive, Scope, Send
from pm.patient.adapters.repository import SqlPatientRepository
from pm.patient.entrypoints.patients import _json

PREFIX = "/__floor/patients/"


class FloorRoute:
    def __init__(self, app: ASGIApp, database: Database, verifier: TokenVerifier) -> None:
        self.app = app
        self.database = database
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        # The worker thread mirrors Flask's: Connexion runs every sync handler in a thread too.
        status, body, extra = await asyncio.to_thread(self._get, token, scope["path"][len(PREFIX) :])
        content_type = b"application/json" if status == 200 else PROBLEM_JSON.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _get(self, token: str | None, raw_id: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            if token is None:
                raise InvalidToken("no bearer token")
            self.verifier.verify(token)
        except InvalidToken:
            return 401, problem_bytes(401, "Unauthorized", "A valid bearer token is required."), []
        try:
            patient_id = uuid.UUID(raw_id)
        except ValueError:
            patient_id = None
        patient = None
        if patient_id is not None:
            with self.database.transaction() as session:
                patient = SqlPatientRepository(session).get(patient_id)
        if patient is None:
            return 404, problem_bytes(404, "Not Found", "No patient with this id."), []
        document: dict[str, Any] = _json(patient)
        return 200, json.dumps(document).encode(), [(b"etag", patient.etag.encode())]
