"""What the gateway serves itself: Swagger UI over the services' documents, and the dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import cast

from starlette import types
from starlette.responses import FileResponse, Response

from pm.common.web import Receive, Scope, Send

STATIC_SUFFIXES = frozenset(
    {".html", ".js", ".mjs", ".css", ".map", ".svg", ".png", ".ico", ".json", ".woff", ".woff2", ".txt"}
)


class NotFound(Exception):
    pass


class StaticFolder:
    """Files of one folder, by relative path; anything outside it or of another kind is not found."""

    def __init__(
        self, root: Path, *, cache_control: str, overrides: Mapping[str, tuple[bytes, str]] | None = None
    ) -> None:
        self.root = root.resolve()
        self.cache_control = cache_control
        # Files served from memory instead (relative path -> content, media type).
        self.overrides = dict(overrides or {})

    def locate(self, relative: str) -> Path:
        parts = PurePosixPath(relative).parts
        if not parts or any(part in ("..", ".") or part.startswith(".") or "\\" in part for part in parts):
            raise NotFound(relative)
        path = self.root.joinpath(*parts)
        if path.suffix not in STATIC_SUFFIXES or not path.is_file():
            raise NotFound(relative)
        return path

    async def serve(self, relative: str, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response
        if relative in self.overrides:
            content, media_type = self.overrides[relative]
            response = Response(content, media_type=media_type, headers={"cache-control": self.cache_control})
        else:
            response = FileResponse(self.locate(relative), headers={"cache-control": self.cache_control})
        await response(scope, receive, cast(types.Send, send))


DEMO_HINT = re.compile(rb"\s*<p [^>]*data-demo-hint[^>]*>.*?</p>", re.DOTALL)


def without_demo_hint(page: bytes) -> bytes:
    """The sign-in page without the demo credentials (production has no demo user)."""
    stripped, count = DEMO_HINT.subn(b"", page)
    if count != 1:
        raise ValueError("the dashboard page has no single demo-account hint to remove")
    return stripped


def swagger_ui_folder() -> Path:
    """Swagger UI as installed by connexion[swagger-ui] (package swagger_ui_bundle): no CDN."""
    from swagger_ui_bundle import swagger_ui_path  # pants: no-infer-dep

    return Path(str(swagger_ui_path))


def swagger_index(prefix: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Patient Management System API</title>
<link rel="stylesheet" href="{prefix}/swagger-ui.css">
<link rel="icon" type="image/png" href="{prefix}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{prefix}/swagger-ui-bundle.js"></script>
<script src="{prefix}/swagger-ui-standalone-preset.js"></script>
<script src="{prefix}/swagger-config.js"></script>
</body>
</html>
""".encode()


def swagger_config(documents: list[tuple[str, str]]) -> bytes:
    """The Swagger UI start-up script, served as a file so that no inline script is needed."""
    urls = json.dumps([{"name": name, "url": url} for name, url in documents])
    return f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    urls: {urls},
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  }});
}};
""".encode()
