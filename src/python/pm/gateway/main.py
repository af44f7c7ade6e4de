"""`python -m pm.gateway.main [serve|migrate]`: run the API gateway (it keeps no data: nothing to migrate)."""

from __future__ import annotations

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.common.service import run
from pm.gateway.bootstrap import bootstrap, trace_exporter
from pm.gateway.config import Settings


def main(argv: list[str] | None = None) -> None:
    run(Settings, bootstrap, None, argv, span_exporter=trace_exporter)


if __name__ == "__main__":
    main()
