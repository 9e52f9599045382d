"""Folded copies of the user documents and of each multi-valued element, so that SQL compares
every caseExact=false attribute through the one fold (app.fold) and never through lower(),
whose answer depends on the database's locale (issue 14, item 2).

Revision ID: 0008_folded_copies
Revises: 0007_console_sessions
Create Date: 2026-12-05 08:00:00

users.document_key and user_values.data_key are filled here from the rows, in batches of ids,
folded in Python exactly as the application folds them. user_values.type and .display were
copies for filters, which now read the element's folded copy instead.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_folded_copies"
down_revision = "0007_console_sessions"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("document_key", sa.JSON(), nullable=True))
    with op.batch_alter_table("user_values", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_key", sa.JSON(), nullable=True))
    _fill("users", "id", "document", "document_key", sa.String, _user_copy)
    _fill("user_values", "id", "data", "data_key", sa.Integer, _folded_copy)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("document_key", existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table("user_values", schema=None) as batch_op:
        batch_op.alter_column("data_key", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("type")
        batch_op.drop_column("display")


def _fill(table_name, key, source, target, key_type, copy):
    """target = folded copy of source, row by row, in batches ordered by key (bounded memory)."""
    table = sa.table(
        table_name, sa.column(key, key_type), sa.column(source, sa.JSON), sa.column(target, sa.JSON)
    )
    connection = op.get_bind()
    update = (
        table.update()
        .where(table.c[key] == sa.bindparam("row_key"))
        .values({target: sa.bindparam("folded", type_=sa.JSON)})
    )
    last = None
    while True:
        query = sa.select(table.c[key], table.c[source]).order_by(table.c[key]).limit(BATCH)
        if last is not None:
            query = query.where(table.c[key] > last)
        rows = connection.execute(query).all()
        if not rows:
            return
        connection.execute(
            update, [{"row_key": row[0], "folded": copy(row[1] or {})} for row in rows]
        )
        last = rows[-1][0]


def _folded_copy(document):
    # app.fold.folded_copy as of this revision, kept here so the migration never changes.
    copy = {}
    for name, value in document.items():
        if isinstance(value, str):
            copy[name] = value.casefold()
        elif isinstance(value, dict) and (inner := _folded_copy(value)):
            copy[name] = inner
    return copy


# Strings with folded columns of their own, or compared as written: not copied. The service
# itself copies only caseExact=false strings by the schema registry (store/users.py); this
# revision cannot know the extensions a deployment declares, so it may keep a few more.
_OWN_COLUMNS = ("userName", "displayName", "externalId", "id")
_OWN_NAME_COLUMNS = ("givenName", "familyName")


def _user_copy(document):
    copy = _folded_copy(document)
    for name in _OWN_COLUMNS:
        copy.pop(name, None)
    name = copy.get("name")
    if isinstance(name, dict):
        for part in _OWN_NAME_COLUMNS:
            name.pop(part, None)
        if not name:
            del copy["name"]
    return copy


def downgrade():
    with op.batch_alter_table("user_values", schema=None) as batch_op:
        batch_op.add_column(sa.Column("type", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("display", sa.String(), nullable=True))
    values = sa.table(
        "user_values",
        sa.column("id", sa.Integer),
        sa.column("data", sa.JSON),
        sa.column("type", sa.String),
        sa.column("display", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(values.c.id, values.c.data)).all()
    update = (
        values.update()
        .where(values.c.id == sa.bindparam("row_id"))
        .values(type=sa.bindparam("element_type"), display=sa.bindparam("element_display"))
    )
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        connection.execute(
            update,
            [
                {
                    "row_id": row.id,
                    "element_type": _text((row.data or {}).get("type")),
                    "element_display": _text((row.data or {}).get("display")),
                }
                for row in batch
            ],
        )
    with op.batch_alter_table("user_values", schema=None) as batch_op:
        batch_op.drop_column("data_key")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("document_key")


def _text(value):
    return value if value is None or isinstance(value, str) else str(value)
