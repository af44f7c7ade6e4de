"""One way to build a service's Connexion app from its OpenAPI document, with what measurement showed it costs.

Every HTTP service (auth, patient, analytics) is a `FlaskApp` over a YAML spec with strict request
validation and problem+json errors. Three choices here come from profiling the patient service's
`GET /patients/{id}` under load (docs/benchmarks.md):

- Responses are encoded compactly by the C JSON encoder. Connexion's default for Flask pretty-prints
  (`indent=2`), which makes `json` fall back to its pure-Python encoder for every response body.
- Response validation is optional (`PM_VALIDATE_RESPONSES`, off by default): it buffers every response,
  parses it again and runs the schema over it, a check of our own code rather than of the client's input.
  The test suites switch it on, so a handler that drifts from its spec fails there.
- Connexion's security layer calls `inspect.signature` on the bearer-info function twice per request; the
  answer never changes for a function, so it is cached.
- Flask runs behind `OneHopWSGI` instead of Connexion's a2wsgi bridge. a2wsgi streams: the worker thread
  hands the status line, every body chunk and the end of the body to the event loop one by one, waiting
  for each (four cross-thread round trips for a small JSON answer). Our handlers answer small JSON
  documents, so the worker thread runs the whole Flask request and the loop sends the finished response:
  one hand-off there and one back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import connexion.security
from a2wsgi.wsgi import build_environ  # pants: no-infer-dep (comes with connexion[flask])
from connexion import FlaskApp
from connexion.jsonifier import Jsonifier
from connexion.resolver import Resolver

from pm.common.problems import ErrorTable, install_problem_handlers
from pm.common.web import Receive, Scope, Send, read_body

COMPACT_JSON = Jsonifier(json, separators=(",", ":"))


def spec_app(
    import_name: str,
    spec: Path,
    *,
    resolver: Resolver,
    validate_responses: bool,
    validator_map: Mapping[str, Any] | None = None,
    pythonic_params: bool = False,
    errors: ErrorTable | None = None,
) -> FlaskApp:
    """A FlaskApp serving `spec` (a YAML file) with strict validation and problem+json errors; `errors`
    is the service's table from domain errors to problems (pm.common.problems)."""
    cache_security_signatures()
    app = FlaskApp(import_name, specification_dir=str(spec.parent), jsonifier=COMPACT_JSON)
    app.add_api(
        spec.name,
        resolver=resolver,
        strict_validation=True,
        validate_responses=validate_responses,
        pythonic_params=pythonic_params,
        validator_map=dict(validator_map) if validator_map is not None else None,
    )
    install_problem_handlers(app, errors)
    flask_side = app._middleware_app  # the one place Connexion keeps its WSGI bridge
    flask_side.asgi_app = OneHopWSGI(flask_side.app.wsgi_app)
    return app


def cache_security_signatures() -> None:
    """Remember what `inspect_function_arguments` found per function in Connexion's security layer."""
    current = connexion.security.inspect_function_arguments
    if not hasattr(current, "cache_info"):
        connexion.security.inspect_function_arguments = functools.lru_cache(maxsize=256)(current)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OneHopWSGI:
    """Serve a WSGI app over ASGI with one thread hand-off per request; responses are sent whole.

    The request body is read on the event loop first (the service middleware has already bounded its
    size), the WSGI app runs in a worker thread with the request's context variables (request id, logs),
    and its status, headers and body come back together. Not for streaming responses: a WSGI iterable is
    drained before anything is sent.
    """

    def __init__(self, app: WSGIApp, workers: int = 10) -> None:
        self.app = app  # Connexion's add_wsgi_middleware wraps this attribute
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = await read_body(receive) or b""
        environ: dict[str, Any] = {
            **build_environ(scope, io.BytesIO(body)),  # type: ignore[arg-type]
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
        }
        run = functools.partial(contextvars.copy_context().run, self._run, environ)
        status, headers, chunks = await asyncio.get_running_loop().run_in_executor(self.executor, run)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    def _run(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if started and exc_info is None:
                raise RuntimeError("start_response called twice without exc_info")
            started[:] = [status, headers]
            return chunks.append

        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without starting a response")
        status, headers = started
        encoded = [(k.strip().lower().encode("latin-1"), v.strip().encode("latin-1")) for k, v in headers]
        return int(status.split(" ", 1)[0]), encoded, chunks
