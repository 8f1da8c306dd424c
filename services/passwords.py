"""Passwords nobody should choose: the most common ones from leaked password dumps.

The list is zxcvbn's 30,000 most frequent passwords (its ``passwords`` frequency
list, maintained with the package), compared case-insensitively: a spraying
run tries exactly these first, one or two per account, below any rate limit.
"""

from __future__ import annotations

import functools


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    """Whether ``password`` is on the list, whatever its letter case."""
    return password.lower() in _common_passwords()
