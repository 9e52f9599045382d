#!/usr/bin/env python3
"""Print a fresh bearer token and the SCIM_TOKEN_HASHES line that accepts it.

Only the SHA-256 of a token belongs in configuration. To rotate without downtime, append the new
hash to SCIM_TOKEN_HASHES (comma-separated), move the IdP to the new token, then drop the old hash.

    python3 scripts/token_gen.py              # print a token and its .env line
    python3 scripts/token_gen.py --env .env   # also create .env from .env.example with it
    python3 scripts/token_gen.py --metrics    # a token for Prometheus: SCIM_METRICS_TOKEN_HASHES

Standard library only, so it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Must equal app.auth.token_hash; tests/test_auth.py checks that it does.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def write_env(path: Path, digest: str) -> None:
    template = (ROOT / ".env.example").read_text(encoding="utf-8")
    fresh = {"SCIM_TOKEN_HASHES": digest, "SCIM_SECRET_KEY": secrets.token_urlsafe(32)}
    lines = []
    for line in template.splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={fresh[name]}" if name in fresh and "=" in line else line)
    # Created with mode 0600 from the start: the file holds the cursor and session key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as env_file:
        env_file.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, help="create this .env file (refuses to overwrite)")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="a token for Prometheus to scrape GET /metrics with, not for an IdP",
    )
    args = parser.parse_args(argv)
    token = new_token()
    digest = token_hash(token)
    if args.metrics:
        print(f"Metrics token (give it to Prometheus; it is not stored anywhere): {token}")
        print("Line for .env (append with a comma to keep accepting older tokens):")
        print(f"SCIM_METRICS_TOKEN_HASHES={digest}")
        return 0
    if args.env is not None:
        if args.env.exists():
            print(f"{args.env} already exists; not overwriting it", file=sys.stderr)
            return 1
        write_env(args.env, digest)
        print(f"Created {args.env} with a new bearer token. It is shown only this once:")
        print()
        print(f"    {token}")
        print()
        print("Give it to your identity provider as the SCIM bearer token (API token).")
        return 0
    print(f"Bearer token (give it to the IdP; it is not stored anywhere): {token}")
    print("Line for .env (append with a comma to keep accepting older tokens):")
    print(f"SCIM_TOKEN_HASHES={digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
