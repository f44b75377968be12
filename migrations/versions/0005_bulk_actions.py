"""bulk actions applied by a worker, with their progress

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('bulk_actions',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('filter', sa.JSON(none_as_null=True), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('changed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_actions'))
    )


def downgrade():
    op.drop_table('bulk_actions')
