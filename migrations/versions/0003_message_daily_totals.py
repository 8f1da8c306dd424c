"""message daily totals, kept by triggers on messages

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:50:00.000000

The analytics figures used to aggregate every message a user ever sent on each
round, so a round's cost grew with history. ``message_daily_totals`` holds the
same sums per owner and UTC day of ``created_at``; the figures read a few rows
per user instead.

The table is kept by triggers on ``messages`` rather than by the services that
write messages: a trigger runs in the writing transaction for every statement
that touches the counted columns, whichever code path (or operator's SQL, or a
cascade from ``users``) issues it, so the totals cannot drift from the rows.
The services' alternative would have to repeat each counter change in a second
place and stay exact forever by discipline. The cost is one extra row update
per message update, the same order as the ``analytics_marks`` bump those
transactions already make.

The triggers are created before the backfill in the same transaction: on
PostgreSQL ``CREATE TRIGGER`` locks ``messages`` against writes until the
migration commits, so no change falls between the backfill and the triggers.
Money stays exact: ``numeric`` on PostgreSQL; on SQLite, where numeric values
are stored as floating point, each sum is rounded back to the column's four
decimals so that no error accumulates over many updates.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0003"
down_revision = '0002'
branch_labels = None
depends_on = None

# Each total and what one message row ``{r}`` (NEW or OLD) adds to it.
CONTRIBUTIONS = {
    "messages": "1",
    "recipients": "{r}.recipient_count",
    "success": "{r}.success_count",
    "delivered": "{r}.delivered_count",
    "failed": "{r}.failed_count",
    "cost": "{r}.cost",
    "segments_sent": "{r}.segments * {r}.success_count",
    "status_sending": "CASE WHEN {r}.status = 'SENDING' THEN 1 ELSE 0 END",
    "status_sent": "CASE WHEN {r}.status = 'SENT' THEN 1 ELSE 0 END",
    "status_failed": "CASE WHEN {r}.status = 'FAILED' THEN 1 ELSE 0 END",
    "finished_success": "CASE WHEN {r}.status <> 'SENDING' THEN {r}.success_count ELSE 0 END",
    "finished_delivered": "CASE WHEN {r}.status <> 'SENDING' THEN {r}.delivered_count ELSE 0 END",
    "finished_failed": "CASE WHEN {r}.status <> 'SENDING' THEN {r}.failed_count ELSE 0 END",
}
# An UPDATE of any other column (version, updated_at, ...) changes no total.
COUNTED = ("recipient_count", "success_count", "delivered_count", "failed_count", "cost",
           "segments", "status")
TRIGGERS = ("message_daily_totals_insert", "message_daily_totals_update",
            "message_daily_totals_move", "message_daily_totals_delete")


def _day(dialect: str, row: str) -> str:
    """The UTC day of a message's ``created_at``, as the ``day`` column stores it."""
    if dialect == "postgresql":
        return f"({row}.created_at AT TIME ZONE 'UTC')::date"
    return f"date({row}.created_at)"  # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS...'


def _sum(dialect: str, column: str, value: str) -> str:
    """``column`` plus ``value``, kept to four decimals for money on SQLite."""
    if column == "cost" and dialect == "sqlite":
        return f"round({value}, 4)"
    return value


def _add(dialect: str, sign: str, row: str, contributions: dict[str, str]) -> str:
    """An UPDATE adding (``+``) or taking away (``-``) one row's contribution in place."""
    sets = ", ".join(
        f"{column} = " + _sum(dialect, column, f"{column} {sign} ({value.format(r=row)})")
        for column, value in contributions.items())
    return (f"UPDATE message_daily_totals SET {sets}"
            f" WHERE user_id = {row}.user_id AND day = {_day(dialect, row)}")


def _upsert(dialect: str, contributions: dict[str, str]) -> str:
    """Add NEW's contribution to its day, creating the day's row on its first message."""
    values = ", ".join(value.format(r="NEW") for value in contributions.values())
    sets = ", ".join(
        f"{column} = " + _sum(dialect, column,
                              f"message_daily_totals.{column} + excluded.{column}")
        for column in contributions)
    return (f"INSERT INTO message_daily_totals (user_id, day, {', '.join(contributions)})"
            f" VALUES (NEW.user_id, {_day(dialect, 'NEW')}, {values})"
            f" ON CONFLICT (user_id, day) DO UPDATE SET {sets}")


def _change(dialect: str, contributions: dict[str, str]) -> str:
    """An UPDATE adding NEW's contribution less OLD's, when the row stays on its day."""
    sets = ", ".join(
        f"{column} = " + _sum(dialect, column, f"{column} + ({value.format(r='NEW')})"
                                               f" - ({value.format(r='OLD')})")
        for column, value in contributions.items())
    return (f"UPDATE message_daily_totals SET {sets}"
            f" WHERE user_id = NEW.user_id AND day = {_day(dialect, 'NEW')}")


def _same_day(dialect: str) -> str:
    return f"NEW.user_id = OLD.user_id AND {_day(dialect, 'NEW')} = {_day(dialect, 'OLD')}"


def _create_sqlite_triggers(contributions: dict[str, str]) -> None:
    # A deleted message's day row always exists (its insert made it), so the
    # decrements are plain UPDATEs; under a cascade from ``users`` the day rows
    # may already be gone, and then they change nothing.
    op.execute(f"CREATE TRIGGER message_daily_totals_insert AFTER INSERT ON messages"
               f" BEGIN {_upsert('sqlite', contributions)}; END")
    op.execute(f"CREATE TRIGGER message_daily_totals_update"
               f" AFTER UPDATE OF {', '.join(COUNTED)} ON messages"
               f" WHEN {_same_day('sqlite')} BEGIN {_change('sqlite', contributions)}; END")
    op.execute(f"CREATE TRIGGER message_daily_totals_move"
               f" AFTER UPDATE OF user_id, created_at ON messages"
               f" WHEN NOT ({_same_day('sqlite')})"
               f" BEGIN {_add('sqlite', '-', 'OLD', contributions)};"
               f" {_upsert('sqlite', contributions)}; END")
    op.execute(f"CREATE TRIGGER message_daily_totals_delete AFTER DELETE ON messages"
               f" BEGIN {_add('sqlite', '-', 'OLD', contributions)}; END")


def _create_postgresql_triggers(contributions: dict[str, str]) -> None:
    op.execute(f"""
        CREATE FUNCTION message_daily_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND {_same_day('postgresql')} THEN
                {_change('postgresql', contributions)};
                RETURN NULL;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                {_add('postgresql', '-', 'OLD', contributions)};
            END IF;
            IF TG_OP <> 'DELETE' THEN
                {_upsert('postgresql', contributions)};
            END IF;
            RETURN NULL;
        END
        $$""")
    op.execute("CREATE TRIGGER message_daily_totals_insert AFTER INSERT ON messages"
               " FOR EACH ROW EXECUTE FUNCTION message_daily_totals_apply()")
    op.execute(f"CREATE TRIGGER message_daily_totals_update"
               f" AFTER UPDATE OF {', '.join(COUNTED)}, user_id, created_at ON messages"
               f" FOR EACH ROW EXECUTE FUNCTION message_daily_totals_apply()")
    op.execute("CREATE TRIGGER message_daily_totals_delete AFTER DELETE ON messages"
               " FOR EACH ROW EXECUTE FUNCTION message_daily_totals_apply()")


def upgrade():
    op.create_table('message_daily_totals',
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('messages', sa.BigInteger(), nullable=False),
    sa.Column('recipients', sa.BigInteger(), nullable=False),
    sa.Column('success', sa.BigInteger(), nullable=False),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('failed', sa.BigInteger(), nullable=False),
    sa.Column('cost', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('segments_sent', sa.BigInteger(), nullable=False),
    sa.Column('status_sending', sa.BigInteger(), nullable=False),
    sa.Column('status_sent', sa.BigInteger(), nullable=False),
    sa.Column('status_failed', sa.BigInteger(), nullable=False),
    sa.Column('finished_success', sa.BigInteger(), nullable=False),
    sa.Column('finished_delivered', sa.BigInteger(), nullable=False),
    sa.Column('finished_failed', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_message_daily_totals_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'day', name=op.f('pk_message_daily_totals'))
    )
    create_triggers_and_backfill(CONTRIBUTIONS)


def create_triggers_and_backfill(contributions: dict[str, str]) -> None:
    """The triggers summing ``contributions``, then the table filled from the messages.

    Later migrations that change what is summed drop the triggers, empty the
    table and call this again with their own contributions.
    """
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _create_postgresql_triggers(contributions)
    else:
        _create_sqlite_triggers(contributions)
    sums = ", ".join(_sum(dialect, column, f"SUM({value.format(r='m')})")
                     for column, value in contributions.items())
    op.execute(f"INSERT INTO message_daily_totals (user_id, day, {', '.join(contributions)})"
               f" SELECT m.user_id, {_day(dialect, 'm')}, {sums} FROM messages m"
               f" GROUP BY m.user_id, {_day(dialect, 'm')}")


def drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    # PostgreSQL has no ``_move`` trigger (its one function handles moves): IF EXISTS.
    for name in TRIGGERS:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON messages")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION message_daily_totals_apply()")


def downgrade():
    drop_triggers()
    op.drop_table('message_daily_totals')
