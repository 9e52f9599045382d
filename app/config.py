"""Settings from environment-style mappings; the only reader of environment variables."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from datetime import timedelta

import orjson
from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.limits import INDEXABLE_STRING_BYTES, SMALLEST_MEMBER_BYTES, Limits

DEFAULT_DATABASE_URL = "sqlite:///scim.sqlite3"  # relative SQLite paths land in instance/
POSTGRESQL_DRIVER = "postgresql+psycopg"  # psycopg 3, the driver requirements.txt installs
DATABASE_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", POSTGRESQL_DRIVER})


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def load_config(env: Mapping[str, str]) -> dict[str, object]:
    database_url = _database_url(env.get("DATABASE_URL", ""))
    migration_url = _migration_database_url(env.get("MIGRATION_DATABASE_URL", ""), database_url)
    db_timeout = _int(env, "SCIM_DB_TIMEOUT_SECONDS", 5, minimum=1)
    secret_key = _secret_key(env)
    limits = _limits(env)
    metrics_tokens = _token_hashes(
        env.get("SCIM_METRICS_TOKEN_HASHES", ""), "SCIM_METRICS_TOKEN_HASHES"
    )
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url, db_timeout),
        # `flask db` connects as the tables' owner when set (docs/tenancy.md); else DATABASE_URL.
        "MIGRATION_DATABASE_URL": migration_url,
        "SCIM_DB_TIMEOUT_SECONDS": db_timeout,
        "SCIM_TOKEN_HASHES": _token_hashes(env.get("SCIM_TOKEN_HASHES", "")),
        "MAX_CONTENT_LENGTH": limits.body_bytes,  # Werkzeug refuses a larger body with 413
        "SCIM_LIMITS": limits,
        # How long a Bulk request's transaction runs before it commits, between operations
        # (app/store/batch.py): the longest it holds a lock other writers wait for.
        "SCIM_BULK_CHUNK_SECONDS": BULK_CHUNK_SECONDS,
        "SCIM_MAX_RESULTS": _int(env, "SCIM_MAX_RESULTS", 200, minimum=100),
        "SCIM_DEFAULT_COUNT": _int(env, "SCIM_DEFAULT_COUNT", 100, minimum=1),
        "SCIM_PROXY_HOPS": _int(env, "SCIM_PROXY_HOPS", 0, minimum=0),
        "SCIM_BASE_URL": env.get("SCIM_BASE_URL", "").rstrip("/"),
        "SCIM_REQUIRE_HTTPS": _bool(env, "SCIM_REQUIRE_HTTPS", False),
        # Change events (RFC 9967): the SETs' `iss` (default: the SCIM base URL), how long a
        # poll waits for an event (RFC 8936 returnImmediately false), and when a SET handed
        # out by a poll and not acknowledged is handed out again.
        # SCIM_EVENTS=off: no outbox at all (no event rows, nothing to deliver or replay).
        "SCIM_EVENTS": _bool(env, "SCIM_EVENTS", True),
        # Days an event is kept once every delivery of it is done (delivered or dead); 0: ever.
        "SCIM_EVENTS_RETENTION_DAYS": _int(env, "SCIM_EVENTS_RETENTION_DAYS", 30, minimum=0),
        "SCIM_EVENTS_ISSUER": env.get("SCIM_EVENTS_ISSUER", "").strip(),
        "SCIM_EVENTS_POLL_WAIT_SECONDS": _int(env, "SCIM_EVENTS_POLL_WAIT_SECONDS", 10, minimum=0),
        "SCIM_EVENTS_REDELIVER_SECONDS": _int(env, "SCIM_EVENTS_REDELIVER_SECONDS", 60, minimum=1),
        # The push worker (`flask events run`, app/worker.py): one POST's timeout, the backoff
        # between tries (doubling from the base up to the cap, with jitter), the age after which
        # an event not delivered is dead-lettered, receivers served at once.
        "SCIM_EVENTS_PUSH_TIMEOUT_SECONDS": _int(
            env, "SCIM_EVENTS_PUSH_TIMEOUT_SECONDS", 10, minimum=1
        ),
        "SCIM_EVENTS_RETRY_BASE_SECONDS": _int(env, "SCIM_EVENTS_RETRY_BASE_SECONDS", 1, minimum=1),
        "SCIM_EVENTS_RETRY_MAX_SECONDS": _int(env, "SCIM_EVENTS_RETRY_MAX_SECONDS", 300, minimum=1),
        "SCIM_EVENTS_MAX_AGE_SECONDS": _int(
            env, "SCIM_EVENTS_MAX_AGE_SECONDS", 3 * 24 * 3600, minimum=1
        ),
        "SCIM_EVENTS_WORKER_THREADS": _int(env, "SCIM_EVENTS_WORKER_THREADS", 8, minimum=1),
        "SCIM_SECRET_KEY": secret_key,
        "SCIM_SCHEMA_EXTENSIONS": env.get("SCIM_SCHEMA_EXTENSIONS", "").strip(),
        "SCIM_CURSOR_TIMEOUT": _int(env, "SCIM_CURSOR_TIMEOUT", 3600, minimum=1),
        # 0 keeps audit events for ever; `flask purge` deletes older ones otherwise.
        "SCIM_AUDIT_RETENTION_DAYS": _int(env, "SCIM_AUDIT_RETENTION_DAYS", 90, minimum=0),
        # Days a deleted tenant's data is kept before `flask purge` removes it; 0 keeps it for ever.
        "SCIM_TENANT_RETENTION_DAYS": _int(env, "SCIM_TENANT_RETENTION_DAYS", 30, minimum=0),
        "SCIM_RATE_LIMIT": _rate_limit(env.get("SCIM_RATE_LIMIT", DEFAULT_RATE_LIMIT)),
        # One budget shared by all of a tenant's tokens; none by default (each token has its own).
        "SCIM_RATE_LIMIT_PER_TENANT": _rate_limit(
            env.get("SCIM_RATE_LIMIT_PER_TENANT", ""), "SCIM_RATE_LIMIT_PER_TENANT"
        ),
        "SCIM_RATE_LIMIT_STORAGE_URI": _storage_uri(env.get("SCIM_RATE_LIMIT_STORAGE_URI", "")),
        "SCIM_RATE_LIMIT_KEY_PREFIX": env.get("SCIM_RATE_LIMIT_KEY_PREFIX", "").strip() or "scim",
        # The operator console (app/console/): on once an admin password is set, unless false.
        "SCIM_CONSOLE_ENABLED": _bool(env, "SCIM_CONSOLE_ENABLED", True),
        "SECRET_KEY": _session_key(secret_key),  # signs the console's session cookie only
        "PERMANENT_SESSION_LIFETIME": timedelta(
            minutes=_int(env, "SCIM_CONSOLE_SESSION_MINUTES", 480, minimum=1)
        ),
        "SCIM_CONSOLE_LOGIN_ATTEMPTS": _int(env, "SCIM_CONSOLE_LOGIN_ATTEMPTS", 5, minimum=1),
        "SCIM_CONSOLE_LOCKOUT_SECONDS": _int(env, "SCIM_CONSOLE_LOCKOUT_SECONDS", 900, minimum=1),
        # GET /metrics (app/metrics.py): on, and collected, only once a token hash is set.
        "SCIM_METRICS_TOKEN_HASHES": metrics_tokens,
        "PROMETHEUS_MULTIPROC_DIR": _multiprocess_dir(env, bool(metrics_tokens)),
    }


def _limits(env: Mapping[str, str]) -> Limits:
    """The bounds of one request (app/limits.py); each SCIM_MAX_* overrides one default."""
    default = Limits()
    body = _int(env, "SCIM_MAX_BODY_BYTES", default.body_bytes, minimum=1024)
    string_bytes = _int(env, "SCIM_MAX_STRING_BYTES", default.string_bytes, minimum=64)
    if string_bytes > INDEXABLE_STRING_BYTES:
        raise ConfigError(
            f"SCIM_MAX_STRING_BYTES must be at most {INDEXABLE_STRING_BYTES} (what a PostgreSQL "
            f"index entry holds), got {string_bytes}"
        )
    bulk_payload = _int(env, "SCIM_BULK_MAX_PAYLOAD_BYTES", body, minimum=1024)
    if bulk_payload > body:
        raise ConfigError(
            f"SCIM_BULK_MAX_PAYLOAD_BYTES must be at most SCIM_MAX_BODY_BYTES ({body}), the "
            f"largest body the service reads, got {bulk_payload}"
        )
    return Limits(
        body_bytes=body,
        filter_chars=_int(env, "SCIM_MAX_FILTER_CHARS", default.filter_chars, minimum=256),
        filter_depth=_int(env, "SCIM_MAX_FILTER_DEPTH", default.filter_depth, minimum=2),
        filter_terms=_int(env, "SCIM_MAX_FILTER_TERMS", default.filter_terms, minimum=2),
        string_bytes=string_bytes,
        patch_operations=_int(
            env, "SCIM_MAX_PATCH_OPERATIONS", default.patch_operations, minimum=1
        ),
        # By default whatever member list fits in the body, whatever the body limit is.
        members=_int(env, "SCIM_MAX_MEMBERS_PER_REQUEST", body // SMALLEST_MEMBER_BYTES, minimum=1),
        bulk_operations=_int(env, "SCIM_BULK_MAX_OPERATIONS", default.bulk_operations, minimum=1),
        bulk_payload_bytes=bulk_payload,
    )


def _migration_database_url(raw: str, database_url: str) -> str | None:
    """MIGRATION_DATABASE_URL, read as DATABASE_URL is; None when unset. It names the same kind
    of database: the owner of the tables the service uses, not another database."""
    if not raw.strip():
        return None
    url = _database_url(raw, "MIGRATION_DATABASE_URL")
    if make_url(url).get_backend_name() != make_url(database_url).get_backend_name():
        raise ConfigError(
            "MIGRATION_DATABASE_URL must name the same kind of database as DATABASE_URL "
            "(the same PostgreSQL database, as the role that owns its tables)"
        )
    return url


def _database_url(raw: str, name: str = "DATABASE_URL") -> str:
    """DATABASE_URL with psycopg 3 named: hosting platforms hand out postgres://... URLs.

    SQLAlchemy reads `postgres://` as no dialect at all and `postgresql://` as psycopg2, which
    is not installed; both mean the PostgreSQL this service runs on, through psycopg 3.
    """
    raw = raw.strip()
    if not raw:
        return DEFAULT_DATABASE_URL
    scheme, separator, rest = raw.partition("://")
    if separator and scheme.lower() in ("postgres", "postgresql"):
        raw = f"{POSTGRESQL_DRIVER}://{rest}"
    example = f"{POSTGRESQL_DRIVER}://user:password@host:5432/database or sqlite:///file.sqlite3"
    try:
        driver = make_url(raw).drivername
    except ArgumentError:
        # The value itself is never echoed: it may hold a password.
        raise ConfigError(f"{name} is not a URL; it must look like {example}") from None
    if driver not in DATABASE_DRIVERS:
        raise ConfigError(f"{name} must look like {example}, got {driver!r}")
    return raw


def _engine_options(url: str, timeout: int) -> dict[str, object]:
    """One bound on every wait for the database.

    With the database gone, slow or locked, a request fails within about `timeout` seconds (a
    503 from protocol.py) instead of hanging until gunicorn kills its worker. A pooled
    connection that sat idle is pinged before use (app.db._ping_if_idle), so the service
    recovers by itself after an outage.
    """
    options: dict[str, object] = {"json_serializer": write_json, "json_deserializer": read_json}
    if url.startswith("sqlite"):
        # Several gunicorn threads share one file: wait for a writer instead of failing at once.
        options["connect_args"] = {"timeout": timeout}
        if ":memory:" not in url and url.rstrip("/") != "sqlite:":
            options["pool_timeout"] = timeout
        return options
    options["pool_timeout"] = timeout  # waiting for a free pooled connection
    if url.startswith("postgresql"):
        options["connect_args"] = {
            "connect_timeout": max(timeout, 2),  # libpq treats anything below 2 as 2
            # Server side: no statement (lock waits included) runs longer than the timeout.
            "options": f"-c statement_timeout={timeout * 1000}",
            # Client side: a connection whose packets go unacknowledged (a network cut) is dead.
            "tcp_user_timeout": timeout * 1000,
            "keepalives": 1,
            "keepalives_idle": 30,
        }
    return options


def read_json(text: str | bytes) -> object:
    """A JSON column's value as the database returns it (text on SQLite, bytes from psycopg):
    by orjson, three times faster than json (a page of 100 users parses 100 documents), and by
    json what orjson reads otherwise or not at all: an integer beyond 64 bits (an extension's
    attribute may hold one; orjson makes some of them floats), NaN, a lone surrogate."""
    if not _may_hold_a_long_integer(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def write_json(value: object) -> str:
    """A JSON column's value as text for the database: by orjson, five times faster than json
    (a user's write stores six to eight: its document, its folded copy, each email's element
    twice, the change's attribute names), and by json what orjson refuses (an integer beyond 64
    bits, a lone surrogate) or would write differently: orjson writes datetimes, dataclasses and
    subclasses of str or dict by rules of its own, where json writes or refuses them as before.
    Both write text that reads back as the same value; orjson writes it compact, in UTF-8.
    (Infinity and NaN, which orjson would write as null, never come: protocol.json_body refuses
    them, and the service computes no floats.)"""
    try:
        return orjson.dumps(value, option=_AS_JSON_WOULD).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


_AS_JSON_WOULD = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _may_hold_a_long_integer(text: str | bytes) -> bool:
    """Whether the text has 19 digits in a row: perhaps an integer beyond 64 bits (every integer
    of 18 digits is within). Every digit made a "0", then the run looked for as a substring: a
    regular expression trying [0-9]{19} at each digit took three times as long as orjson's
    parse of the same text (159 to 205 ms of a 100,000-member group's 6.9 MB; 11 us of a user's
    document), this a sixth of it on a string (SQLite's), an eleventh on bytes (psycopg's). UTF-8
    of a string never fails with surrogatepass."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _LONG_RUN in raw.translate(_DIGITS_AS_ZERO)


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


# A Bulk request commits its operations every 50 ms: a tenth of the commits (and fsyncs) of its
# operations sent one by one, and a writer waiting behind it waits no longer than that.
BULK_CHUNK_SECONDS = 0.05

# Per token, over the last 60 seconds (a moving window): 100 requests/s on average, and any
# burst within that. Microsoft asks a SCIM endpoint to sustain at least 25 requests/s per
# provisioning job, and Entra retries a 429 only in its next cycle, some 40 minutes later; an
# initial Okta import comes as fast as the service answers. No window shorter than a minute,
# so a burst of concurrent requests is never refused while the minute's budget lasts.
DEFAULT_RATE_LIMIT = "6000 per minute"


def _rate_limit(raw: str, name: str = "SCIM_RATE_LIMIT") -> str:
    """In `limits`' notation ("600 per minute", "10/second; 1000/hour"); empty disables."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must look like '600 per minute' (or be empty), got {raw!r}"
        ) from None
    return raw


def _storage_uri(raw: str) -> str:
    raw = raw.strip() or "memory://"
    scheme = raw.split("://", 1)[0]
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        # Only the scheme is echoed: the rest of a Redis URI may hold a password.
        raise ConfigError(
            f"SCIM_RATE_LIMIT_STORAGE_URI must be memory:// or a redis:// URI, got {scheme!r}"
        )
    return raw


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
    token_hashes = env.get("SCIM_TOKEN_HASHES", "").strip()
    if not token_hashes:
        # Nothing secret to derive from (tokens live only in the database): a key known to
        # nobody, valid for this process only. Set SCIM_SECRET_KEY to share one.
        return secrets.token_bytes(32)
    return hashlib.sha256(("scim-cursor-key:" + token_hashes).encode()).digest()


def _session_key(secret_key: bytes) -> str:
    """A key of its own for console sessions, so that a cookie never doubles as a cursor."""
    return hmac.new(secret_key, b"scim-console-session", hashlib.sha256).hexdigest()


def _token_hashes(raw: str, name: str = "SCIM_TOKEN_HASHES") -> tuple[str, ...]:
    hashes = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for h in hashes:
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ConfigError(
                f"{name} must be comma-separated SHA-256 hex digests "
                "(run scripts/token_gen.py), got an entry that is not one"
            )
    return hashes


def _multiprocess_dir(env: Mapping[str, str], metrics_on: bool) -> str:
    """Where every gunicorn worker writes its metrics (prometheus_client's multiprocess mode);
    gunicorn.conf.py sets it to a fresh directory per run. Empty: this process's own numbers."""
    raw = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() if metrics_on else ""
    if raw and not os.path.isdir(raw):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR must be an existing directory, got {raw!r}")
    return raw


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
