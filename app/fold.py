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
    """The strings of `document` folded, for SQL to compare `caseExact: false` values with.

    Keys stay as written. Lists are left out (multi-valued attributes are matched per element,
    from rows with a folded copy of their own), and so are numbers and booleans, which are
    never folded. Which strings are caseExact is not decided here: SQL reads this copy only for
    those that are not (app.filters.visitor.folds). store/users.py keeps a user's copy smaller.
    """
    copy: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, str):
            copy[key] = fold(value)
        elif isinstance(value, dict) and (inner := folded_copy(value)):
            copy[key] = inner
    return copy
