"""Which public path goes to which service, under which path, and whether it needs a token."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN = ("ADMIN",)


@dataclass(frozen=True)
class Route:
    """Public paths `prefix` and `prefix/...` (only `prefix` if `exact`) go to `upstream` with `prefix`
    replaced by `target`. The gateway's Starlette router tries the routes in order."""

    upstream: str
    prefix: str
    target: str
    needs_token: bool
    exact: bool = False
    # When set, only a token with one of these roles passes (the service checks again): 403 otherwise.
    roles: tuple[str, ...] = ()
    # A FHIR API: the gateway's own errors on this route are OperationOutcomes (application/fhir+json).
    fhir: bool = False

    @property
    def forwarded_prefix(self) -> str:
        """Where the upstream is mounted publicly: `/api` for `/api/patients` -> `/patients`."""
        if self.target and self.prefix.endswith(self.target):
            return self.prefix[: -len(self.target)]
        return ""


def public_routes() -> tuple[Route, ...]:
    """The public API of the system (system.md, Gateway section).

    Auth is exposed through an allow-list: its login, refresh, validation and key endpoints are public,
    logout and user management need a token (auth itself enforces ADMIN), and nothing else of auth
    (health, metrics, the internal revocation feed) is reachable from outside.
    """
    return (
        # The busiest first: the router tries them in order, and the first that takes a path wins.
        Route("patient", "/api/patients", "/patients", needs_token=True),
        Route("analytics", "/api/analytics", "/analytics", needs_token=True),
        # FHIR R4: the CapabilityStatement is public (clients read it before they authenticate).
        Route("patient", "/fhir/metadata", "/fhir/metadata", needs_token=False, exact=True, fhir=True),
        Route("patient", "/fhir", "/fhir", needs_token=True, fhir=True),
        # The broker view: the outbox backlog is the patient service's, the rest analytics'.
        Route("patient", "/api/broker/outbox", "/broker/outbox", needs_token=True, exact=True, roles=ADMIN),
        Route("analytics", "/api/broker", "/broker", needs_token=True, roles=ADMIN),
        # ADMIN only, but decided by the patient service, which records a USER's refusal in the trail.
        Route("patient", "/api/audit-events", "/audit-events", needs_token=True, exact=True),
        Route("auth", "/auth/users", "/users", needs_token=True),
        Route("auth", "/auth/login", "/login", needs_token=False, exact=True),
        Route("auth", "/auth/token/refresh", "/token/refresh", needs_token=False, exact=True),
        Route("auth", "/auth/logout", "/logout", needs_token=True, exact=True),
        Route("auth", "/auth/validate", "/validate", needs_token=False, exact=True),
        Route(
            "auth",
            "/auth/.well-known/jwks.json",
            "/.well-known/jwks.json",
            needs_token=False,
            exact=True,
        ),
    )
