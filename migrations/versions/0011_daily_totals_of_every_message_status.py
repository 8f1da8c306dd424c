"""message_daily_totals counts scheduled, paused and canceled messages

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:40:00.000000

Send controls brought three message statuses the daily totals of 0003 did not
know: ``SCHEDULED`` and ``PAUSED`` were summed as finished (``status <>
'SENDING'``), so a paused message's recipients counted as settled in the
analytics, and none of the three had a count of its own. The ``finished_*``
columns now sum only final messages (``SENT``, ``FAILED``, ``CANCELED``), and
``status_scheduled``, ``status_paused`` and ``status_canceled`` count the
others. The triggers are rebuilt from 0003's code with the new contributions
and the table is summed again from the messages, in this migration's
transaction (on PostgreSQL, ``DROP TRIGGER`` locks ``messages`` against writes
until it commits, so nothing falls between the sum and the new triggers).
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NEW_STATUSES = ("scheduled", "paused", "canceled")
FINAL = "{r}.status IN ('SENT', 'FAILED', 'CANCELED')"


def _daily_totals_migration():
    """Migration 0003, whose trigger code this one reuses (its file name is no module name)."""
    path = Path(__file__).with_name("0003_message_daily_totals.py")
    spec = importlib.util.spec_from_file_location("daily_totals_0003", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contributions(first: dict[str, str]) -> dict[str, str]:
    contributions = dict(first)
    for status in NEW_STATUSES:
        contributions[f"status_{status}"] = (
            f"CASE WHEN {{r}}.status = '{status.upper()}' THEN 1 ELSE 0 END")
    for column, counter in (("finished_success", "success_count"),
                            ("finished_delivered", "delivered_count"),
                            ("finished_failed", "failed_count")):
        contributions[column] = f"CASE WHEN {FINAL} THEN {{r}}.{counter} ELSE 0 END"
    return contributions


def _rebuild(daily_totals, contributions: dict[str, str]) -> None:
    daily_totals.drop_triggers()
    op.execute("DELETE FROM message_daily_totals")
    daily_totals.create_triggers_and_backfill(contributions)


# Plain ALTER TABLE, as in 0005 and 0006: no batch rebuild of a table with references.
def upgrade():
    for status in NEW_STATUSES:
        op.add_column("message_daily_totals",
                      sa.Column(f"status_{status}", sa.BigInteger(), nullable=False,
                                server_default="0"))
    daily_totals = _daily_totals_migration()
    _rebuild(daily_totals, _contributions(daily_totals.CONTRIBUTIONS))


def downgrade():
    daily_totals = _daily_totals_migration()
    _rebuild(daily_totals, daily_totals.CONTRIBUTIONS)
    for status in reversed(NEW_STATUSES):
        op.drop_column("message_daily_totals", f"status_{status}")
