"""recipients.price_per_segment: each recipient priced when its message is created

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 15:20:00.000000

``SMS_PRICES`` prices a segment per destination country, so one message's
recipients cost different amounts. The price is stored on each recipient
when the message is created, from the table in effect then: the cost the
preview announced is the cost billed, even when the table changes (and the
hub restarts) while a message of 10,000 recipients sends. The send records
``parts × price_per_segment``, rounded as the preview rounds it.

Rows stored before this revision were all priced at ``SMS_PRICE_PER_SEGMENT``,
so that is what they get: the price in effect where the upgrade runs, as the
column's server default. A constant default is no table rewrite on
PostgreSQL (11+) and a plain ``ALTER TABLE`` on SQLite (a batch rebuild would
delete through the foreign keys' cascades, see 0005). The hub writes the
price of every row it inserts; the default only ever served the old rows.
"""
from decimal import Decimal

from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    price = Decimal(current_app.config["SMS_PRICE_PER_SEGMENT"])
    op.add_column("recipients", sa.Column("price_per_segment", sa.Numeric(12, 6),
                                          nullable=False, server_default=str(price)))


def downgrade():
    op.drop_column("recipients", "price_per_segment")
