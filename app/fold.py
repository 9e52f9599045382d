"""The one case fold: how every `caseExact: false` string is compared (RFC 7643 §2.2).

Unicode case folding, not lower(): "ΟΔΟΣ" and "οδοσ" (final sigma), "STRASSE" and "straße" are
the same userName, whatever the platform or database locale. Equality and ordering of such
strings are those of their folded forms, in memory (app.filters.match, PATCH) and in SQL alike:
SQL must compare folded copies made by this function (stored beside the value), never the
database's own lower(), whose result depends on its locale.
"""

from __future__ import annotations


def fold(text: str) -> str:
    """The form in which `caseExact: false` strings are stored for matching and compared."""
    return text.casefold()
