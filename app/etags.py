"""Weak entity tags for meta.version and the ETag / If-Match / If-None-Match headers.

A tag is the row's version, prefixed for every tenant but `default` with a short tag of the
tenant, so that an ETag minted for one tenant never matches in another (issue 15): W/"3" in the
default tenant, W/"5d41402a.3" elsewhere. Single-tenant deployments see the tags they always did.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from app.tenancy import DEFAULT_TENANT_ID


def etag(version: int, tenant_id: int) -> str:
    return f'W/"{tenant_tag(tenant_id)}{version}"'


@lru_cache(maxsize=4096)
def tenant_tag(tenant_id: int) -> str:
    """The prefix of a tenant's versions: derived from its id, opaque, and empty for default."""
    if tenant_id == DEFAULT_TENANT_ID:
        return ""
    return hashlib.sha256(f"scim-etag-tenant:{tenant_id}".encode()).hexdigest()[:8] + "."


def matches(header: str | None, version: int, tenant_id: int) -> bool:
    """RFC 9110 §13.1: a list of entity tags or "*", compared weakly as SCIM versions are weak."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    current = _opaque(etag(version, tenant_id))
    return any(_opaque(tag) == current for tag in header.split(","))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag
