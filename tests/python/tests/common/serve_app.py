"""A service process for the serve() tests: `python -m tests.common.serve_app PORT MARKER_DIR`.

It writes `started` from its on_start hook and `stopped` from its on_stop hook into MARKER_DIR, and
serves `/slow` (one second) so that a test can check that in-flight requests are drained on SIGTERM.
PM_HTTP_TLS_* settings switch HTTPS on, as in the services.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pm.common.config import Env
from pm.common.logs import configure_logging
from pm.common.tls import server_tls
from pm.common.web import Receive, Scope, Send, ServiceMiddleware, serve


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    body = b"done"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    port, markers = int(sys.argv[1]), Path(sys.argv[2])
    configure_logging("testapp")

    def mark(name: str) -> None:
        (markers / name).write_text(name)

    serve(
        ServiceMiddleware(app, service="testapp"),
        host="127.0.0.1",
        port=port,
        service="testapp",
        on_start=[lambda: mark("started")],
        on_stop=[lambda: mark("stopped")],
        tls=server_tls(Env(), "PM_HTTP_TLS"),
    )


if __name__ == "__main__":
    main()
