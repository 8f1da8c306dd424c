"""messages.send_at, messages.quiet_hours: a message may be scheduled, and kept from night hours

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:00:00.000000

``POST /api/messages`` takes ``sendAt`` (``SMS.md`` section 3): the message
is ``SCHEDULED`` until then. Its recipients wait in the queue with
``not_before`` and ``first_sendable_at`` at that time, so the claim needs
nothing new and validity counts from when they become sendable; the message
keeps the time so that a paused scheduled message resumes as scheduled, and
so that clients can show it. Existing messages were sent at once: null.
``quiet_hours`` says the message was sent with ``quietHours``; each recipient's
release outside those hours is likewise its ``not_before``.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("messages", sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("messages", sa.Column("quiet_hours", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))


def downgrade():
    op.drop_column("messages", "quiet_hours")
    op.drop_column("messages", "send_at")
