"""`python -m pm.patient.main [serve|migrate]`: the patient service's command line."""

from __future__ import annotations

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.common.service import run
from pm.patient.bootstrap import audit_verify, bootstrap, prepare_database
from pm.patient.config import Settings


def main(argv: list[str] | None = None) -> None:
    run(
        Settings,
        bootstrap,
        prepare_database,
        argv,
        commands={"audit-verify": audit_verify},
        help="serve (default; migrates first unless PM_MIGRATE_ON_START=false), migrate, or audit-verify "
        "(check the audit trail's hash chain; exit status 1 if it is broken), then exit",
    )


if __name__ == "__main__":
    main()
