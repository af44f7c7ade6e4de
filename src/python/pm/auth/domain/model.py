"""Users and the rules about them; plain Python, no framework imports."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

# bcrypt only looks at the first 72 bytes of a password; longer ones are refused rather than truncated.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 8


class Role(enum.StrEnum):
    ADMIN = "ADMIN"
    USER = "USER"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    password_hash: str
    role: Role
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True)
class Session:
    """A login: the refresh token that continues it (only its hash) and the access tokens it issued."""

    id: uuid.UUID
    user_id: uuid.UUID
    refresh_token_hash: str
    created_at: datetime
    expires_at: datetime
    access_expires_at: datetime
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def normalize_email(email: str) -> str:
    """Emails are unique case-insensitively; one canonical form is stored and compared."""
    return email.strip().lower()


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise WeakPassword(f"Password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")


class AuthError(Exception):
    """Base of the auth domain errors."""


class InvalidCredentials(AuthError):
    """Unknown email or wrong password: deliberately indistinguishable."""


class TooManyAttempts(AuthError):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed logins, retry after {retry_after_seconds}s")
        self.retry_after_seconds = retry_after_seconds


class UnknownUser(AuthError):
    """No user has this id."""


class DuplicateEmail(AuthError):
    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email} already exists")
        self.email = email


class WeakPassword(AuthError):
    """The password does not meet the rules for new passwords."""


class InvalidRefreshToken(AuthError):
    """Unknown, spent, expired or revoked refresh token: one answer for all."""


class WrongCurrentPassword(AuthError):
    """A password change whose current password is wrong."""


class OwnAccount(AuthError):
    """An administrator may not disable or demote their own account (it could leave no administrator)."""
