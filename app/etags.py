"""Weak entity tags for meta.version and the ETag / If-Match / If-None-Match headers."""

from __future__ import annotations


def etag(version: int) -> str:
    return f'W/"{version}"'


def matches(header: str | None, version: int) -> bool:
    """RFC 9110 §13.1: a list of entity tags or "*", compared weakly as SCIM versions are weak."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(_opaque(tag) == _opaque(etag(version)) for tag in header.split(","))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag
