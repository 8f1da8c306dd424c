"""messages.validity_seconds; recipients.first_sendable_at becomes expires_at

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 18:30:00.000000

``POST /api/messages`` takes ``validitySeconds`` (``SMS.md`` section 3), which
overrides ``SMS_VALIDITY_SECONDS`` for one message. The message keeps the
validity it was created with, so that a retry gives its recipients the same
again. Each queued recipient now stores when it expires instead of when it
became sendable: the claim and the expiry sweep compare one column with the
clock, on both databases, without date arithmetic in SQL. Recipients queued
before this migration expire after the ``SMS_VALIDITY_SECONDS`` the hub has
now; settled ones need no expiry.
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op
from flask import current_app

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

QUEUED = "status IN ('PENDING', 'SENDING')"


def _validity_seconds() -> float:
    try:
        return float(current_app.config["SMS_VALIDITY_SECONDS"])
    except (RuntimeError, KeyError):
        return 14_400.0


def _shift_queued(seconds: float) -> None:
    """Move the queued recipients' time by ``seconds``, row by row in Python: the two
    databases store times differently and a queue is small next to the table."""
    bind = op.get_bind()
    recipients = sa.table("recipients", sa.column("id", sa.Integer),
                          sa.column("expires_at", sa.DateTime(timezone=True)))
    rows = bind.execute(sa.select(recipients.c.id, recipients.c.expires_at)
                        .where(sa.text(QUEUED), recipients.c.expires_at.is_not(None))).all()
    if rows:
        bind.execute(recipients.update().where(recipients.c.id == sa.bindparam("row_id"))
                     .values(expires_at=sa.bindparam("moved")),
                     [{"row_id": row.id, "moved": row.expires_at + timedelta(seconds=seconds)}
                      for row in rows])


# Plain ALTER TABLE on both databases, as in 0005 and 0006: a batch rebuild of
# ``recipients`` or ``messages`` would delete through their ``ON DELETE CASCADE`` references.
def upgrade():
    op.add_column("messages", sa.Column("validity_seconds", sa.Integer(), nullable=True))
    op.execute("ALTER TABLE recipients RENAME COLUMN first_sendable_at TO expires_at")
    op.execute(f"UPDATE recipients SET expires_at = NULL WHERE NOT ({QUEUED})")
    _shift_queued(_validity_seconds())


def downgrade():
    _shift_queued(-_validity_seconds())
    op.execute("ALTER TABLE recipients RENAME COLUMN expires_at TO first_sendable_at")
    op.drop_column("messages", "validity_seconds")
