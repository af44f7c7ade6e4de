"""The auth schema as SQLAlchemy Core tables (the migrations create it; these describe it)."""

from __future__ import annotations

import sqlalchemy as sa

from pm.common.db import BIGINT_KEY, timestamp

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("password", sa.String(100), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    timestamp("created_at"),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(254), nullable=False),
    timestamp("failed_at"),
    sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("refresh_token_hash", sa.String(64), nullable=False, unique=True),
    timestamp("created_at"),
    timestamp("refreshed_at", nullable=True),
    timestamp("expires_at"),
    timestamp("access_expires_at"),
    timestamp("revoked_at", nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
)

spent_refresh_tokens = sa.Table(
    "spent_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    timestamp("expires_at"),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.Uuid, nullable=False),
    timestamp("revoked_at"),
    timestamp("until"),
)
