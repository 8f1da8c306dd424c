"""inbound messages and the suppression list; recipients' numbers can be erased

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:30:00.000000

``inbound_messages`` keeps what people send to the hub's numbers, including
from numbers that do not parse (``sender_valid`` false): a reply is evidence
and is never dropped. ``provider_message_id`` is unique, so a provider that
delivers the same message twice (Twilio retrying a webhook, an SMSC's store
and forward) stores it once and its keyword acts once.

``suppressions`` is keyed by a keyed hash of the number (HMAC-SHA256 with
``PHONE_HASH_KEY``), not the number: erasing a person clears ``phone`` and
the entry still matches every later send to that number. One entry per
(number, sender); ``*`` is every sender.

``recipients.phone`` grows to hold an erased number's hash (PostgreSQL only:
SQLite does not enforce a ``varchar`` length, and a batch rebuild of
``recipients`` would be a copy of the largest table for nothing). The index on
(phone, id) finds the latest message sent to a number, for routing a reply to
its owner, and the rows to erase.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "inbound_messages",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(length=80), nullable=False),
        sa.Column("sender_valid", sa.Boolean(), nullable=False),
        sa.Column("to", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("keyword", sa.String(length=16), nullable=True),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("erased", sa.Boolean(), nullable=False),
        sa.Column("reply_status", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_inbound_messages_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    op.create_index("uq_inbound_messages_provider_message_id", "inbound_messages",
                    ["provider_message_id"], unique=True)
    op.create_index("ix_inbound_messages_user_id_id", "inbound_messages", ["user_id", "id"])
    op.create_index("ix_inbound_messages_sender", "inbound_messages", ["sender"])
    op.create_table(
        "suppressions",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=80), nullable=True),
        sa.Column("sender", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index("uq_suppressions_phone_hash_sender", "suppressions",
                    ["phone_hash", "sender"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("recipients", "phone", type_=sa.String(length=80),
                        existing_type=sa.String(length=16), existing_nullable=False)
    op.create_index("ix_recipients_phone_id", "recipients", ["phone", "id"])


def downgrade():
    op.drop_index("ix_recipients_phone_id", table_name="recipients")
    op.drop_index("uq_suppressions_phone_hash_sender", table_name="suppressions")
    op.drop_table("suppressions")
    op.drop_index("ix_inbound_messages_sender", table_name="inbound_messages")
    op.drop_index("ix_inbound_messages_user_id_id", table_name="inbound_messages")
    op.drop_index("uq_inbound_messages_provider_message_id", table_name="inbound_messages")
    op.drop_table("inbound_messages")
