"""recipients (message_id, status): statusCounts read from an index alone

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:50:00.000000

``statusCounts`` is a ``GROUP BY status`` over one message's recipients, read
with every ``message_update`` (a few times a second per sending message) and
every ``GET /api/messages/{id}``. Through ``(message_id, id)`` it visited each
recipient's row for its status: about 8 ms for a 3,000-recipient message on
SQLite, the largest single statement cost of sending through the SMPP bench
(``bench/smpp_pipeline.py``). With ``(message_id, status)`` the counts come
from the index in status order, a fraction of that; each status change now
moves one more index entry.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_recipients_message_id_status", "recipients", ["message_id", "status"])


def downgrade():
    op.drop_index("ix_recipients_message_id_status", table_name="recipients")
