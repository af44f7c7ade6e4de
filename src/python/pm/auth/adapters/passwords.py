"""bcrypt password hashing with a configurable cost."""

from __future__ import annotations

import secrets

import bcrypt

from pm.auth.domain.model import MAX_PASSWORD_BYTES


class BcryptHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # Made once at start-up: checking it costs the same as checking a real user's hash.
        self._dummy_hash = self.hash(secrets.token_urlsafe(24))

    @property
    def dummy_hash(self) -> str:
        return self._dummy_hash

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.rounds)).decode()

    def needs_rehash(self, password_hash: str) -> bool:
        # Modular crypt format: $2b$<cost>$<salt+hash>.
        parts = password_hash.split("$")
        return len(parts) < 4 or not parts[2].isdigit() or int(parts[2]) != self.rounds

    def verify(self, password: str, password_hash: str) -> bool:
        encoded = password.encode()
        if len(encoded) > MAX_PASSWORD_BYTES:
            # bcrypt refuses these; still spend the same time so length reveals nothing.
            bcrypt.checkpw(encoded[:MAX_PASSWORD_BYTES], self._dummy_hash.encode())
            return False
        try:
            return bcrypt.checkpw(encoded, password_hash.encode())
        except ValueError:
            return False
