"""Billing accounts and the rules a request must satisfy before one is opened."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

ACTIVE = "ACTIVE"
# What an account's name and email become when the patient's personal data is erased.
ERASED = ""
NAME_MAX_LENGTH = 200
EMAIL_MAX_LENGTH = 254
# Pragmatic shape check (local@domain.tld, no spaces); deliverability is not billing's concern.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class BillingError(Exception):
    """Base of billing's domain errors."""


class InvalidAccountRequest(BillingError):
    """A request breaks a rule; the message names the field and is safe to return to the caller."""


class AccountNotFound(BillingError):
    """No billing account exists for the patient."""


@dataclass(frozen=True)
class BillingAccount:
    account_id: uuid.UUID
    patient_id: uuid.UUID
    name: str
    email: str
    status: str
    created_at: datetime
    erased_at: datetime | None = None


def parse_patient_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidAccountRequest(f"patient_id must be a UUID, got {value[:64]!r}") from None


def valid_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidAccountRequest("name is required")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidAccountRequest(f"name cannot exceed {NAME_MAX_LENGTH} characters")
    return name


def valid_email(value: str) -> str:
    email = value.strip()
    if not email:
        raise InvalidAccountRequest("email is required")
    if len(email) > EMAIL_MAX_LENGTH or not _EMAIL.match(email):
        raise InvalidAccountRequest("email should be valid")
    return email


def open_account(
    *, patient_id: str, name: str, email: str, account_id: uuid.UUID, now: datetime
) -> BillingAccount:
    """A new ACTIVE account, once every field has passed its rule."""
    return BillingAccount(
        account_id=account_id,
        patient_id=parse_patient_id(patient_id),
        name=valid_name(name),
        email=valid_email(email),
        status=ACTIVE,
        created_at=now,
    )
