"""per-user daily recipient quota

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00.000000

``users.daily_recipient_quota`` overrides ``DAILY_RECIPIENT_QUOTA`` for one
user; null (every existing user) means the configured default. The quota caps
the recipients a user's messages may have per UTC day, counted from
``message_daily_totals``, so an account that registration or a stolen token
put in an attacker's hands cannot send the operator's money to unlimited
numbers (SMS pumping).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_recipient_quota", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("daily_recipient_quota")
