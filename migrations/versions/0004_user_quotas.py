"""users' own daily recipient quotas

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00.000000

A row of ``user_quotas`` gives one user another daily recipient quota than
``DAILY_RECIPIENT_QUOTA``; users without a row (all existing ones) have the
default. The quota caps the recipients a user's messages may have per UTC
day, counted from ``message_daily_totals``, so that an account in an
attacker's hands (open registration, a stolen token) cannot send the
operator's money to unlimited numbers (SMS pumping).

A table of its own rather than a column of ``users``: adding or dropping a
column rebuilds ``users`` on SQLite, and dropping a table that others
reference with ``ON DELETE CASCADE`` deletes their rows there.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("user_quotas",
    sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("daily_recipients", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_quotas_user_id_users"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_quotas"))
    )


def downgrade():
    op.drop_table("user_quotas")
