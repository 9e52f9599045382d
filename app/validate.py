"""Request JSON -> checked, canonical Python values, driven by the schema registry.

The canonical document that store/ keeps uses each attribute's declared name (input names are
case-insensitive, RFC 7643 §2.1), holds core attributes at the top level and extension attributes
under their schema URN, and drops what the client may not write (readOnly, `schemas`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidSyntax, InvalidValue, Mutability
from app.schema import Attribute, ResourceType, parse_datetime
from app.schema.core import GROUP_URN

Document = dict[str, Any]

# Schema URNs a request body may list for a resource type without their being schemas of ours:
# accepted, then dropped with the rest of `schemas` (the registry says what a response lists).
IGNORED_SCHEMAS: dict[str, tuple[str, ...]] = {
    # Entra ID's tutorial Group bodies carry Microsoft's legacy Group schema beside the core one.
    GROUP_URN: ("http://schemas.microsoft.com/2006/11/resourcemanagement/adscim/2.0/group",),
}


@dataclass(frozen=True)
class Validated:
    document: Document
    password: str | None  # writeOnly: kept out of the document, hashed by the store


def resource(rt: ResourceType, body: dict[str, Any]) -> Validated:
    """Check a full resource body (POST, PUT, or a document after PATCH)."""
    _check_schemas(rt, body)
    document: Document = {}
    password: str | None = None
    for key, value in body.items():
        if key.lower() == "schemas":
            continue
        extension = rt.extension(key)
        if extension is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidValue(f"{extension.id} must be an object")
            checked = _attributes(value, extension.attributes, prefix=f"{extension.id}:")
            if checked:
                _check_required_in(extension.attributes, checked, prefix=f"{extension.id}:")
                document[extension.id] = checked
            continue
        common = rt.common_attribute(key)
        if common is not None:
            if common.writable and value is not None:
                document[common.name] = _value(common, value, common.name)
            continue
        attribute = rt.schema.attribute(key)
        if attribute is None and key.lower().startswith("urn:"):
            raise InvalidValue(
                f"Unknown schema {key!r}: declare it in SCIM_SCHEMA_EXTENSIONS to use it"
            )
        if attribute is None:
            raise InvalidSyntax(f"Unknown attribute '{key}' for resource type {rt.id}")
        if not attribute.writable or value is None:
            continue  # RFC 7644 §3.3: readOnly values sent by a client are ignored
        if attribute.mutability == "writeOnly" and attribute.name == "password":
            if not isinstance(value, str) or not value:
                raise InvalidValue("password must be a non-empty string")
            password = value
            continue
        checked_value = _value(attribute, value, attribute.name)
        if checked_value is not None:
            document[attribute.name] = checked_value
    _check_required(rt, document)
    return Validated(document, password)


def value(attribute: Attribute, raw: Any, where: str) -> Any:
    """Check one attribute's value (a PATCH operand, say) without a whole resource around it."""
    return _value(attribute, raw, where)


def check_immutable(rt: ResourceType, before: Document, after: Document) -> None:
    """RFC 7643 §2.2: an immutable attribute may be set once, never changed afterwards."""
    for schema in rt.schemas:
        old = before if schema is rt.schema else before.get(schema.id, {})
        new = after if schema is rt.schema else after.get(schema.id, {})
        for attribute in schema.attributes:
            if attribute.mutability != "immutable":
                continue
            if attribute.name in old and new.get(attribute.name) != old[attribute.name]:
                raise Mutability(f"{attribute.name} is immutable and already set")


def _check_schemas(rt: ResourceType, body: dict[str, Any]) -> None:
    schemas = next((v for k, v in body.items() if k.lower() == "schemas"), None)
    if schemas is None:
        return  # tolerated: several IdPs omit it on PUT; the endpoint says what the resource is
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntax("schemas must be a list of schema URNs")
    if rt.schema.id.lower() not in (s.lower() for s in schemas):
        raise InvalidSyntax(f"schemas must include {rt.schema.id}")
    known = {schema.id.lower() for schema in rt.schemas}
    ignored = IGNORED_SCHEMAS.get(rt.schema.id, ())
    for urn in schemas:
        if urn.lower() not in known and urn.lower() not in ignored:
            raise InvalidValue(
                f"Unknown schema {urn!r}: declare it in SCIM_SCHEMA_EXTENSIONS to use it"
            )


def _check_required_in(attributes: tuple[Attribute, ...], values: Document, prefix: str) -> None:
    """An extension's required attributes, once the resource carries that extension at all."""
    for attribute in attributes:
        if attribute.required and attribute.writable and attribute.name not in values:
            raise InvalidValue(f"{prefix}{attribute.name} is required")


def _check_required(rt: ResourceType, document: Document) -> None:
    for attribute in rt.schema.attributes:
        if attribute.required and attribute.writable and attribute.name not in document:
            raise InvalidValue(f"{attribute.name} is required")
        # A required attribute set to "" is as unusable as a missing one: a PATCH replacing
        # userName with "" would leave a user nobody can look up or sign in as.
        if attribute.required and document.get(attribute.name) == "":
            raise InvalidValue(f"{attribute.name} must not be empty")


def _attributes(obj: dict[str, Any], attributes: tuple[Attribute, ...], *, prefix: str) -> Document:
    out: Document = {}
    by_name = {a.name.lower(): a for a in attributes}
    for key, value in obj.items():
        attribute = by_name.get(key.lower())
        if attribute is None:
            raise InvalidSyntax(f"Unknown attribute '{prefix}{key}'")
        if not attribute.writable or value is None:
            continue
        checked = _value(attribute, value, f"{prefix}{attribute.name}")
        if checked is not None:
            out[attribute.name] = checked
    return out


def _value(attribute: Attribute, value: Any, where: str) -> Any:
    if attribute.multi_valued:
        if not isinstance(value, list):
            raise InvalidValue(f"{where} must be a list")
        items = [_single(attribute, item, where) for item in value if item is not None]
        items = [item for item in items if item not in (None, {})]
        if sum(1 for item in items if isinstance(item, dict) and item.get("primary")) > 1:
            raise InvalidValue(f"{where} may have at most one primary value (RFC 7643 §2.4)")
        return items or None
    return _single(attribute, value, where)


def _single(attribute: Attribute, value: Any, where: str) -> Any:
    if attribute.is_complex:
        value = _lenient_complex(attribute, value)
        if not isinstance(value, dict):
            raise InvalidValue(f"{where} must be an object")
        return _attributes(value, attribute.sub_attributes, prefix=f"{where}.") or None
    checker = _CHECKERS[attribute.type]
    return checker(value, where)


def _lenient_complex(attribute: Attribute, value: Any) -> Any:
    # Entra ID sends the enterprise manager as a bare id string; RFC form is {"value": id}.
    if isinstance(value, str) and attribute.sub("value") is not None:
        return {"value": value}
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{where} must be a string")
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text; no identity attribute legitimately holds one.
        raise InvalidValue(f"{where} must not contain NUL characters")
    return value


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    # Entra ID (without the aadOptscim062020 flag) sends booleans as "True" / "False".
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidValue(f"{where} must be a boolean")


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{where} must be an integer")
    return value


def _decimal(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{where} must be a number")
    return value


def _date_time(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{where} must be an RFC 3339 date-time string")
    try:
        parse_datetime(value)
    except ValueError:
        raise InvalidValue(
            f"{where} must be an RFC 3339 date-time with a time zone offset, got {value!r}"
        ) from None
    return value


def _binary(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{where} must be a base64 string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"{where} must be valid base64") from None
    return value


_CHECKERS = {
    "string": _string,
    "reference": _string,
    "boolean": _boolean,
    "integer": _integer,
    "decimal": _decimal,
    "dateTime": _date_time,
    "binary": _binary,
}
