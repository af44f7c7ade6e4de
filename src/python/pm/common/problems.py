"""RFC 7807 problem+json, on Connexion's own mechanism, and the one place domain errors become problems.

- A problem raised on purpose is Connexion's `ProblemException` (or one of its subclasses, e.g.
  `Forbidden`); it is rendered like `connexion.problem()` renders it.
- Each service declares one table, `ERRORS: ErrorTable`, from its domain exception classes to
  `AsProblem(status, title, ...)`; `spec_app(..., errors=ERRORS)` installs it. Handlers raise domain
  errors and never catch them to translate.
- `COMMON_ERRORS` are the kit's own rows, in every service: the database unavailable is a 503.
- Anything else is logged and answered 500 without details (a failure of the database itself, 503).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connexion import FlaskApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse

from pm.common.errors import DATABASE_UNAVAILABLE, StoreUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"


@dataclass(frozen=True)
class AsProblem:
    """How one domain error class is answered. `detail` is `str(error)` unless given (text, or a function
    of the error); `headers` and `ext` (extension members) are functions of the error."""

    status: int
    title: str
    detail: str | Callable[[Any], str] | None = None
    headers: Callable[[Any], dict[str, str]] | None = None
    ext: Callable[[Any], dict[str, Any]] | None = None

    def problem(self, error: Exception) -> ProblemException:
        if isinstance(error, StoreUnavailable):
            # Its text is the driver's error class (never the driver's message, which may quote values).
            log.warning("database unavailable", extra={"status": self.status, "error": str(error)})
        elif self.status >= 500:
            # The class only: a driver's or peer's message may quote values.
            log.warning(
                "answered with a problem", extra={"status": self.status, "error": type(error).__name__}
            )
        detail = self.detail(error) if callable(self.detail) else (self.detail or str(error))
        return ProblemException(
            status=self.status,
            title=self.title,
            detail=detail,
            headers=self.headers(error) if self.headers else None,
            ext=self.ext(error) if self.ext else None,
        )


ErrorTable = Mapping[type[Exception], AsProblem]


def unavailable(detail: str | Callable[[Any], str]) -> AsProblem:
    """503: not now, nothing was done; the client may retry after RETRY_AFTER_SECONDS (the header says so)."""
    return AsProblem(
        503, "Service Unavailable", detail, headers=lambda _: {"Retry-After": RETRY_AFTER_SECONDS}
    )


COMMON_ERRORS: ErrorTable = {StoreUnavailable: unavailable("The database is unavailable; retry later.")}


def problem_body(status: int, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update(extensions)
    return body


def problem_bytes(status: int, title: str, detail: str, **extensions: Any) -> bytes:
    return json.dumps(problem_body(status, title, detail, **extensions)).encode()


def _parts(exc: ProblemException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Body, status and headers of a problem (what a Flask error handler returns)."""
    title = exc.title or "Error"
    body = problem_body(exc.status, title, exc.detail or title, **dict(exc.ext or {}))
    return body, exc.status, {"Content-Type": PROBLEM_JSON, **dict(exc.headers or {})}


def _response(exc: ProblemException, *, challenge: bool = False) -> ConnexionResponse:
    """The problem as Connexion's middleware returns it; `challenge`: a 401 from the security check says
    how to authenticate (RFC 6750)."""
    body, status, headers = _parts(exc)
    if challenge and status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers,
    )


def _answer(table: ErrorTable, exc: Exception) -> AsProblem | None:
    """The row of the most specific class of `exc` in the table (as Flask and Starlette choose)."""
    return next((table[c] for c in type(exc).__mro__ if c in table), None)  # type: ignore[index]


def unexpected_problem(exc: Exception) -> ProblemException:
    """What an error no table names becomes: the database's own failures 503, the client's 4xx, else 500."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        # The class only: the message quotes the statement, the server's text may quote row values.
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return COMMON_ERRORS[StoreUnavailable].problem(exc)
    if isinstance(exc, RecursionError):
        # Parsing a body nested thousands of levels deep exhausts the stack: the client's fault.
        return ProblemException(
            status=400, title="Bad Request", detail="The request body is nested too deeply."
        )
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if isinstance(status, int) and 400 <= status < 500:
        title = getattr(exc, "name", None) or getattr(exc, "detail", None) or "Client Error"
        return ProblemException(
            status=status, title=str(title), detail=str(getattr(exc, "description", title))
        )
    log.error("unhandled error", exc_info=exc)
    return ProblemException(status=500, title="Internal Server Error", detail="An unexpected error occurred.")


def install_problem_handlers(app: FlaskApp, errors: ErrorTable | None = None) -> None:
    """Every error leaves the service as problem+json: the table's rows (and the kit's), problems raised
    on purpose, Flask's own 404/405, and the unexpected (logged, never shown)."""
    table = {**COMMON_ERRORS, **(errors or {})}
    flask_app = app.app

    # Raised inside a handler: answered by Flask itself (its documented `register_error_handler`),
    # the most specific class first, without leaving the worker thread.
    for error_class, answer in table.items():
        flask_app.register_error_handler(error_class, lambda exc, a=answer: _parts(a.problem(exc)))
    # Connexion turns a werkzeug HTTPException raised in Flask into a bare status; ProblemException is
    # one, so Flask renders it here with its title, detail, headers and extension members.
    flask_app.register_error_handler(ProblemException, _parts)
    not_found = ProblemException(status=404, title="Not Found", detail="No such resource.")
    not_allowed = ProblemException(
        status=405, title="Method Not Allowed", detail="This method is not allowed here."
    )
    flask_app.register_error_handler(404, lambda _e: _parts(not_found))
    flask_app.register_error_handler(405, lambda _e: _parts(not_allowed))

    # Raised before Flask (validation, security) or escaping it.
    def on_connexion_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        return _response(exc, challenge=True)

    def on_unexpected(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        answer = _answer(table, exc)
        return _response(answer.problem(exc) if answer else unexpected_problem(exc))

    app.add_error_handler(ProblemException, on_connexion_problem)
    app.add_error_handler(Exception, on_unexpected)
