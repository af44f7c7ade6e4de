"""Composition root: the auth service built from Settings, every collaborator swappable in tests; the
only place objects are built."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pm.auth.adapters.keys import KeySet, load_key_set
from pm.auth.adapters.passwords import BcryptHasher
from pm.auth.adapters.repositories import SqlUnitOfWork
from pm.auth.adapters.tokens import JwtIssuer
from pm.auth.config import Settings
from pm.auth.domain.throttle import ThrottlePolicy
from pm.auth.entrypoints.handlers import ERRORS, REVOCATION_PAGE, AuthHandlers, revocation_page
from pm.auth.entrypoints.validation import VALIDATORS
from pm.auth.service_layer import services
from pm.auth.service_layer.ports import PasswordHasher, UnitOfWork
from pm.common.db import Database, migrate
from pm.common.handlers import handler_resolver
from pm.common.routing import SpecRouting
from pm.common.service import Service
from pm.common.specapp import spec_app
from pm.common.tokens import RevocationFeed, RevocationList, StaticKeys, TokenVerifier
from pm.common.web import ServiceMiddleware

SERVICE = "auth"
PACKAGE = Path(__file__).parent
MIGRATIONS = PACKAGE / "migrations"
API = PACKAGE / "api"


def utc_now() -> datetime:
    return datetime.now(UTC)


def unit_of_work(database: Database) -> Callable[[], UnitOfWork]:
    return lambda: SqlUnitOfWork(database)


def prepare_database(
    settings: Settings, *, database: Database | None = None, hasher: PasswordHasher | None = None
) -> bool:
    """Apply migrations, then seed the demo user if enabled; True if the demo user was created now."""
    migrate(settings.database_url, MIGRATIONS)
    if not settings.seed_demo_user:
        return False
    own = Database(settings.database_url) if database is None else None
    try:
        return services.seed_demo_user(
            uow=unit_of_work(database or own),  # type: ignore[arg-type]
            hasher=hasher or BcryptHasher(settings.bcrypt_rounds),
            clock=utc_now,
        )
    finally:
        if own is not None:
            own.dispose()


def throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        free_per_account=settings.max_failures_per_email,
        free_per_client=settings.max_failures_per_client,
        base_delay=timedelta(seconds=settings.throttle_base_seconds),
        max_delay=timedelta(seconds=settings.throttle_max_seconds),
        window=timedelta(seconds=settings.failure_window_seconds),
    )


def bootstrap(
    settings: Settings,
    *,
    database: Database | None = None,
    keys: KeySet | None = None,
    hasher: PasswordHasher | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Service:
    """The auth API and its revocation poller. The keys are loaded first: a bad key setting (ConfigError)
    stops the service before it touches the database."""
    keys = keys or load_key_set(settings)
    owned = database is None
    database = database or Database(settings.database_url)
    auth = services.AuthService(
        uow=unit_of_work(database),
        hasher=hasher or BcryptHasher(settings.bcrypt_rounds),
        issuer=JwtIssuer(
            keys.signing, issuer=settings.jwt_issuer, ttl_seconds=settings.token_ttl_seconds, clock=clock
        ),
        policy=throttle_policy(settings),
        clock=clock,
        session_ttl=timedelta(seconds=settings.refresh_ttl_seconds),
    )
    # Auth checks its own tokens with its own public keys and reads revocations from its own database:
    # no HTTP call to itself.
    revocations = RevocationList(database_feed(auth), name="auth")
    verifier = TokenVerifier(
        StaticKeys(keys.public_keys()), issuer=settings.jwt_issuer, revocations=revocations
    )
    api = spec_app(
        __name__,
        API / "openapi.yaml",
        resolver=handler_resolver(AuthHandlers(auth, keys, revocations)),
        validate_responses=settings.validate_responses,
        validator_map=VALIDATORS,
        errors=ERRORS,
    )
    app = ServiceMiddleware(
        # A control character in a path (`/users/%0A/unlock`) is a 404 here, not a handler without its
        # operation failing with a 500.
        SpecRouting(api, API / "openapi.yaml"),
        service=SERVICE,
        health_checks={"database": database.ping},
        health_interval=settings.health_interval,
        state={"token_verifier": verifier},
    )
    return Service(SERVICE, app, workers=[revocations], close=[database.dispose] if owned else [])


def database_feed(auth: services.AuthService) -> RevocationFeed:
    """The revocation feed read straight from auth's database (what `GET /revocations` serves)."""

    def fetch(after: int) -> dict[str, Any]:
        return revocation_page(*auth.revocations(after, REVOCATION_PAGE))

    return fetch
