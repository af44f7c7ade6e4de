"""What every service layer sees of a unit of work, without importing the database layer."""

from __future__ import annotations

from typing import Any, Protocol, Self


class Transaction(Protocol):
    """`with uow:` opens one transaction; `uow.commit()` keeps it; leaving without it rolls back
    (implemented over SQLAlchemy by pm.common.db.UnitOfWork, in memory by the unit tests' fakes)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

    def commit(self) -> None: ...
