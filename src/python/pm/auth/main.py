"""`python -m pm.auth.main [serve|migrate]`: run the auth service, or migrate and seed its database."""

from __future__ import annotations

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.auth.bootstrap import bootstrap, prepare_database
from pm.auth.config import Settings
from pm.common.service import run

HELP = (
    "serve (default): migrate and seed unless PM_MIGRATE_ON_START=false, then serve; "
    "migrate: migrate and seed, then exit"
)


def main(argv: list[str] | None = None) -> None:
    run(Settings, bootstrap, prepare_database, argv, help=HELP)


if __name__ == "__main__":
    main()
