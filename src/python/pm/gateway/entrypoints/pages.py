"""What the gateway serves itself: the services' API documents, Swagger UI over them, and the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pm.gateway.adapters.openapi import ApiDocs
from pm.gateway.adapters.upstream import UpstreamFailure
from pm.gateway.entrypoints.problems import problem_response

DOCS = "/docs"
API_DOCS = "/api-docs"
DASHBOARD = "/dashboard"
STATIC_SUFFIXES = frozenset(
    {".html", ".js", ".mjs", ".css", ".map", ".svg", ".png", ".ico", ".json", ".woff", ".woff2", ".txt"}
)


class AssetFolder(StaticFiles):
    """StaticFiles limited to web assets (no hidden files, no BUILD or source files next to them), sent
    with `cache_control`."""

    def __init__(self, directory: Path, *, cache_control: str) -> None:
        super().__init__(directory=directory)
        self.cache_control = cache_control

    async def get_response(self, path: str, scope: Scope) -> Response:
        relative = PurePosixPath(path)
        if relative.suffix not in STATIC_SUFFIXES or any(part.startswith(".") for part in relative.parts):
            raise HTTPException(404)
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = self.cache_control
        return response


def docs_routes(docs: ApiDocs, swagger_ui: Path) -> list[BaseRoute]:
    """`/api-docs/<name>` (each service's document, pointed at the gateway) and Swagger UI at `/docs`."""
    index = swagger_index(DOCS)
    config = swagger_config([(name, f"{API_DOCS}/{name}") for name in docs.sources])

    async def index_page(_request: Request) -> Response:
        return HTMLResponse(index)

    async def config_script(_request: Request) -> Response:
        return Response(config, media_type="text/javascript")

    async def api_document(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in docs:
            raise HTTPException(404)
        try:
            document = await docs.document(name)
        except UpstreamFailure as failure:
            return problem_response(failure.status, failure.title, failure.detail)
        return Response(document, media_type="application/json")

    return [
        Route(API_DOCS + "/{name}", api_document, methods=["GET"]),
        Route(DOCS, index_page, methods=["GET"]),
        Route(DOCS + "/", index_page, methods=["GET"]),
        Route(DOCS + "/swagger-config.js", config_script, methods=["GET"]),
        # The Swagger UI bundle is versioned with the package: browsers may keep it for a day.
        Mount(DOCS, app=AssetFolder(swagger_ui, cache_control="public, max-age=86400")),
    ]


def dashboard_routes(folder: Path, *, production: bool) -> list[BaseRoute]:
    """The dashboard under `/dashboard/` (`/` and `/dashboard` redirect there)."""
    page = (folder / "index.html").read_bytes()
    if production:
        page = without_demo_hint(page)

    async def to_dashboard(_request: Request) -> Response:
        return RedirectResponse(DASHBOARD + "/", status_code=307)

    async def index_page(_request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    return [
        Route("/", to_dashboard, methods=["GET"]),
        Route(DASHBOARD, to_dashboard, methods=["GET"]),
        Route(DASHBOARD + "/", index_page, methods=["GET"]),
        Route(DASHBOARD + "/index.html", index_page, methods=["GET"]),
        Mount(DASHBOARD, app=AssetFolder(folder, cache_control="no-cache")),
    ]


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
