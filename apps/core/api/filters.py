"""Reading list endpoints' query-string filters. Every integer filter goes through
`integer_filter`, so a value no database column can hold is a 400 with a sentence rather than
an OverflowError (a 500) from the database driver."""

from __future__ import annotations

import re
from collections.abc import Mapping

from apps.core.api.errors import ApiError

# Ids and every other integer column are at most 64-bit signed (PostgreSQL bigint, SQLite INTEGER).
INT64_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also accepts '²', which int() refuses


def integer_filter(params: Mapping[str, str], name: str, what: str = "an id") -> int | None:
    """The `?name=` filter as a whole number from 1 to INT64_MAX, None when absent or empty;
    anything else is a 400 naming the filter and the range."""
    raw = params.get(name)
    if not raw:
        return None
    value = int(raw) if _DIGITS.fullmatch(raw) else 0
    if not 1 <= value <= INT64_MAX:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise ApiError(
            f"invalid_{name}",
            f"?{name}= takes {what}: a whole number from 1 to {INT64_MAX}, not '{shown}'.",
        )
    return value
