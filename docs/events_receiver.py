"""An application's receiver of the SCIM service's change events, pushed (RFC 8935).

    pip install "PyJWT[crypto]"
    python events_receiver.py --port 9000 --state receiver.sqlite3 \
        --jwks https://scim.example.com/events/receivers/<id>/jwks.json \
        --issuer https://scim.example.com/scim/v2 --audience https://app.example.com/scim-events

It verifies each SET's signature against the receiver's JWKS, its issuer and audience; skips a
SET it has already handled (the same `jti`: delivery is at least once); applies a resource's
events in their order (`sequence`), ignoring one older than what it applied (a replay); ends a
user's sessions when the user is deactivated or deleted; and answers 202 only once all of that
is committed, so that a crash before the answer gets the SET sent again. Each SET handled is
printed as a JSON line.
"""

import argparse
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

PROV = "urn:ietf:params:scim:event:prov"
ENDS_SESSIONS = (f"{PROV}:deactivate", f"{PROV}:delete")


def end_sessions(user_uri: str) -> None:
    """Your application's part: sign the user out everywhere, now."""
    print(json.dumps({"end_sessions": user_uri}), flush=True)


def handle(db: sqlite3.Connection, claims: dict) -> str:
    """Apply one verified SET once, in its resource's order; what became of it."""
    resource, sequence = claims["sub_id"]["uri"], claims["sequence"]
    with db:  # one transaction: the SET is remembered exactly when its effects are
        if db.execute("SELECT 1 FROM seen WHERE jti = ?", (claims["jti"],)).fetchone():
            return "duplicate"
        db.execute("INSERT INTO seen (jti) VALUES (?)", (claims["jti"],))
        row = db.execute("SELECT sequence FROM applied WHERE resource = ?", (resource,)).fetchone()
        if row and row[0] >= sequence:
            return "stale"  # older than what this resource already shows (a replay)
        db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (resource, sequence))
        if resource.startswith("/Users/") and any(uri in claims["events"] for uri in ENDS_SESSIONS):
            end_sessions(resource)
        # Here: fetch the resource from the SCIM API, or apply `data` of a `:full` event.
    return "applied"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("--jwks", "--issuer", "--audience", "--state"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()

    keys = jwt.PyJWKClient(args.jwks)  # fetched once and cached; fetched again for a new kid
    db = sqlite3.connect(args.state, check_same_thread=False)
    db.executescript(
        "CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS applied (resource TEXT PRIMARY KEY, sequence INTEGER);"
    )
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            token = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            try:
                key = keys.get_signing_key_from_jwt(token)
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=["ES256", "RS256"],
                    audience=args.audience,
                    issuer=args.issuer,
                )
            except jwt.PyJWKClientConnectionError as e:  # the JWKS is out of reach: later
                return self.answer(503, {"err": "temporarily_unavailable", "description": str(e)})
            except jwt.InvalidAudienceError as e:  # RFC 8935 §2.4's error codes
                return self.answer(400, {"err": "invalid_audience", "description": str(e)})
            except jwt.InvalidIssuerError as e:
                return self.answer(400, {"err": "invalid_issuer", "description": str(e)})
            except (jwt.InvalidSignatureError, jwt.PyJWKClientError) as e:
                return self.answer(400, {"err": "invalid_key", "description": str(e)})
            except jwt.PyJWTError as e:
                return self.answer(400, {"err": "invalid_request", "description": str(e)})
            with lock:
                outcome = handle(db, claims)
            line = {k: claims[k] for k in ("jti", "sequence", "txn")} | {"outcome": outcome}
            print(json.dumps(line | {"resource": claims["sub_id"]["uri"]}), flush=True)
            self.answer(202, None)  # RFC 8935 §2.2: accepted

        def answer(self, status: int, body: dict | None) -> None:
            data = json.dumps(body).encode() if body else b""
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
