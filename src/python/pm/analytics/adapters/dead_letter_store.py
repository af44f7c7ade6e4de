"""The `dead_letter` table: read, redriven and discarded through the same unit of work as a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pm.analytics.adapters.store import SqlUnitOfWork
from pm.analytics.adapters.tables import dead_letter
from pm.analytics.domain.broker import ParkedMessage
from pm.common.db import Database, from_row, unavailable_as_store_unavailable


class SqlDeadLetterUnitOfWork(SqlUnitOfWork):
    def parked(self, ids: Sequence[int] | None) -> list[ParkedMessage]:
        query = sa.select(dead_letter).order_by(dead_letter.c.id).with_for_update()
        if ids is not None:
            query = query.where(dead_letter.c.id.in_(list(ids)))
        return [_parked(row) for row in self.session.execute(query)]

    def release(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        result = self.session.execute(sa.delete(dead_letter).where(dead_letter.c.id.in_(list(ids))))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def still_parked(self, letter_id: int, error: str) -> None:
        self.session.execute(sa.update(dead_letter).where(dead_letter.c.id == letter_id).values(error=error))


class SqlDeadLetterReader:
    def __init__(self, database: Database) -> None:
        self.database = database

    def page(self, *, limit: int, after: int | None) -> list[ParkedMessage]:
        """Oldest first, `limit` letters whose id is above `after`."""
        query = sa.select(dead_letter).order_by(dead_letter.c.id).limit(limit)
        if after is not None:
            query = query.where(dead_letter.c.id > after)
        return self._read(lambda conn: [_parked(row) for row in conn.execute(query)])

    def count(self) -> int:
        return int(
            self._read(
                lambda conn: conn.execute(sa.select(sa.func.count()).select_from(dead_letter)).scalar_one()
            )
        )

    def _read(self, query: Any) -> Any:
        with unavailable_as_store_unavailable(), self.database.engine.connect() as conn:
            return query(conn)


def _parked(row: Any) -> ParkedMessage:
    return from_row(ParkedMessage, row, id=int(row.id), partition=int(row.partition), offset=int(row.offset))
