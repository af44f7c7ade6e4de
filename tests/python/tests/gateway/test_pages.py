"""API documents through the gateway, Swagger UI without a CDN, and the dashboard."""

from __future__ import annotations

import re

import pytest

from pm.common.broker import free_port
from tests.gateway.conftest import Gateway

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Patient Service", "version": "1.0"},
    "servers": [{"url": "http://10.0.0.5:4000/"}],
    "paths": {"/patients": {"get": {"operationId": "list", "responses": {"200": {"description": "ok"}}}}},
}


@pytest.mark.parametrize(
    ("name", "service", "server"),
    [("patients", "patient", "/api"), ("auth", "auth", "/auth"), ("analytics", "analytics", "/api")],
)
def test_api_documents_point_try_it_out_at_the_gateway(
    gateway: Gateway, upstreams: dict, name: str, service: str, server: str
) -> None:
    upstreams[service][0].openapi = DOCUMENT
    response = gateway().get(f"/api-docs/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert [entry["url"] for entry in document["servers"]] == [server]
    assert document["paths"] == DOCUMENT["paths"]
    assert document["info"] == DOCUMENT["info"]


def test_api_documents_are_cached_briefly(gateway: Gateway, upstreams: dict) -> None:
    patient = upstreams["patient"][0]
    cached = gateway()
    for _ in range(5):
        assert cached.get("/api-docs/patients").status_code == 200
    assert patient.openapi_fetches == 1
    uncached = gateway(PM_GATEWAY_DOCS_CACHE_SECONDS="0")
    for _ in range(2):
        assert uncached.get("/api-docs/patients").status_code == 200
    assert patient.openapi_fetches == 3


def test_api_document_of_a_service_that_is_down_is_502(gateway: Gateway) -> None:
    response = gateway(PM_ANALYTICS_URL=f"http://127.0.0.1:{free_port()}").get("/api-docs/analytics")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert "analytics" in response.json()["detail"]


def test_api_document_that_is_not_json_is_502(gateway: Gateway, upstreams: dict) -> None:
    upstreams["auth"][0].openapi = b"<html>oops</html>"
    response = gateway().get("/api-docs/auth")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_api_document_is_404(gateway: Gateway) -> None:
    assert gateway().get("/api-docs/billing").status_code == 404


def test_swagger_ui_page_and_all_its_assets_load_from_the_gateway(gateway: Gateway) -> None:
    client = gateway()
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs/swagger-ui-bundle.js" in assets
    for asset in assets:
        assert asset.startswith("/docs/"), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0
    config = client.get("/docs/swagger-config.js").text
    for name in ("patients", "auth", "analytics"):
        assert f'"/api-docs/{name}"' in config
    assert client.get("/docs/").status_code == 200
    assert client.get("/docs/nothing.js").status_code == 404
    assert client.post("/docs").status_code == 405


def test_dashboard_is_served_with_its_assets(gateway: Gateway) -> None:
    client = gateway()
    redirect = client.get("/dashboard")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/dashboard/"
    assert client.get("/").headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for asset in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/dashboard/BUILD").status_code == 404
    assert client.get("/dashboard/missing.js").status_code == 404


def test_production_serves_the_sign_in_page_without_the_demo_credentials(gateway: Gateway) -> None:
    dev = gateway().get("/dashboard/").text
    assert "testuser@test.com" in dev and "password123" in dev
    production = gateway(PM_ENV="production")
    for path in ("/dashboard/", "/dashboard/index.html"):
        page = production.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "testuser@test.com" not in page.text and "password123" not in page.text
        assert 'id="login-form"' in page.text or "Sign in" in page.text
    assert production.get("/dashboard/app.js").status_code == 200
