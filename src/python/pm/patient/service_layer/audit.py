"""The audit trail's use cases, and the access being served.

`current_access` holds, while a request is served, the entry that will record it (set by the HTTP layer,
pm.patient.entrypoints.audit). A unit of work that commits a change to a patient writes that entry in
the same transaction (pm.patient.adapters.repository.SqlUnitOfWork.commit): the change and its record
are stored together or not at all. Reads are recorded by the HTTP layer after the handler, before the
answer leaves, in a transaction of their own that concurrent reads share (`GroupCommit`): each waits
until its entry is committed, and one lock of the chain head and one commit serve them all.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pm.common.errors import StoreUnavailable
from pm.common.group_commit import GroupCommit
from pm.common.ports import Transaction
from pm.patient.domain.audit import (
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditUnavailable,
    ChainedEntry,
    Verdict,
)


class AuditLog(Protocol):
    def append(self, entry: AuditEntry) -> ChainedEntry:
        """Extend the chain by `entry` (waits for any other writer); AuditUnavailable if it cannot."""

    def append_many(self, entries: Sequence[AuditEntry]) -> list[ChainedEntry]:
        """`append` for each of `entries`, in order, under one lock of the chain head."""

    def find(self, query: AuditQuery) -> AuditPage: ...

    def verify(self) -> Verdict: ...


class AuditUnitOfWork(Transaction, Protocol):
    @property
    def audit(self) -> AuditLog: ...


@dataclass
class Access:
    """The entry recording the request being served (its status is the answer's), and whether a unit of
    work has already written it with the change it made."""

    entry: AuditEntry
    success_status: int
    listing: bool = False  # an operation without a path id: its answer's size is noted
    recorded: bool = False


current_access: contextvars.ContextVar[Access | None] = contextvars.ContextVar("audit_access", default=None)


class AuditService:
    def __init__(self, unit_of_work: Callable[[], AuditUnitOfWork]) -> None:
        self._uow = unit_of_work
        self._batches: GroupCommit[AuditEntry, ChainedEntry] = GroupCommit(self._record_all)

    def record(self, entry: AuditEntry) -> ChainedEntry:
        """Append `entry`, committed when this returns (with the entries of concurrent callers: one
        transaction for all of them); AuditUnavailable if it cannot be stored."""
        return self._batches.submit(entry)

    def _record_all(self, entries: Sequence[AuditEntry]) -> list[ChainedEntry]:
        try:
            with self._uow() as uow:
                chained = uow.audit.append_many(entries)
                uow.commit()
        except StoreUnavailable as exc:
            raise AuditUnavailable(str(exc)) from exc
        return chained

    def find(self, query: AuditQuery) -> AuditPage:
        with self._uow() as uow:
            return uow.audit.find(query)

    def verify(self) -> Verdict:
        with self._uow() as uow:
            return uow.audit.verify()
