"""How much one request may ask of the service: the bounds every request is held to.

Each bound is configurable (app/config.py reads SCIM_MAX_*), the same on SQLite and PostgreSQL,
advertised in the OpenAPI document, and refused with a SCIM error that names it. The defaults
are far above what Okta or Entra ID send, and low enough that no request can exhaust the
stack, the database's index entries, or the time other requests wait for a lock.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BODY_BYTES = 1_048_576

# The smallest member element a client can send, `{"value":"<36-character id>"},`: a member list
# that fits in the body-size limit never has more members than body bytes / this.
SMALLEST_MEMBER_BYTES = 48

# PostgreSQL refuses a B-tree index entry over 2,704 bytes (a third of an 8 KiB page, less its
# headers). The longest indexed entry is an attribute name of up to 64 bytes plus a folded value
# (ix_user_values_attribute_value_key); this keeps both, with their headers, below that bound.
INDEXABLE_STRING_BYTES = 2_560


@dataclass(frozen=True)
class Limits:
    body_bytes: int = DEFAULT_BODY_BYTES
    # A filter: characters, nesting of ( ) [ ] and not(...), and comparisons (RFC 7644 §3.4.2.2).
    # 256 terms allow `id eq "..." or ...` over 256 ids; 32 levels are beyond any real filter.
    filter_chars: int = 16_384
    filter_depth: int = 32
    filter_terms: int = 256
    # One string value, in UTF-8 bytes, both as sent and case-folded (folding can triple them).
    string_bytes: int = 2_048
    # Operations in one PatchOp. Okta and Entra ID send tens; 1,000 still runs in well under a
    # second on a 100,000-member group (benchmarks/hostile_patch.py).
    patch_operations: int = 1_000
    # Member values in one request (POST, PUT or all PATCH operations together). By default as
    # many as fit in the body, so that an Okta full-list PUT of a large group always passes.
    members: int = DEFAULT_BODY_BYTES // SMALLEST_MEMBER_BYTES
    # Nesting of a JSON body: a SCIM resource is at most four levels deep (a PatchOp's value
    # holding an extension's complex attribute); a deeper body is no SCIM request.
    json_depth: int = 32
    # A Bulk request (RFC 7644 §3.7.4), advertised in /ServiceProviderConfig: its operations,
    # and its size, which is at most body_bytes (and nginx's client_max_body_size, deploy/).
    # 2,000 operations: a directory of 1,000 users and a group holding them all in one request.
    bulk_operations: int = 2_000
    bulk_payload_bytes: int = DEFAULT_BODY_BYTES

    def to_openapi(self) -> dict[str, int]:
        """The limits as the OpenAPI document's `x-scim-limits` extension lists them."""
        return {
            "maxBodyBytes": self.body_bytes,
            "maxFilterCharacters": self.filter_chars,
            "maxFilterDepth": self.filter_depth,
            "maxFilterTerms": self.filter_terms,
            "maxStringBytes": self.string_bytes,
            "maxPatchOperations": self.patch_operations,
            "maxMembersPerRequest": self.members,
            "maxJsonDepth": self.json_depth,
            "maxBulkOperations": self.bulk_operations,
            "maxBulkPayloadBytes": self.bulk_payload_bytes,
        }


DEFAULT_LIMITS = Limits()
