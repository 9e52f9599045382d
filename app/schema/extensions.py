"""Admin-declared schema extensions: RFC 7643 §7 JSON -> the registry's own types.

The file holds one schema object or a list of them, each written as /Schemas publishes a
schema (`id`, `name`, `description`, `attributes`), plus an optional `resourceType` ("User",
the default). Every problem is reported with where it is, so start-up can stop with it.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from app.schema import Attribute, Schema

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # RFC 7643 §2.1 ATTRNAME
URN = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9()+,\-.:=@;$_!*'%/?#]+$")
SCHEMA_KEYS = {"id", "name", "description", "attributes", "resourceType", "schemas", "meta"}
ATTRIBUTE_KEYS = {
    "name", "type", "multiValued", "description", "required", "canonicalValues", "caseExact",
    "mutability", "returned", "uniqueness", "referenceTypes", "subAttributes",
}  # fmt: skip


Choice = TypeVar("Choice", bound=StrEnum)


class ExtensionError(ValueError):
    """A declaration that cannot be used; the message says where and why."""


def load(path: str | Path, *, reserved: set[str]) -> tuple[Schema, ...]:
    """Read and check a declaration file; `reserved` holds the URNs already in the registry."""
    where = str(path)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ExtensionError(f"{where}: cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise ExtensionError(f"{where}: not valid JSON ({e})") from None
    declarations = raw if isinstance(raw, list) else [raw]
    schemas = []
    seen = {urn.lower() for urn in reserved}
    for index, declaration in enumerate(declarations):
        schema = _schema(declaration, f"{where}: schema {index + 1}")
        if schema.id.lower() in seen:
            raise ExtensionError(f"{where}: schema {index + 1}: {schema.id} is declared twice")
        seen.add(schema.id.lower())
        schemas.append(schema)
    return tuple(schemas)


def _schema(raw: Any, where: str) -> Schema:
    if not isinstance(raw, dict):
        raise ExtensionError(f"{where}: must be a JSON object")
    _no_unknown_keys(raw, SCHEMA_KEYS, where)
    urn = raw.get("id")
    if not isinstance(urn, str) or not URN.match(urn):
        raise ExtensionError(f"{where}: id must be a schema URN (urn:...), got {urn!r}")
    where = f"{where} ({urn})"
    if raw.get("resourceType", "User") != "User":
        raise ExtensionError(f'{where}: resourceType must be "User" (only users take extensions)')
    attributes = raw.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise ExtensionError(f"{where}: attributes must be a non-empty list")
    parsed = tuple(_attribute(a, f"{where}: attributes[{i}]") for i, a in enumerate(attributes))
    _unique_names(parsed, where)
    name = raw.get("name", urn.rsplit(":", 1)[-1])
    description = raw.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise ExtensionError(f"{where}: name and description must be strings")
    return Schema(urn, name, description, parsed)


def _attribute(raw: Any, where: str, *, sub: bool = False) -> Attribute:
    if not isinstance(raw, dict):
        raise ExtensionError(f"{where}: must be a JSON object")
    _no_unknown_keys(raw, ATTRIBUTE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
        raise ExtensionError(f"{where}: name must match {ATTRIBUTE_NAME.pattern}, got {name!r}")
    where = f"{where} ({name})"
    kind = _choice(raw, "type", Attribute.Type.STRING, where)
    binary = kind == Attribute.Type.BINARY
    if binary and raw.get("multiValued"):
        raise ExtensionError(f"{where}: multi-valued binary attributes are not supported")
    uniqueness = _choice(raw, "uniqueness", Attribute.Uniqueness.NONE, where)
    if uniqueness != Attribute.Uniqueness.NONE:
        # Only the core attributes the store indexes (userName, a group's displayName) are kept
        # unique; /Schemas promising it for an extension attribute would be a lie.
        raise ExtensionError(f'{where}: uniqueness must be "none", got {uniqueness.value!r}')
    # RFC 7643 §2.3.6: "A binary is case exact", so caseExact defaults to true for one.
    case_exact = _flag(raw, "caseExact", where, default=binary)
    if binary and not case_exact:
        raise ExtensionError(f"{where}: a binary attribute is case exact (RFC 7643 §2.3.6)")
    subs: tuple[Attribute, ...] = ()
    if kind == Attribute.Type.COMPLEX:
        if sub:
            raise ExtensionError(f"{where}: a sub-attribute cannot be complex (RFC 7643 §2.3.8)")
        raw_subs = raw.get("subAttributes")
        if not isinstance(raw_subs, list) or not raw_subs:
            raise ExtensionError(f"{where}: a complex attribute needs subAttributes")
        subs = tuple(
            _attribute(s, f"{where}: subAttributes[{i}]", sub=True) for i, s in enumerate(raw_subs)
        )
        _unique_names(subs, where)
    elif "subAttributes" in raw:
        raise ExtensionError(f"{where}: only complex attributes have subAttributes")
    return Attribute(
        name,
        type=kind,
        multi_valued=_flag(raw, "multiValued", where),
        required=_flag(raw, "required", where),
        case_exact=case_exact,
        mutability=_choice(raw, "mutability", Attribute.Mutability.READ_WRITE, where),
        returned=_choice(raw, "returned", Attribute.Returned.DEFAULT, where),
        description=_text(raw, "description", where),
        canonical_values=_strings(raw, "canonicalValues", where),
        reference_types=_strings(raw, "referenceTypes", where),
        sub_attributes=subs,
    )


def _no_unknown_keys(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExtensionError(f"{where}: unknown key {unknown[0]!r}")


def _unique_names(attributes: tuple[Attribute, ...], where: str) -> None:
    seen: set[str] = set()
    for attribute in attributes:
        if attribute.name.lower() in seen:
            raise ExtensionError(f"{where}: attribute {attribute.name!r} is declared twice")
        seen.add(attribute.name.lower())


def _flag(raw: dict[str, Any], key: str, where: str, *, default: bool = False) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ExtensionError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, default: Choice, where: str) -> Choice:
    """A characteristic in RFC 7643 §7's exact spelling: one of the members of `default`'s enum."""
    allowed = type(default)
    value = raw.get(key, default)
    try:
        return allowed(value)
    except ValueError:
        raise ExtensionError(
            f"{where}: {key} must be one of {', '.join(allowed)}; got {value!r}"
        ) from None


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ExtensionError(f"{where}: {key} must be a string")
    return value


def _strings(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExtensionError(f"{where}: {key} must be a list of strings")
    return tuple(value)
