"""recipients: provider outcomes, at-most-once marks, pacing; recipient_parts; settled_count

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:00:00.000000

Real providers answer with more than accepted or refused (``SMS.md`` section 1):
a recipient keeps the provider's own status and error code, its segment count
and whether a failure was temporary (``retryable``). ``submit_started_at`` is
committed before each submission to a provider without idempotency, so that a
claim taken over after a crash is never submitted twice; ``not_before`` holds
a throttled recipient back; ``first_sendable_at`` starts its validity.

``recipient_parts`` keeps the provider id of each part of a recipient sent in
several (SMPP), so that it settles once every part has a final receipt.
``messages.settled_count`` counts recipients no longer queued, so that a
message is final whatever mix of statuses its recipients ended in; existing
messages are counted from their recipients. ``ix_recipients_awaiting_receipt``
lets the receipt timeout find ``SENT`` recipients without reading the others.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RECIPIENT_COLUMNS = (
    sa.Column("provider_status", sa.String(length=32), nullable=True),
    sa.Column("provider_error_code", sa.String(length=32), nullable=True),
    sa.Column("parts", sa.Integer(), nullable=True),
    sa.Column("retryable", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("submit_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("first_sendable_at", sa.DateTime(timezone=True), nullable=True),
)


# Plain ALTER TABLE on both databases, as in 0005: a batch rebuild of ``recipients``
# or ``messages`` would delete through their ``ON DELETE CASCADE`` references.
def upgrade():
    for column in RECIPIENT_COLUMNS:
        op.add_column("recipients", column.copy())
    op.add_column("messages", sa.Column("settled_count", sa.Integer(), nullable=False,
                                        server_default="0"))
    op.execute("UPDATE messages SET settled_count = (SELECT count(*) FROM recipients "
               "WHERE recipients.message_id = messages.id "
               "AND recipients.status NOT IN ('PENDING', 'SENDING'))")
    op.execute("UPDATE recipients SET first_sendable_at = (SELECT created_at FROM messages "
               "WHERE messages.id = recipients.message_id) "
               "WHERE status IN ('PENDING', 'SENDING')")
    op.create_index("ix_recipients_awaiting_receipt", "recipients", ["sent_at"], unique=False,
                    postgresql_where=sa.text("status = 'SENT'"),
                    sqlite_where=sa.text("status = 'SENT'"))
    op.create_table(
        "recipient_parts",
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("provider_error_code", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"],
                                name=op.f("fk_recipient_parts_recipient_id_recipients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("provider_message_id", name=op.f("pk_recipient_parts")),
    )
    op.create_index("ix_recipient_parts_recipient_id", "recipient_parts", ["recipient_id"],
                    unique=False)


def downgrade():
    op.drop_index("ix_recipient_parts_recipient_id", table_name="recipient_parts")
    op.drop_table("recipient_parts")
    op.drop_index("ix_recipients_awaiting_receipt", table_name="recipients")
    op.drop_column("messages", "settled_count")
    for column in reversed(RECIPIENT_COLUMNS):
        op.drop_column("recipients", column.name)
