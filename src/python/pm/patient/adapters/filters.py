"""Search filters (domain/filters.py) as SQL conditions on the patients table, each backed by an index
that migration 0003 created for the list:

- names: one regular expression on `lower(name)` (PostgreSQL `~`, SQLite's REGEXP as SQLAlchemy's
  pysqlite dialect provides it), anchored at the start of a word: the trigram index on lower(name)
  answers it on PostgreSQL (from 3 characters on: pg_trgm needs a trigram of the value);
- email: equality on `email_key` (its unique index);
- birth date: a range on `date_of_birth` (its (date_of_birth, id) index).
"""

from __future__ import annotations

import sqlalchemy as sa

from pm.patient.adapters import tables
from pm.patient.domain.filters import BirthDateFilter, EmailFilter, Filter, NameFilter, NamePart

_t = tables.patients


def _regex_escape(value: str) -> str:
    """Every character but letters and digits escaped: `\\<non-alphanumeric>` is that character itself
    in both PostgreSQL's and Python's regular expressions."""
    return "".join(c if c.isalnum() else "\\" + c for c in value)


def condition(filter_: Filter) -> sa.ColumnElement[bool]:
    if isinstance(filter_, NameFilter):
        return _name(filter_)
    if isinstance(filter_, EmailFilter):
        return _t.c.email_key == filter_.value
    if isinstance(filter_, BirthDateFilter):
        bounds = []
        if filter_.low is not None:
            bounds.append(_t.c.date_of_birth >= filter_.low)
        if filter_.high is not None:
            bounds.append(_t.c.date_of_birth <= filter_.high)
        return sa.and_(sa.true(), *bounds)
    raise TypeError(f"not a search filter: {filter_!r}")


def _name(filter_: NameFilter) -> sa.ColumnElement[bool]:
    value = _regex_escape(filter_.value)
    if filter_.part is NamePart.ANY:
        pattern = f"(^| ){value}"  # the start of a word, or of the name
    elif filter_.part is NamePart.FAMILY:
        pattern = f"(^| ){value}[^ ]* *$"  # the last word
    else:
        pattern = f"(^| ){value}[^ ]* +[^ ]"  # a word with another after it
    return sa.func.lower(_t.c.name).regexp_match(pattern)
