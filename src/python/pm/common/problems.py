"""RFC 7807 problem+json: one exception type services raise, one set of handlers that render it."""

from __future__ import annotations

import json
import logging
from typing import Any

from connexion import FlaskApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse

from pm.common import db

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"

# Failures of the database itself (down, unreachable, too slow, pool exhausted), as opposed to bugs in
# our SQL: the request may succeed later, so they are 503, not 500.
DATABASE_UNAVAILABLE = db.DATABASE_UNAVAILABLE


class Problem(Exception):
    """An HTTP-level error with a status, a title, a detail and optional extension members."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        return problem_body(self.status, self.title, self.detail, **self.extensions)


def problem_body(status: int, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update(extensions)
    return body


def problem_bytes(status: int, title: str, detail: str, **extensions: Any) -> bytes:
    return json.dumps(problem_body(status, title, detail, **extensions)).encode()


def _render(problem: Problem) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(problem.body()),
        headers=problem.headers,
    )


def install_problem_handlers(app: FlaskApp) -> None:
    """Every error leaves the service as problem+json; unexpected ones are logged, never shown."""

    def on_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, Problem)
        return _render(exc)

    def on_connexion_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        extensions = dict(exc.ext or {})
        headers = dict(exc.headers or {})
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
        return _render(
            Problem(
                exc.status,
                exc.title or "Error",
                exc.detail or exc.title or "Error",
                headers=headers,
                **extensions,
            )
        )

    def on_unexpected(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        if isinstance(exc, DATABASE_UNAVAILABLE):
            # The class only: the message quotes the statement, the server's text may quote row values.
            log.warning("database unavailable", extra={"error": type(exc).__name__})
            return _render(
                Problem(
                    503,
                    "Service Unavailable",
                    "The database is unavailable; retry later.",
                    headers={"Retry-After": RETRY_AFTER_SECONDS},
                )
            )
        if isinstance(exc, RecursionError):
            # Parsing a body nested thousands of levels deep exhausts the stack: the client's fault.
            return _render(Problem(400, "Bad Request", "The request body is nested too deeply."))
        status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
        if isinstance(status, int) and 400 <= status < 500:
            title = getattr(exc, "name", None) or getattr(exc, "detail", None) or "Client Error"
            return _render(Problem(status, str(title), str(getattr(exc, "description", title))))
        log.error("unhandled error", exc_info=exc)
        return _render(Problem(500, "Internal Server Error", "An unexpected error occurred."))

    app.add_error_handler(Problem, on_problem)
    app.add_error_handler(ProblemException, on_connexion_problem)
    app.add_error_handler(Exception, on_unexpected)
    flask_app = app.app

    # Errors raised inside Flask itself (unknown path, wrong method) are rendered here.
    @flask_app.errorhandler(404)
    def _not_found(_err):  # type: ignore[no-untyped-def]
        return Problem(404, "Not Found", "No such resource.").body(), 404, {"Content-Type": PROBLEM_JSON}

    @flask_app.errorhandler(405)
    def _not_allowed(_err):  # type: ignore[no-untyped-def]
        body = Problem(405, "Method Not Allowed", "This method is not allowed here.").body()
        return body, 405, {"Content-Type": PROBLEM_JSON}

    @flask_app.errorhandler(Problem)
    def _problem(err: Problem):  # type: ignore[no-untyped-def]
        return err.body(), err.status, {"Content-Type": PROBLEM_JSON, **err.headers}
