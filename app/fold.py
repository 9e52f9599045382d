"""The one case fold: how every `caseExact: false` string is compared (RFC 7643 §2.2).

Unicode case folding, not lower(): "ΟΔΟΣ" and "οδοσ" (final sigma), "STRASSE" and "straße" are
the same userName, whatever the platform or database locale. Equality and ordering of such
strings are those of their folded forms, in memory (app.filters.match, PATCH) and in SQL alike:
SQL compares folded copies made by this module and stored beside the value (the `*_key`
columns), never the database's own lower(), whose result depends on its locale (with
LC_CTYPE=C, PostgreSQL's lower('MÜLLER') is 'mÜller').
"""

from __future__ import annotations

from typing import Any


def fold(text: str) -> str:
    """The form in which `caseExact: false` strings are stored for matching and compared."""
    return text.casefold()


def folded_copy(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with every string folded, for SQL to compare `caseExact: false` values with.

    Keys stay as written. Lists are left out: multi-valued attributes are matched per element
    from their own rows, each with a folded copy of its own. Which attributes are caseExact is
    not decided here: SQL reads this copy only for those that are not (app.filters.visitor.folds).
    """
    copy: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, str):
            copy[key] = fold(value)
        elif isinstance(value, dict):
            copy[key] = folded_copy(value)
        elif not isinstance(value, list):
            copy[key] = value
    return copy
