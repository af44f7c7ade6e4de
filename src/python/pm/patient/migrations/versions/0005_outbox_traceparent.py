"""The outbox row keeps the W3C `traceparent` of the request that wrote it: the relay sends it on as a Kafka
header, so the event's publication and its consumption join the request's trace (docs/observability.md)."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # 55 characters: version, 32-hex trace id, 16-hex span id, flags. Null when the request was not traced.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("traceparent")
