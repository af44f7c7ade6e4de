"""`python -m pm.patient.main [serve|migrate]`: the patient service's command line."""

from __future__ import annotations

from pm.common.service import run
from pm.patient.bootstrap import bootstrap, prepare_database
from pm.patient.config import Settings


def main(argv: list[str] | None = None) -> None:
    run(Settings, bootstrap, prepare_database, argv)


if __name__ == "__main__":
    main()
