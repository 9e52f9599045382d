"""Settings from environment-style mappings; the only reader of environment variables."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

DEFAULT_DATABASE_URL = "sqlite:///scim.sqlite3"  # relative SQLite paths land in instance/


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def load_config(env: Mapping[str, str]) -> dict[str, object]:
    database_url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url),
        "SCIM_TOKEN_HASHES": _token_hashes(env.get("SCIM_TOKEN_HASHES", "")),
        "MAX_CONTENT_LENGTH": _int(env, "SCIM_MAX_BODY_BYTES", 1_048_576, minimum=1024),
        "SCIM_MAX_RESULTS": _int(env, "SCIM_MAX_RESULTS", 200, minimum=100),
        "SCIM_DEFAULT_COUNT": _int(env, "SCIM_DEFAULT_COUNT", 100, minimum=1),
        "SCIM_PROXY_HOPS": _int(env, "SCIM_PROXY_HOPS", 0, minimum=0),
        "SCIM_BASE_URL": env.get("SCIM_BASE_URL", "").rstrip("/"),
        "SCIM_REQUIRE_HTTPS": _bool(env, "SCIM_REQUIRE_HTTPS", False),
        "SCIM_SECRET_KEY": _secret_key(env),
        "SCIM_SCHEMA_EXTENSIONS": env.get("SCIM_SCHEMA_EXTENSIONS", "").strip(),
        "SCIM_CURSOR_TIMEOUT": _int(env, "SCIM_CURSOR_TIMEOUT", 3600, minimum=1),
    }


def _engine_options(url: str) -> dict[str, object]:
    options: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Several gunicorn threads share one file: wait for a writer instead of failing at once.
        options["connect_args"] = {"timeout": 15}
    return options


def _secret_key(env: Mapping[str, str]) -> bytes:
    """The key that signs pagination cursors; every instance of one deployment needs the same.

    Without SCIM_SECRET_KEY it is derived from the token hashes, which every instance already
    shares: cursors then survive restarts and work across instances, and stop working when the
    tokens change. A cursor only positions a caller in results it may already read.
    """
    explicit = env.get("SCIM_SECRET_KEY", "").strip()
    if explicit:
        if len(explicit) < 16:
            raise ConfigError("SCIM_SECRET_KEY must be at least 16 characters")
        return explicit.encode()
    material = "scim-cursor-key:" + env.get("SCIM_TOKEN_HASHES", "")
    return hashlib.sha256(material.encode()).digest()


def _token_hashes(raw: str) -> tuple[str, ...]:
    hashes = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for h in hashes:
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ConfigError(
                "SCIM_TOKEN_HASHES must be comma-separated SHA-256 hex digests "
                "(run scripts/token_gen.py), got an entry that is not one"
            )
    return hashes


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}")
