"""One way to build a service's Connexion app from its OpenAPI document, with what measurement showed it costs.

Every HTTP service (auth, patient, analytics) is a `FlaskApp` over a YAML spec with strict request
validation and problem+json errors, built only through Connexion's documented parameters. Four choices
here come from profiling the patient service's `GET /patients/{id}` under load (docs/benchmarks.md):

- Responses are encoded compactly by the C JSON encoder (`jsonifier=`). Connexion's default for Flask
  pretty-prints (`indent=2`), which makes `json` fall back to its pure-Python encoder for every body.
- Response validation is optional (`PM_VALIDATE_RESPONSES`, off by default): it buffers every response,
  parses it again and runs the schema over it, a check of our own code rather than of the client's input.
  The test suites switch it on, so a handler that drifts from its spec fails there.
- The bearer scheme is checked by `BearerHandler` (`security_map=`, Connexion's documented way to replace
  a security handler). Connexion's own handler calls `inspect.signature` on the bearer-info function twice
  per request to decide which arguments to pass; ours knows them.
- Flask is served by `pm.common.wsgi.OneHopWSGI`, the last entry of the app's middleware stack
  (`middlewares=`), instead of Connexion's a2wsgi bridge: one thread hand-off per request instead of four.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from connexion import ConnexionMiddleware, FlaskApp
from connexion.exceptions import OAuthResponseProblem
from connexion.jsonifier import Jsonifier
from connexion.lifecycle import ConnexionRequest
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from connexion.security import NO_VALUE, AbstractSecurityHandler

from pm.common.problems import ErrorTable, install_problem_handlers
from pm.common.tokens import bearer_token
from pm.common.wsgi import OneHopWSGI

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
    extra_specs: Sequence[Path] = (),
) -> FlaskApp:
    """A FlaskApp serving `spec` (a YAML file) with strict validation and problem+json errors; `errors`
    is the service's table from domain errors to problems (pm.common.problems).

    `extra_specs`: more APIs of the same app (YAML files beside spec), validated alike. Each must have a
    base path of its own (`servers: [{url: /fhir}]`): Connexion keeps one API per base path, so a second
    API at `/` would replace the first one's `/openapi.json`. Each serves its JSON at `<base>/openapi.json`.
    """
    bridge = OneHopWSGI()
    app = FlaskApp(
        import_name,
        specification_dir=str(spec.parent),
        jsonifier=COMPACT_JSON,
        middlewares=[*ConnexionMiddleware.default_middlewares, bridge.around],
        security_map={"bearer": BearerHandler},
    )
    bridge.app = app.app  # the Flask app, a WSGI app (Flask's own wsgi_app wrapping still applies)
    options: dict[str, Any] = {
        "resolver": resolver,
        "strict_validation": True,
        "validate_responses": validate_responses,
        "pythonic_params": pythonic_params,
        "validator_map": dict(validator_map) if validator_map is not None else None,
    }
    app.add_api(spec.name, **options)
    for extra in extra_specs:
        app.add_api(extra.name, swagger_ui_options=SwaggerUIOptions(swagger_ui=False), **options)
    install_problem_handlers(app, errors)
    return app


BearerInfo = Callable[[str, ConnexionRequest], Awaitable[Mapping[str, Any] | None]]


class BearerHandler(AbstractSecurityHandler):
    """The `http`/`bearer` security scheme: `await <x-bearerInfoFunc>(token, request)` -> claims or None.

    The spec's `x-bearerInfoFunc` must be a coroutine function taking `(token, request)` (checked once,
    when the app starts). The token is read with `pm.common.tokens.bearer_token`, the one parser of
    `Authorization` headers in the system: anything but `Bearer <token>` counts as no token (401). None
    from the function is an invalid token (401).
    """

    security_definition_key = "x-bearerInfoFunc"
    environ_key = "BEARERINFO_FUNC"

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: list[str]) -> Callable[..., Any]:
        info = bearer_info_function(security_scheme.get(self.security_definition_key))

        async def verify(request: ConnexionRequest) -> Any:
            token = bearer_token(request.headers.get("authorization"))
            if token is None:
                return NO_VALUE
            claims = await info(token, request)
            if claims is None:
                raise OAuthResponseProblem(detail="Provided token is not valid")
            return claims

        return verify


def bearer_info_function(reference: Any) -> BearerInfo:
    """The coroutine function named `module.name` by a spec, refused unless it takes (token, request)."""
    if not isinstance(reference, str) or "." not in reference:
        raise ValueError("a bearer security scheme needs x-bearerInfoFunc: <module>.<function>")
    module, _, name = reference.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    parameters = list(inspect.signature(function).parameters)
    if not inspect.iscoroutinefunction(function) or parameters[:2] != ["token", "request"]:
        raise ValueError(f"{reference} must be `async def {name}(token, request)`")
    return function  # type: ignore[no-any-return]
