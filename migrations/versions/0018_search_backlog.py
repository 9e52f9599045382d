"""SQLite's console search index written a thousand changes at a time (issue 16).

Revision ID: 0018_search_backlog
Revises: 0017_member_display_bytewise
Create Date: 2026-12-07 19:30:00

0011's triggers wrote the FTS5 tables in every transaction that changed a user, an email
address or a group. FTS5 writes a new segment, its index entry and the table's structure record
for each such transaction. In process at 20,000 users, with no search triggers at all, a POST
/Users took 1.9-2.7 ms against 2.8-3.6 and a PUT 2.1-2.7 against 3.0-3.6 (interleaved runs).

The triggers now note the changed row in search_backlog instead (a row appended to a small
table), and the write that brings the backlog to 1,000 notes folds it into the FTS5 tables
before it commits (app/store/search_backlog.py): one segment for a thousand changes. The
console's search reads the backlog's rows beside the FTS5 tables (store/console.py), so it
finds every change at once. The FTS5 tables are as 0011 left them when this revision runs:
the backlog starts empty. With this revision (three interleaved runs of 1,000 requests each) a
POST takes 2.0-2.2 ms against 2.6, a PUT 2.3-2.8 against 2.8-3.3, and a POST writes 29 pages
to the WAL against 46, the batches included; the write that folds a full backlog takes 10 to
70 ms. Downgrading folds the backlog in and puts 0011's triggers back. PostgreSQL: nothing (its
GIN indexes are not 0011's FTS5 tables).
"""

from alembic import op

revision = "0018_search_backlog"
down_revision = "0017_member_display_bytewise"
branch_labels = None
depends_on = None

BACKLOG = "INSERT INTO search_backlog (kind, row) VALUES ('{0}', {1})"
BACKLOGGED = "(SELECT row FROM search_backlog WHERE kind = '{0}')"
USER_ROW = "(SELECT id FROM users_search_ids WHERE tenant_id = {0}.tenant_id AND user_id = {0}.id)"
GROUP_ROW = (
    "(SELECT id FROM groups_search_ids WHERE tenant_id = {0}.tenant_id AND group_id = {0}.id)"
)
USER_KEYS_CHANGED = " OR ".join(
    f"old.{c} IS NOT new.{c}"
    for c in ("user_name_key", "display_name_key", "given_name_key", "family_name_key")
)
FOLD = (
    f"DELETE FROM users_search WHERE rowid IN {BACKLOGGED.format('user')}",
    "INSERT INTO users_search (rowid, user_name_key, display_name_key, full_name_key) "
    "SELECT s.id, u.user_name_key, u.display_name_key, "
    "coalesce(u.given_name_key, '') || ' ' || coalesce(u.family_name_key, '') "
    "FROM users_search_ids s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id "
    f"WHERE s.id IN {BACKLOGGED.format('user')} AND u.deleted_at IS NULL",
    f"DELETE FROM user_values_search WHERE rowid IN {BACKLOGGED.format('value')}",
    "INSERT INTO user_values_search (rowid, value_key) SELECT id, value_key FROM user_values "
    f"WHERE id IN {BACKLOGGED.format('value')} "
    "AND attribute = 'emails' AND value_key IS NOT NULL",
    f"DELETE FROM groups_search WHERE rowid IN {BACKLOGGED.format('group')}",
    "INSERT INTO groups_search (rowid, display_name_key) "
    "SELECT s.id, g.display_name_key "
    "FROM groups_search_ids s JOIN groups g ON g.tenant_id = s.tenant_id AND g.id = s.group_id "
    f"WHERE s.id IN {BACKLOGGED.format('group')} AND g.deleted_at IS NULL",
    "DELETE FROM search_backlog",
)
BACKLOG_TABLE = (
    "CREATE TABLE IF NOT EXISTS search_backlog (id INTEGER PRIMARY KEY, "
    "kind VARCHAR(5) NOT NULL, row INTEGER NOT NULL)"
)
TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS users_search_insert AFTER INSERT ON users BEGIN "
    "INSERT INTO users_search_ids (tenant_id, user_id) VALUES (new.tenant_id, new.id); "
    f"{BACKLOG.format('user', USER_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS users_search_update AFTER UPDATE OF user_name_key, "
    "display_name_key, given_name_key, family_name_key, deleted_at ON users "
    f"WHEN {USER_KEYS_CHANGED} OR old.deleted_at IS NOT new.deleted_at BEGIN "
    f"{BACKLOG.format('user', USER_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS users_search_delete AFTER DELETE ON users BEGIN "
    f"{BACKLOG.format('user', USER_ROW.format('old'))}; "
    "DELETE FROM users_search_ids WHERE tenant_id = old.tenant_id AND user_id = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_insert AFTER INSERT ON user_values "
    "WHEN new.attribute = 'emails' AND new.value_key IS NOT NULL BEGIN "
    f"{BACKLOG.format('value', 'new.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_update AFTER UPDATE OF id, attribute, "
    "value_key ON user_values BEGIN "
    f"{BACKLOG.format('value', 'old.id')}; {BACKLOG.format('value', 'new.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_delete AFTER DELETE ON user_values "
    "WHEN old.attribute = 'emails' AND old.value_key IS NOT NULL BEGIN "
    f"{BACKLOG.format('value', 'old.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_insert AFTER INSERT ON groups BEGIN "
    "INSERT INTO groups_search_ids (tenant_id, group_id) VALUES (new.tenant_id, new.id); "
    f"{BACKLOG.format('group', GROUP_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_update AFTER UPDATE OF display_name_key, "
    "deleted_at ON groups WHEN old.display_name_key IS NOT new.display_name_key "
    "OR old.deleted_at IS NOT new.deleted_at BEGIN "
    f"{BACKLOG.format('group', GROUP_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_delete AFTER DELETE ON groups BEGIN "
    f"{BACKLOG.format('group', GROUP_ROW.format('old'))}; "
    "DELETE FROM groups_search_ids WHERE tenant_id = old.tenant_id AND group_id = old.id; END",
)
REPLACED = tuple(
    f"DROP TRIGGER IF EXISTS {table}_search_{event}"
    for table in ("users", "user_values", "groups")
    for event in ("insert", "update", "delete")
)


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in (*REPLACED, BACKLOG_TABLE, *TRIGGERS):
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in FOLD:
        op.execute(statement)
    for statement in REPLACED:
        op.execute(statement)
    op.execute("DROP TABLE IF EXISTS search_backlog")
    # 0011's triggers, from that revision's own module.
    console_search = op.get_context().script.get_revision("0011_console_search").module
    for statement in console_search.SQLITE_TRIGGERS:
        op.execute(statement)
