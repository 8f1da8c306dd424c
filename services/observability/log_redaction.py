"""Keeps secrets out of the logs, whoever writes the line.

Access logs carry query strings (``?token=``, ``?sid=``), library logs carry
handshake packets (``auth: {token}``) and session ids; a filter on every
handler scrubs tokens, bearer credentials and passwords, and replaces each
session id with its tag, before a line (or a traceback) is written.

A live Engine.IO session id is a credential: whoever has it can poll, post to
or upgrade that session. Its tag (``#`` and 10 hex digits of a BLAKE2b digest)
still ties together the lines about one socket, and cannot be turned back
into the id. Session ids (python-engineio's and python-socketio's alike) are
20 characters of URL-safe base64; any such word is tagged, except words of
letters of one case and underscores only, such as function names in a
traceback or setting names (``CORS_ALLOWED_ORIGINS``), which a random id
essentially never is (the odds are twice 27/64 to the 20th power).
"""

from __future__ import annotations

import hashlib
import logging
import re

# What the start-up line writes for a secret: already masked, or nothing to hide.
_MASKED = r"(?:\*\*\*|unset)(?=[\s\"'&,}]|$)"
_SECRETS = [
    (re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"), "[jwt]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:token|password|secret)[\"']?\s*[=:]\s*[\"']?)(?!" + _MASKED
                + r")[^\s\"'&,}]+"), r"\1[redacted]"),
]
_SESSION_ID = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{20}(?![\w-])")
_IDENTIFIER = re.compile(r"[a-z_]+|[A-Z_]+")


def sid_tag(sid: str) -> str:
    """What the logs show instead of a session id."""
    return "#" + hashlib.blake2b(sid.encode(), digest_size=5).hexdigest()


def _tag_session_id(match: re.Match[str]) -> str:
    word = match.group(0)
    return word if _IDENTIFIER.fullmatch(word) else sid_tag(word)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _SESSION_ID.sub(_tag_session_id, text)


class RedactingFilter(logging.Filter):
    """Rewrites the formatted message, and the traceback, of every record with secrets removed."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
        return True


def install_redaction() -> None:
    """Put the filter on every root handler (once), where every logger's lines end up."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
