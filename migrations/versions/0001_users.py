"""Users and the per-element index of their multi-valued attributes.

Revision ID: 0001_users
Revises: 
Create Date: 2026-11-23 10:01:08.508791

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001_users'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_name', sa.String(), nullable=False),
    sa.Column('user_name_key', sa.String(), nullable=False),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('display_name', sa.String(), nullable=True),
    sa.Column('given_name', sa.String(), nullable=True),
    sa.Column('family_name', sa.String(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.String(), nullable=True),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_modified', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_users_external_id', ['external_id'], unique=False)
        batch_op.create_index('uq_users_live_user_name', ['user_name_key'], unique=True, sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))

    op.create_table('user_values',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('attribute', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(), nullable=True),
    sa.Column('value_key', sa.String(), nullable=True),
    sa.Column('type', sa.String(), nullable=True),
    sa.Column('primary', sa.Boolean(), nullable=False),
    sa.Column('display', sa.String(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_values_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_values'))
    )
    with op.batch_alter_table('user_values', schema=None) as batch_op:
        batch_op.create_index('ix_user_values_attribute_value_key', ['attribute', 'value_key'], unique=False)
        batch_op.create_index('ix_user_values_user_id', ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('user_values', schema=None) as batch_op:
        batch_op.drop_index('ix_user_values_user_id')
        batch_op.drop_index('ix_user_values_attribute_value_key')

    op.drop_table('user_values')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('uq_users_live_user_name', sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index('ix_users_external_id')
        batch_op.drop_index('ix_users_created_at_id')

    op.drop_table('users')
