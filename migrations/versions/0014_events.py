"""Change events (RFC 9967): the outbox, receivers, their signing keys and deliveries (issue 17).

Revision ID: 0014_events
Revises: 0013_live_counts
Create Date: 2026-12-06 12:00:00

`events` is the transactional outbox: every committed change to a user or group writes its rows
in the change's own transaction, and one `event_deliveries` row per enabled receiver that
subscribes to it (app/store/events.py says why the fan-out happens there). audit_events gains
the change's `txn`. The four tables are tenant-owned: row-level security as in 0009, and the
service's role gets its privileges through deploy/postgres/app-role.sql's default privileges.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_events"
down_revision = "0013_live_counts"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PK = {
    "events": ("id",),
    "event_receivers": ("tenant_id", "id"),
    "event_signing_keys": ("tenant_id", "kid"),
    "event_deliveries": ("tenant_id", "receiver_id", "event_id"),
}
OWNED = ("events", "event_receivers", "event_signing_keys", "event_deliveries")


def _tenant(table):
    key = sa.ForeignKey("tenants.id", name=f"fk_{table}_tenant_id_tenants")
    return sa.Column("tenant_id", sa.Integer(), key, nullable=False)


def _receiver(table):
    return sa.ForeignKeyConstraint(
        ["tenant_id", "receiver_id"],
        ["event_receivers.tenant_id", "event_receivers.id"],
        name=f"fk_{table}_tenant_id_event_receivers",
        ondelete="CASCADE",
    )


def _at(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade():
    op.add_column("audit_events", sa.Column("txn", sa.String(36), nullable=True))

    op.create_table(
        "events",
        sa.PrimaryKeyConstraint(*PK["events"], name="pk_events"),
        sa.Column("id", BIG_ID, autoincrement=True),
        _tenant("events"),
        _at("at"),
        sa.Column("txn", sa.String(36), nullable=False),
        sa.Column("jti", sa.String(36), nullable=False),
        sa.Column("resource_type", sa.String(8), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(), nullable=True),
        sa.Column("operation", sa.String(8), nullable=False),
        sa.Column("activation", sa.String(10), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=False),
    )
    op.create_index("uq_events_jti", "events", ["tenant_id", "jti"], unique=True)
    op.create_index("ix_events_resource_id_id", "events", ["tenant_id", "resource_id", "id"])
    op.create_index("ix_events_at", "events", ["tenant_id", "at"])
    op.create_index("ix_events_txn", "events", ["tenant_id", "txn"])

    op.create_table(
        "event_receivers",
        sa.PrimaryKeyConstraint(*PK["event_receivers"], name="pk_event_receivers"),
        _tenant("event_receivers"),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("delivery", sa.String(8), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("audience", sa.String(2000), nullable=False),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("poll_token_hash", sa.String(64), nullable=True),
        sa.Column("push_authorization", sa.String(2000), nullable=True),
        _at("created_at"),
    )
    op.create_index(
        "uq_event_receivers_name", "event_receivers", ["tenant_id", "name"], unique=True
    )

    op.create_table(
        "event_signing_keys",
        sa.PrimaryKeyConstraint(*PK["event_signing_keys"], name="pk_event_signing_keys"),
        _tenant("event_signing_keys"),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("receiver_id", sa.String(36), nullable=False),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=True),
        _at("created_at"),
        _at("retired_at", nullable=True),
        _receiver("event_signing_keys"),
    )
    op.create_index(
        "ix_event_signing_keys_receiver_id", "event_signing_keys", ["tenant_id", "receiver_id"]
    )

    op.create_table(
        "event_deliveries",
        sa.PrimaryKeyConstraint(*PK["event_deliveries"], name="pk_event_deliveries"),
        _tenant("event_deliveries"),
        sa.Column("receiver_id", sa.String(36), nullable=False),
        sa.Column("event_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_attempt_at"),
        _at("last_attempt_at", nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        _at("delivered_at", nullable=True),
        _at("created_at"),
        _receiver("event_deliveries"),
    )
    op.create_index(
        "ix_event_deliveries_due",
        "event_deliveries",
        ["tenant_id", "receiver_id", "next_attempt_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_event_deliveries_resource",
        "event_deliveries",
        ["tenant_id", "receiver_id", "resource_id", "event_id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index("ix_event_deliveries_event_id", "event_deliveries", ["tenant_id", "event_id"])

    if op.get_bind().dialect.name == "postgresql":
        for table in OWNED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                "USING (scim_tenant_visible(tenant_id)) "
                "WITH CHECK (scim_tenant_visible(tenant_id))"
            )


def downgrade():
    op.drop_table("event_deliveries")  # policies and indexes go with their tables
    op.drop_table("event_signing_keys")
    op.drop_table("event_receivers")
    op.drop_table("events")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("txn")
