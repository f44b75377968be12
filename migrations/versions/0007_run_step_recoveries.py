"""a count of the worker deaths during a run's current step, so that a poison run ends

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:45:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("recoveries", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("recoveries")
