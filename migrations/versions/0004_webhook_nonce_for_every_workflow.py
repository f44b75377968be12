"""every workflow gets its webhook nonce (reading the URL no longer creates it)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 17:30:00

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

workflows = sa.table('workflows', sa.column('id', sa.Integer), sa.column('webhook_nonce', sa.String))


def upgrade():
    conn = op.get_bind()
    missing = conn.execute(sa.select(workflows.c.id).where(workflows.c.webhook_nonce.is_(None)))
    for (workflow_id,) in missing.fetchall():
        conn.execute(
            workflows.update()
            .where(workflows.c.id == workflow_id)
            .values(webhook_nonce=secrets.token_hex(16))
        )


def downgrade():
    pass  # a nonce is harmless to keep: it only makes the webhook URL readable
