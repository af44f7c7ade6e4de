"""The framework floor: `GET /patients/{id}` as a bare ASGI route, in a process the runner starts.

`python -m pm.bench.floor` reads the patient service's settings (the same environment the runner gives
patient, with its own PM_PATIENT_PORT) and serves `GET /__floor/patients/{id}`, which does what the real
route does: verify the bearer token with the same kind of verifier (auth's JWKS and session feed), the
same primary-key SELECT through patient's repository on the same database, the same JSON body and ETag,
behind the same `ServiceMiddleware` and uvicorn settings (`pm.common.web.serve`), but with no Connexion
routing, no request or response validation and no Flask. The runner divides the real route's throughput
by this one to show what the framework costs. Nothing in the patient service knows about it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from pm.common.config import load_or_exit
from pm.common.db import Database
from pm.common.logs import configure_logging
from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.tokens import (
    InvalidToken,
    JwksKeys,
    RevocationList,
    TokenVerifier,
    bearer_token,
    http_revocation_feed,
)
from pm.common.web import Receive, Scope, Send, ServiceMiddleware, serve
from pm.patient.adapters.repository import SqlPatientRepository
from pm.patient.config import Settings
from pm.patient.entrypoints.bodies import patient_json

NAME = "patient-floor"
PREFIX = "/__floor/patients/"

Response = tuple[int, bytes, list[tuple[bytes, bytes]]]
NOT_FOUND: Response = (404, problem_bytes(404, "Not Found", "Only GET /__floor/patients/{id}."), [])


class FloorRoute:
    """`GET /__floor/patients/{id}`; anything else is a 404 problem."""

    def __init__(self, database: Database, verifier: TokenVerifier) -> None:
        self.database = database
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = NOT_FOUND
        if scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            headers = dict(scope.get("headers") or [])
            token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
            # The worker thread mirrors Flask's: Connexion runs every sync handler in a thread too.
            response = await asyncio.to_thread(self._get, token, scope["path"][len(PREFIX) :])
        status, body, extra = response
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

    def _get(self, token: str | None, raw_id: str) -> Response:
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
        document: dict[str, Any] = patient_json(patient)
        return 200, json.dumps(document).encode(), [(b"etag", patient.etag.encode())]


def main() -> None:
    settings = load_or_exit(Settings.from_env, NAME)
    configure_logging(NAME, settings.log_level)
    database = Database(settings.database_url)
    revocations = RevocationList(
        http_revocation_feed(settings.revocations_url, tls=settings.http_client_tls), name=NAME
    )
    verifier = TokenVerifier(
        JwksKeys(settings.jwks_url, tls=settings.http_client_tls),
        issuer=settings.jwt_issuer,
        revocations=revocations,
    )
    app = ServiceMiddleware(
        FloorRoute(database, verifier),
        service=NAME,
        health_checks={"database": database.ping},
        health_interval=settings.health_interval,
    )
    serve(
        app,
        host=settings.host,
        port=settings.port,
        service=NAME,
        on_start=[revocations.start],
        on_stop=[revocations.stop, database.dispose],
        trusted_proxies=settings.trusted_proxies,
    )


if __name__ == "__main__":
    main()
