"""The operator console: its admins (password hashes) and the login lockout counters.

Revision ID: 0005_console
Revises: 0004_audit_tokens
Create Date: 2026-11-30 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_console"
down_revision = "0004_audit_tokens"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "console_admins",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_console_admins")),
    )
    op.create_table(
        "console_login_failures",
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("remote_addr", "username", name=op.f("pk_console_login_failures")),
    )


def downgrade():
    op.drop_table("console_login_failures")
    op.drop_table("console_admins")
