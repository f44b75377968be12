"""the journal's events, run lineage (rerun_of, recovered_from), and per step execution what
it reused, read and ran (reads, content hash, recovered)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:50:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("step_name", sa.String(length=63), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_events_run_id_id", "run_events", ["run_id", "id"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=26), nullable=True))
        batch_op.add_column(sa.Column("recovered_from", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_runs_rerun_of", ["rerun_of"], unique=False)
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reused", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("reused_from", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reads", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("recovered", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("previous_output", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        for column in (
            "previous_output",
            "recovered",
            "reads",
            "content_hash",
            "reused_from",
            "reused",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_rerun_of")
        batch_op.drop_column("recovered_from")
        batch_op.drop_column("rerun_of")
    op.drop_index("ix_run_events_run_id_id", table_name="run_events")
    op.drop_table("run_events")
