"""Folded copies of displayName and the name parts, indexed for eq and sw filters.

Revision ID: 0003_name_keys
Revises: 0002_groups
Create Date: 2026-11-23 10:49:15

Existing rows get their keys here, folded in Python exactly as the application folds them
(str.casefold, app.schema.fold), since SQL's lower() differs from it on some letters.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_name_keys"
down_revision = "0002_groups"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name_key", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("given_name_key", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("family_name_key", sa.String(), nullable=True))
        batch_op.create_index("ix_users_display_name_key", ["display_name_key"], unique=False)
        batch_op.create_index(
            "ix_users_family_name_key",
            ["family_name_key"],
            unique=False,
            postgresql_ops={"family_name_key": "text_pattern_ops"},
        )
    _backfill()


def _backfill():
    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("display_name", sa.String),
        sa.column("given_name", sa.String),
        sa.column("family_name", sa.String),
        sa.column("display_name_key", sa.String),
        sa.column("given_name_key", sa.String),
        sa.column("family_name_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(users.c.id, users.c.display_name, users.c.given_name, users.c.family_name)
    ).all()
    update = (
        users.update()
        .where(users.c.id == sa.bindparam("row_id"))
        .values(
            display_name_key=sa.bindparam("display"),
            given_name_key=sa.bindparam("given"),
            family_name_key=sa.bindparam("family"),
        )
    )
    for start in range(0, len(rows), BATCH):
        connection.execute(
            update,
            [
                {
                    "row_id": row.id,
                    "display": _fold(row.display_name),
                    "given": _fold(row.given_name),
                    "family": _fold(row.family_name),
                }
                for row in rows[start : start + BATCH]
            ],
        )


def _fold(text):
    return text.casefold() if text is not None else None


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_family_name_key")
        batch_op.drop_index("ix_users_display_name_key")
        batch_op.drop_column("family_name_key")
        batch_op.drop_column("given_name_key")
        batch_op.drop_column("display_name_key")
