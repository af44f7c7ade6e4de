"""A small Connexion service built the way every service is (`spec_app`), to test pm.common over a real socket."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from connexion import request
from connexion.exceptions import ProblemException
from connexion.resolver import Resolver

from pm.common.logs import request_id_var
from pm.common.problems import AsProblem, ErrorTable
from pm.common.specapp import spec_app
from pm.common.tokens import TokenVerifier, require_role
from pm.common.web import HealthCheck, ServiceMiddleware

log = logging.getLogger(__name__)

SPEC = Path(__file__).parent / "webapp.yaml"
ITEMS = {1: {"id": 1, "name": "first"}}
INTERNAL_DETAIL = "connection string postgresql://admin:hunter2@db"


class ItemMissing(Exception):
    """A domain error, answered through the error table."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"Item {item_id} does not exist.")
        self.item_id = item_id


ERRORS: ErrorTable = {ItemMissing: AsProblem(404, "Not Found", ext=lambda exc: {"item_id": exc.item_id})}


def get_item(item_id: int) -> dict[str, Any]:
    if item_id not in ITEMS:
        raise ItemMissing(item_id)
    return ITEMS[item_id]


def create_item(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return {"id": 2, **body}, 201


def boom() -> None:
    raise RuntimeError(INTERNAL_DETAIL)


def context() -> dict[str, Any]:
    log.info("context requested")
    return {"header": request.headers.get("x-request-id"), "log_context": request_id_var.get()}


def me(token_info: dict[str, Any]) -> dict[str, Any]:
    return {"sub": token_info["sub"], "role": token_info["role"]}


def admin_only(token_info: dict[str, Any]) -> dict[str, Any]:
    require_role(token_info, "ADMIN")
    return {"ok": True}


def thread() -> dict[str, Any]:
    return {"thread": threading.current_thread().name}


def busy() -> None:
    raise ProblemException(
        status=429, title="Too Many Requests", detail="Slow down.", headers={"Retry-After": "30"}
    )


def build(
    *,
    health_checks: dict[str, HealthCheck] | None = None,
    informational_checks: dict[str, HealthCheck] | None = None,
    verifier: TokenVerifier | None = None,
    max_body_bytes: int = 1024,
    health_timeout: float = 3.0,
    health_interval: float = 3.0,
) -> ServiceMiddleware:
    app = spec_app(__name__, SPEC, resolver=Resolver(), validate_responses=True, errors=ERRORS)
    return ServiceMiddleware(
        app,
        service="testapp",
        health_checks=health_checks,
        informational_checks=informational_checks,
        max_body_bytes=max_body_bytes,
        health_timeout=health_timeout,
        health_interval=health_interval,
        state={"token_verifier": verifier},
    )
