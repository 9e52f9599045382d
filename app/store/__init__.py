"""Every SQL statement the service runs lives in this package, one module per resource type."""

from collections.abc import Iterator

CHUNK = 5000  # ids per IN (...) list: far below SQLite's 32,766 bound parameters (3.32+)


def chunks(items: list[str]) -> Iterator[list[str]]:
    """`items` in slices small enough for one IN (...) list each."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def could_be_id(text: str) -> bool:
    """False for text no resource id can be (ids are UUIDs): answered 404 without a query.

    PostgreSQL cannot even compare a string holding NUL (`GET /Users/%00`).
    """
    return len(text) <= 64 and "\x00" not in text
