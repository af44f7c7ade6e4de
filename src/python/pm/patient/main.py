"""`python -m pm.patient.main [serve|migrate]`: the patient service's command line."""

from __future__ import annotations

import argparse
import logging

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pm.common.config import load_or_exit
from pm.common.logs import configure_logging, scrub
from pm.common.tracing import configure_tracing
from pm.common.web import serve
from pm.patient.bootstrap import SERVICE, build, migrate_and_seed, topics_ready
from pm.patient.config import Settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.patient", description="The patient service.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve (default; migrates first when PM_MIGRATE_ON_START is true) or migrate (migrate + seed)",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit(Settings.from_env, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    configure_tracing(SERVICE)

    if args.command == "migrate" or settings.migrate_on_start:
        try:
            added = migrate_and_seed(settings.database_url)
        except SQLAlchemyError as exc:
            where = make_url(settings.database_url).render_as_string(hide_password=True)
            reason = scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])[:200]
            raise SystemExit(f"{SERVICE}: cannot prepare the database at {where}: {reason}") from None
        log.info("database ready", extra={"seeded": added})
    if args.command == "migrate":
        return

    try:
        topics_ready(settings)
    except Exception as exc:  # noqa: BLE001 - the relay keeps retrying; the service still serves
        log.warning(
            "cannot create the topic yet", extra={"topic": settings.patient_topic, "error": str(exc)[:200]}
        )
    app = build(settings)
    serve(
        app.asgi,
        host=settings.host,
        port=settings.port,
        service=SERVICE,
        on_start=[app.start],
        on_stop=[app.stop],
        trusted_proxies=settings.trusted_proxies,
        tls=settings.http_tls,
    )


if __name__ == "__main__":
    main()
