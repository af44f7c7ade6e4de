"""Flask under Connexion with one thread hand-off per request: the innermost layer of the middleware stack.

Connexion's `FlaskApp` reaches Flask through a2wsgi's `WSGIMiddleware`, which streams: the worker thread
hands the status line, every body chunk and the end of the body to the event loop one at a time and
waits for each (four cross-thread round trips for a small JSON answer). Profiling the patient service
showed those waits as the largest framework cost (docs/benchmarks.md, "Tuning"). Connexion exposes no
setting for its bridge (upstream: https://github.com/spec-first/connexion/issues/2077 "FlaskApp
significantly slow", https://github.com/spec-first/connexion/issues/1979 asks for the bridge's worker
count); a2wsgi has no non-streaming mode (https://github.com/abersheeran/a2wsgi/issues/23).

What Connexion does document is its middleware stack: an app can be given its own list
(`FlaskApp(middlewares=[...])`, docs "Customizing the middleware stack"), and a middleware is any ASGI
app. `OneHopWSGI.around` is placed last in that list, inside Connexion's `ContextMiddleware`: every HTTP
request that got through routing, security and validation is answered here by running the Flask app
(`FlaskApp.app`, a WSGI app) whole in a worker thread, and the finished response is sent from the loop.
Anything else (lifespan) goes on to Connexion's own bridge. The WSGI environ is built here from the ASGI
scope (PEP 3333); it carries the scope under `asgi.scope`, where Connexion's Flask request reads its
per-request context (tests/python/tests/common/test_specapp.py fails if that changes).

Not for streaming responses: a WSGI iterable is drained before anything is sent. Our handlers answer
small JSON documents. WSGI middleware goes around the Flask app the Flask way
(`app.app.wsgi_app = Middleware(app.app.wsgi_app)`); Connexion's `add_wsgi_middleware` wraps the bridge
this layer bypasses, so it would have no effect.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pm.common.web import ASGIApp, Receive, Scope, Send, read_body

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
THREAD_PREFIX = "flask"


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI HTTP request whose whole body has been read."""
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    server_name, server_port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server_name),
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "asgi.scope": scope,  # Connexion's Flask request keeps its context in the scope's extensions
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class OneHopWSGI:
    """Serve a WSGI app over ASGI with one thread hand-off per request; responses are sent whole.

    The request body is read on the event loop first (the service middleware has already bounded its
    size), the WSGI app runs in a worker thread with the request's context variables (request id, logs,
    Connexion's context), and its status, headers and body come back together.

    Standalone (`OneHopWSGI(app)`) it answers lifespan itself; as Connexion's innermost middleware
    (`middlewares=[..., bridge.around]`) it passes everything but HTTP on to the app it wraps.
    """

    def __init__(self, app: WSGIApp | None = None, workers: int = 10) -> None:
        self.app = app
        self.inner: ASGIApp | None = None
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_PREFIX)

    def around(self, inner: ASGIApp) -> OneHopWSGI:
        """Connexion middleware factory: called once with the app this layer replaces for HTTP."""
        self.inner = inner
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        if self.app is None:
            raise RuntimeError("OneHopWSGI has no WSGI app to serve")
        body = await read_body(receive) or b""
        run = functools.partial(contextvars.copy_context().run, self._run, wsgi_environ(scope, body))
        status, headers, chunks = await asyncio.get_running_loop().run_in_executor(self.executor, run)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inner is not None:
            await self.inner(scope, receive, send)
        elif scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await send({"type": "websocket.close", "code": 1000})

    def _run(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        assert self.app is not None
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
