"""Two routing corrections for Connexion apps, from the OpenAPI spec: wrap the app in `SpecRouting(app, spec)`.

- `Allow` on 405 answers lists every method the spec declares for the path. Starlette's router answers 405
  with the methods of the first route whose path matched, and Connexion registers one route per
  operation: a path with GET and POST answered `Allow: GET, HEAD` (RFC 9110 section 15.5.6 says it must
  list what the resource supports).
- A path with a control character (e.g. a decoded `%0A`) names no resource: 404. Connexion's router and
  Flask's disagree on such paths, and the handler then ran without its operation and failed with a 500.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from pm.common.problems import PROBLEM_JSON, problem_bytes

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def declared_methods(spec_file: Path) -> list[tuple[re.Pattern[str], str]]:
    """`(path regex, "GET, HEAD, POST")` for every path of the spec (HEAD goes with GET, as served)."""
    spec = yaml.safe_load(spec_file.read_text())
    base = ""
    servers = spec.get("servers") or []
    if servers and isinstance(servers[0].get("url"), str) and servers[0]["url"].startswith("/"):
        base = servers[0]["url"].rstrip("/")
    routes = []
    for template, item in (spec.get("paths") or {}).items():
        methods = {m.upper() for m in item if m in HTTP_METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(base + template))
        routes.append((re.compile(f"^{pattern}/?$"), ", ".join(sorted(methods))))
    return routes


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SpecRouting:
    def __init__(self, app: ASGIApp, spec_file: Path) -> None:
        self.app = app
        self.routes = declared_methods(spec_file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _CONTROL.search(scope["path"]):
            body = problem_bytes(404, "Not Found", "No such resource.")
            headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        allow = next((methods for pattern, methods in self.routes if pattern.match(scope["path"])), None)

        async def send_with_allow(message: Message) -> None:
            if allow is not None and message["type"] == "http.response.start" and message["status"] == 405:
                message = dict(message)
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                ] + [(b"allow", allow.encode())]
            await send(message)

        await self.app(scope, receive, send_with_allow)
