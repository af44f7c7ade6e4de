"""Run analytics: `python -m pm.analytics.main [serve|migrate|rebuild]`."""

from __future__ import annotations

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.analytics.bootstrap import bootstrap, prepare_database, rebuild
from pm.analytics.config import Settings
from pm.common.service import run

HELP = (
    "serve (default), migrate, or rebuild: empty analytics and have the patient service's retained "
    "events published again"
)


def main(argv: list[str] | None = None) -> None:
    run(Settings, bootstrap, prepare_database, argv, commands={"rebuild": rebuild}, help=HELP)


if __name__ == "__main__":
    main()
