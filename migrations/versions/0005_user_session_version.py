"""users.session_version: disabling an account ends its sessions for good

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:00:00.000000

Tokens the hub issues carry the account's ``session_version`` at issue; a
token whose version differs from the account's is refused. Disabling an
account moves it on, so tokens issued before stay refused once the account is
enabled again: a stolen refresh token cannot outlive a disable. The hub's
tokens are compared by equality, not by their ``iat`` against a cut-off time:
``iat`` is in whole seconds, and a cut-off inside a second would either
revive the tokens of that second or refuse the first ones issued after
re-enabling.

The new value is the Unix time of the disable (at least one more than the
old), so tokens minted by another service sharing the key, which carry no
``session_version``, can still be judged: they pass when issued (``iat``)
after the last disable, and always on an account never disabled (0).

The blocklist now holds sessions, not single tokens: logging out revokes the
``sid`` shared by an access/refresh pair and by every access token refreshed
from it. A token without ``sid`` is a session of its own, keyed by its
``jti`` (``session:jti:<jti>``) or by a digest of its claims
(``session:sha256:<hex>``), so the rows already there are renamed to the key
their tokens now look up and stay revoked. (A pair issued before this
revision has no shared ``sid``: logging out with one of its tokens revokes
only that token, as before.)
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite 3.35+ drops columns in place): a batch
# rebuild would drop ``users``, and with foreign keys on that deletes through every
# ``ON DELETE CASCADE`` (messages, notifications, connections).
def upgrade():
    op.add_column("users", sa.Column("session_version", sa.Integer(), nullable=False,
                                     server_default="0"))
    op.execute("UPDATE revoked_tokens SET token_key = CASE "
               "WHEN token_key LIKE 'sha256:%' THEN 'session:' || token_key "
               "ELSE 'session:jti:' || token_key END "
               "WHERE length(token_key) <= 116")


def downgrade():
    op.execute("DELETE FROM revoked_tokens WHERE token_key LIKE 'account:%'")
    op.execute("UPDATE revoked_tokens SET token_key = CASE "
               "WHEN token_key LIKE 'session:jti:%' THEN substr(token_key, 13) "
               "ELSE substr(token_key, 9) END "
               "WHERE token_key LIKE 'session:%'")
    op.drop_column("users", "session_version")
