"""Tenants: one deployment serves many customers' directories (issue 15).

Revision ID: 0009_tenants
Revises: 0008_folded_copies
Create Date: 2026-12-05 12:40:00

Every existing row moves into the tenant `default` (id 1), which SCIM_TOKEN_HASHES and the
existing tokens belong to. Each tenant-owned table gains `tenant_id`, and every key, foreign key
and index leads with it (the token-hash lookup, which finds the tenant, is the one exception),
so that the schema could be distributed by tenant unchanged.

On PostgreSQL, row-level security is enabled and forced on every tenant-owned table: a row is
visible only to a transaction whose `scim.tenant` setting names its tenant (app/store/scope.py
sets it), or `*` for operators' deliberate cross-tenant work. The policy compares through one
function, so the rule lives in one place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_tenants"
down_revision = "0008_folded_copies"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")
CURRENT_TOKEN = sa.text("revoked_at IS NULL AND replaced_at IS NULL")
OWNED = (
    "users",
    "user_values",
    "groups",
    "group_members",
    "tokens",
    "audit_events",
    "membership_changes",
)

VISIBLE_FUNCTION = """
CREATE FUNCTION scim_tenant_visible(row_tenant integer) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    scope text := current_setting('scim.tenant', true);
BEGIN
    -- '*': operators' cross-tenant work; empty or unset: nothing is visible.
    RETURN scope = '*' OR row_tenant = NULLIF(scope, '')::integer;
END
$$
"""


def upgrade():
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_index("uq_tenants_slug", "tenants", ["slug"], unique=True)
    now = sa.func.current_timestamp()
    tenants = sa.table(
        "tenants",
        *(sa.column(name) for name in ("id", "slug", "name", "state", "created_at", "updated_at")),
    )
    op.execute(
        tenants.insert().values(
            id=1, slug="default", name="Default", state="active", created_at=now, updated_at=now
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1)")

    # The children's foreign keys go first: they are rebuilt on the new composite keys.
    with op.batch_alter_table("user_values") as batch_op:
        batch_op.drop_constraint("fk_user_values_user_id_users", type_="foreignkey")
    with op.batch_alter_table("group_members") as batch_op:
        batch_op.drop_constraint("fk_group_members_group_id_groups", type_="foreignkey")

    _add_tenant("users", ["id"], _rebuild_indexes_users)
    _add_tenant("groups", ["id"], _rebuild_indexes_groups)
    _add_tenant("group_members", ["group_id", "member_id"], _rebuild_indexes_group_members)
    _add_tenant("user_values", None, _rebuild_indexes_user_values)
    _add_tenant("tokens", None, _rebuild_indexes_tokens)
    with op.batch_alter_table("user_values") as batch_op:
        batch_op.create_foreign_key(
            "fk_user_values_tenant_id_users",
            "users",
            ["tenant_id", "user_id"],
            ["tenant_id", "id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("group_members") as batch_op:
        batch_op.create_foreign_key(
            "fk_group_members_tenant_id_groups",
            "groups",
            ["tenant_id", "group_id"],
            ["tenant_id", "id"],
            ondelete="CASCADE",
        )

    # Audit rows of requests no token identified belong to no tenant: nullable, no default.
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("scim_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("detail", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            "fk_audit_events_tenant_id_tenants", "tenants", ["tenant_id"], ["id"]
        )
        batch_op.drop_index("ix_audit_events_resource_type_resource_id_at")
        batch_op.drop_index("ix_audit_events_at")
        batch_op.create_index(
            "ix_audit_events_resource_type_resource_id_at",
            ["tenant_id", "resource_type", "resource_id", "at"],
        )
        batch_op.create_index("ix_audit_events_at", ["tenant_id", "at"])
    op.execute("UPDATE audit_events SET tenant_id = 1 WHERE token_name IS NOT NULL")

    op.create_table(
        "membership_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("change", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_membership_changes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_changes")),
    )
    op.create_index(
        "ix_membership_changes_member_id_at", "membership_changes", ["tenant_id", "member_id", "at"]
    )
    op.create_index(
        "ix_membership_changes_group_id_at", "membership_changes", ["tenant_id", "group_id", "at"]
    )

    with op.batch_alter_table("console_admins") as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Integer(), nullable=True))  # None: global
        batch_op.create_foreign_key(
            "fk_console_admins_tenant_id_tenants",
            "tenants",
            ["tenant_id"],
            ["id"],
            ondelete="CASCADE",
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(VISIBLE_FUNCTION)
        for table in OWNED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} "
                "USING (scim_tenant_visible(tenant_id)) "
                "WITH CHECK (scim_tenant_visible(tenant_id))"
            )


def _add_tenant(table, primary_key, rebuild_indexes):
    """tenant_id on `table`, every existing row in tenant 1; the key and indexes lead with it."""
    with op.batch_alter_table(table) as batch_op:
        batch_op.add_column(
            sa.Column("tenant_id", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table(table) as batch_op:
        # No default from now on: a row that names no tenant is refused, never defaulted.
        batch_op.alter_column("tenant_id", existing_type=sa.Integer(), server_default=None)
        batch_op.create_foreign_key(
            f"fk_{table}_tenant_id_tenants", "tenants", ["tenant_id"], ["id"]
        )
        if primary_key is not None:
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.create_primary_key(f"pk_{table}", ["tenant_id", *primary_key])
        rebuild_indexes(batch_op)


def _rebuild_indexes_users(batch_op):
    for name in (
        "uq_users_live_user_name",
        "ix_users_external_id",
        "ix_users_created_at_id",
        "ix_users_display_name_key",
        "ix_users_family_name_key",
    ):
        batch_op.drop_index(name)
    batch_op.create_index(
        "uq_users_live_user_name",
        ["tenant_id", "user_name_key"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    batch_op.create_index("ix_users_external_id", ["tenant_id", "external_id"])
    batch_op.create_index("ix_users_created_at_id", ["tenant_id", "created_at", "id"])
    batch_op.create_index("ix_users_display_name_key", ["tenant_id", "display_name_key"])
    batch_op.create_index(
        "ix_users_family_name_key",
        ["tenant_id", "family_name_key"],
        postgresql_ops={"family_name_key": "text_pattern_ops"},
    )


def _rebuild_indexes_groups(batch_op):
    for name in ("uq_groups_live_display_name", "ix_groups_external_id", "ix_groups_created_at_id"):
        batch_op.drop_index(name)
    batch_op.create_index(
        "uq_groups_live_display_name",
        ["tenant_id", "display_name_key"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    batch_op.create_index("ix_groups_external_id", ["tenant_id", "external_id"])
    batch_op.create_index("ix_groups_created_at_id", ["tenant_id", "created_at", "id"])


def _rebuild_indexes_group_members(batch_op):
    batch_op.drop_index("ix_group_members_member_id")
    batch_op.create_index("ix_group_members_member_id", ["tenant_id", "member_id"])


def _rebuild_indexes_user_values(batch_op):
    batch_op.drop_index("ix_user_values_attribute_value_key")
    batch_op.drop_index("ix_user_values_user_id")
    batch_op.create_index(
        "ix_user_values_attribute_value_key", ["tenant_id", "attribute", "value_key"]
    )
    batch_op.create_index("ix_user_values_user_id", ["tenant_id", "user_id"])


def _rebuild_indexes_tokens(batch_op):
    batch_op.drop_index("uq_tokens_current_name")
    batch_op.create_index(
        "uq_tokens_current_name",
        ["tenant_id", "name"],
        unique=True,
        sqlite_where=CURRENT_TOKEN,
        postgresql_where=CURRENT_TOKEN,
    )


def downgrade():
    """Back to one directory: possible only while the default tenant is the only one."""
    bind = op.get_bind()
    others = bind.scalar(sa.text("SELECT count(*) FROM tenants WHERE id <> 1"))
    if others:
        raise RuntimeError(
            f"cannot downgrade below 0009_tenants: {others} tenants besides `default` exist, "
            "and their rows cannot share one directory (delete and purge them first)"
        )
    if bind.dialect.name == "postgresql":
        for table in OWNED:
            op.execute(f"DROP POLICY tenant_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute("DROP FUNCTION scim_tenant_visible(integer)")
    with op.batch_alter_table("console_admins") as batch_op:
        batch_op.drop_constraint("fk_console_admins_tenant_id_tenants", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    op.drop_table("membership_changes")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_index("ix_audit_events_resource_type_resource_id_at")
        batch_op.drop_index("ix_audit_events_at")
        batch_op.create_index(
            "ix_audit_events_resource_type_resource_id_at", ["resource_type", "resource_id", "at"]
        )
        batch_op.create_index("ix_audit_events_at", ["at"])
        batch_op.drop_constraint("fk_audit_events_tenant_id_tenants", type_="foreignkey")
        batch_op.drop_column("detail")
        batch_op.drop_column("scim_type")
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("user_values") as batch_op:
        batch_op.drop_constraint("fk_user_values_tenant_id_users", type_="foreignkey")
    with op.batch_alter_table("group_members") as batch_op:
        batch_op.drop_constraint("fk_group_members_tenant_id_groups", type_="foreignkey")
    for table, primary_key, indexes in _BEFORE:
        with op.batch_alter_table(table) as batch_op:
            for name, _columns, _options in indexes:
                batch_op.drop_index(name)
            if primary_key is not None:
                batch_op.drop_constraint(f"pk_{table}", type_="primary")
                batch_op.create_primary_key(f"pk_{table}", primary_key)
            batch_op.drop_constraint(f"fk_{table}_tenant_id_tenants", type_="foreignkey")
            batch_op.drop_column("tenant_id")
            for name, columns, options in indexes:
                batch_op.create_index(name, columns, **options)
    with op.batch_alter_table("user_values") as batch_op:
        batch_op.create_foreign_key(
            "fk_user_values_user_id_users", "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("group_members") as batch_op:
        batch_op.create_foreign_key(
            "fk_group_members_group_id_groups", "groups", ["group_id"], ["id"], ondelete="CASCADE"
        )
    op.drop_index("uq_tenants_slug", table_name="tenants")
    op.drop_table("tenants")


_UNIQUE_LIVE = {"unique": True, "sqlite_where": LIVE, "postgresql_where": LIVE}
# Each table's key and indexes as 0008 left them, for the downgrade.
_BEFORE = (
    (
        "users",
        ["id"],
        (
            ("uq_users_live_user_name", ["user_name_key"], _UNIQUE_LIVE),
            ("ix_users_external_id", ["external_id"], {}),
            ("ix_users_created_at_id", ["created_at", "id"], {}),
            ("ix_users_display_name_key", ["display_name_key"], {}),
            (
                "ix_users_family_name_key",
                ["family_name_key"],
                {"postgresql_ops": {"family_name_key": "text_pattern_ops"}},
            ),
        ),
    ),
    (
        "groups",
        ["id"],
        (
            ("uq_groups_live_display_name", ["display_name_key"], _UNIQUE_LIVE),
            ("ix_groups_external_id", ["external_id"], {}),
            ("ix_groups_created_at_id", ["created_at", "id"], {}),
        ),
    ),
    (
        "group_members",
        ["group_id", "member_id"],
        (("ix_group_members_member_id", ["member_id"], {}),),
    ),
    (
        "user_values",
        None,
        (
            ("ix_user_values_attribute_value_key", ["attribute", "value_key"], {}),
            ("ix_user_values_user_id", ["user_id"], {}),
        ),
    ),
    (
        "tokens",
        None,
        (
            (
                "uq_tokens_current_name",
                ["name"],
                {"unique": True, "sqlite_where": CURRENT_TOKEN, "postgresql_where": CURRENT_TOKEN},
            ),
        ),
    ),
)
