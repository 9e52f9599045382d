"""What a response should contain: plain data that protocol builds and serialize reads.

A module of its own, with no Flask in it, so that serialization depends on this and not on
the HTTP edge (the base URL arrives as a value, not as the request).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Projection:
    """RFC 7644 §3.4.2.5's attributes and excludedAttributes, plus the base URL for links."""

    base_url: str
    attributes: tuple[str, ...] = ()
    excluded_attributes: tuple[str, ...] = ()
