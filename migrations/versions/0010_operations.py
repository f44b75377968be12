"""operations: a workflow's concurrency, retention and notifications, a schedule's overlap
policy, finished runs by age, and SQLite's incremental auto-vacuum (so that pruning gives the
file's space back)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("notify", sa.JSON(), nullable=True))
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("overlap", sa.String(length=8), server_default="allow", nullable=False)
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_finished_at", ["finished_at"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        # auto_vacuum only takes effect on an existing file after a VACUUM, which cannot run
        # inside a transaction.
        with op.get_context().autocommit_block():
            op.execute("PRAGMA auto_vacuum = INCREMENTAL")
            op.execute("VACUUM")


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        with op.get_context().autocommit_block():
            op.execute("PRAGMA auto_vacuum = NONE")
            op.execute("VACUUM")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_finished_at")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_column("overlap")
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.drop_column("notify")
        batch_op.drop_column("retention_days")
        batch_op.drop_column("concurrency")
