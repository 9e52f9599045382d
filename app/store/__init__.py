"""Every SQL statement the service runs lives in this package, one module per resource type."""

from collections.abc import Iterator

CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit


def chunks(items: list[str]) -> Iterator[list[str]]:
    """`items` in slices small enough for one IN (...) list each."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
