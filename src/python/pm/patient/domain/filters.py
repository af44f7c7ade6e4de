"""Search filters beyond the list's free-text `search`: what the FHIR search parameters ask for, in terms
of the stored patient (one `name` text, `email`, `date_of_birth`). Pure values; the repository turns them
into index-backed SQL (adapters/filters.py) and the FHIR handlers parse them from query text.

A stored name is split into words at spaces: the last word is the family name, the words before it the
given names (docs/fhir.md). Matching ignores case.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, timedelta

from pm.patient.domain.model import InvalidPatient


def name_words(name: str) -> list[str]:
    """The words of a stored name (separated by spaces, as the search sees them)."""
    return [word for word in name.split(" ") if word]


def split_name(name: str) -> tuple[list[str], str | None]:
    """(given names, family name): the last word is the family; a one-word name is a family name only."""
    words = name_words(name)
    if not words:
        return [], None
    return words[:-1], words[-1]


class NamePart(enum.Enum):
    ANY = "name"  # a word of the name (any part) starts with the value, or the whole name does
    FAMILY = "family"  # the last word starts with the value
    GIVEN = "given"  # a word before the last starts with the value


@dataclass(frozen=True)
class NameFilter:
    part: NamePart
    value: str  # lower-cased, surrounding spaces removed, never empty


@dataclass(frozen=True)
class EmailFilter:
    value: str  # lower-cased (emails are unique case-insensitively)


@dataclass(frozen=True)
class BirthDateFilter:
    """Dates of birth from `low` to `high`, both inclusive; None is unbounded."""

    low: date | None = None
    high: date | None = None


Filter = NameFilter | EmailFilter | BirthDateFilter

# FHIR date search prefixes (https://hl7.org/fhir/R4/search.html#prefix) supported on birthdate; a
# birth date is a day, so `sa` and `eb` are `gt` and `lt`.
DATE_PREFIXES = ("eq", "gt", "ge", "lt", "le", "sa", "eb")
_DATE = re.compile(r"^(?P<prefix>[a-z]{2})?(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2}))?)?$")


def name_filter(part: NamePart, text: str) -> NameFilter:
    value = text.strip().lower()
    if not value:
        raise InvalidPatient({part.value: f"The {part.value} to search for is empty."})
    if "," in value:
        raise InvalidPatient(
            {part.value: "A list of values (a comma) is not supported; repeat the parameter to narrow."}
        )
    return NameFilter(part, value)


def email_filter(text: str) -> EmailFilter:
    value = text.strip().lower()
    if not value:
        raise InvalidPatient({"email": "The email to search for is empty."})
    if "," in value or "|" in value:
        raise InvalidPatient({"email": "Give one email address (no list, no system|value form)."})
    return EmailFilter(value)


def birthdate_filter(text: str) -> BirthDateFilter:
    """`[prefix]YYYY[-MM[-DD]]`: a year or a month is the range of its days."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise InvalidPatient(
            {
                "birthdate": "Use [prefix]YYYY, YYYY-MM or YYYY-MM-DD, "
                f"with a prefix among {', '.join(DATE_PREFIXES)} (eq if none)."
            }
        )
    prefix = match["prefix"] or "eq"
    if prefix not in DATE_PREFIXES:
        raise InvalidPatient(
            {"birthdate": f"The prefix {prefix!r} is not supported; use one of {', '.join(DATE_PREFIXES)}."}
        )
    try:
        low, high = _day_range(int(match["year"]), match["month"], match["day"])
    except ValueError:
        raise InvalidPatient({"birthdate": "That is not a valid date."}) from None
    if prefix == "eq":
        return BirthDateFilter(low, high)
    if prefix == "ge":
        return BirthDateFilter(low=low)
    if prefix in ("gt", "sa"):
        return BirthDateFilter(low=_next_day(high))
    if prefix == "le":
        return BirthDateFilter(high=high)
    return BirthDateFilter(high=_previous_day(low))  # lt, eb


def _day_range(year: int, month: str | None, day: str | None) -> tuple[date, date]:
    if month is None:
        return date(year, 1, 1), date(year, 12, 31)
    start = date(year, int(month), 1)
    if day is not None:
        one = date(year, int(month), int(day))
        return one, one
    following = date(year + (start.month == 12), start.month % 12 + 1, 1)
    return start, following - timedelta(days=1)


def _next_day(day: date) -> date:
    return day + timedelta(days=1) if day < date.max else day


def _previous_day(day: date) -> date:
    return day - timedelta(days=1) if day > date.min else day
