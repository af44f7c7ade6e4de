"""Every answer the gateway gives itself for an error is RFC 7807 problem+json."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pm.common.fhir import FHIR_JSON, outcome_bytes
from pm.common.problems import PROBLEM_JSON, problem_bytes

log = logging.getLogger(__name__)

# Details for the errors Starlette raises itself (unknown path, wrong method).
_DETAILS = {404: "No such resource.", 405: "This method is not allowed here."}


def problem_response(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(problem_bytes(status, title, detail), status, headers=headers, media_type=PROBLEM_JSON)


def outcome_response(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The same answer for a FHIR route: an OperationOutcome (pm.common.fhir)."""
    return Response(outcome_bytes(status, title, detail), status, headers=headers, media_type=FHIR_JSON)


def not_found() -> Response:
    return problem_response(404, "Not Found", _DETAILS[404])


def http_problem(exc: HTTPException) -> Response:
    """Starlette's HTTPException (router, StaticFiles, our pages) as a problem, headers kept."""
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != title else _DETAILS.get(exc.status_code, title)
    return problem_response(exc.status_code, title, detail, exc.headers)


def internal_error() -> Response:
    """A bug: logged by the server with its traceback; the client sees a plain problem."""
    return problem_response(500, "Internal Server Error", "An unexpected error occurred.")


class Problems:
    """The one error layer (instead of `Starlette()`'s ServerErrorMiddleware and ExceptionMiddleware):
    an HTTPException raised under it (the router's 405, StaticFiles, our pages) becomes its problem; any
    other exception a 500 problem when nothing was sent yet, and is raised on for the server to log.

    It puts itself in the scope as `app`: Starlette's routes raise HTTPException for 404/405 only
    inside an application (they answer plain text otherwise).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["app"] = self
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except HTTPException as exc:
            if started:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            await http_problem(exc)(scope, receive, send)
        except Exception:
            if not started:
                await internal_error()(scope, receive, send)
            raise
