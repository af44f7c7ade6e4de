"""Run billing: `python -m pm.billing.main [serve|migrate]`."""

from __future__ import annotations

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.billing.bootstrap import bootstrap, prepare_database
from pm.billing.config import Settings
from pm.common.service import run


def main(argv: list[str] | None = None) -> None:
    run(Settings, bootstrap, prepare_database, argv)


if __name__ == "__main__":
    main()
