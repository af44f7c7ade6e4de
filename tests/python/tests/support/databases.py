"""PostgreSQL databases for one test process, uniquely named, all dropped at the end."""

from __future__ import annotations

import os
import uuid

from pm.common.pgadmin import create_database, drop_database


class PostgresDatabases:
    """Creates uniquely named databases for one test process (Pants' slot keeps processes apart)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        slot = os.environ.get("PM_TEST_SLOT", "0")
        # PM_TEST_DB_PREFIX keeps the databases of one person's runs apart on a shared server.
        self.prefix = f"{os.environ.get('PM_TEST_DB_PREFIX', 'pm_test')}_{slot}_{os.getpid()}"
        self.created: list[str] = []

    def new(self, label: str = "db") -> str:
        name = f"{self.prefix}_{label}_{uuid.uuid4().hex[:6]}"
        url = create_database(self.admin_url, name)
        self.created.append(name)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            drop_database(self.admin_url, name)
