"""The schema registry's types (RFC 7643 §2, §6, §7) and attribute lookups.

Everything that knows an attribute's name, type or characteristics reads it from here:
validation, serialization, filters, PATCH and the discovery endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 date-time (`dateTime`, RFC 7643 §2.3.5); ValueError names what is wrong."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("needs a time zone offset")
    return parsed


@dataclass(frozen=True)
class Attribute:
    """One attribute definition; unstated characteristics take RFC 7643 §2.2's defaults.

    `type`, `mutability`, `returned` and `uniqueness` may be given as members or in RFC 7643 §7's
    spelling ("readOnly"); either way the attribute holds members, and a value not in the list
    raises ValueError naming the attribute, so a typo stops the registry from being built.
    """

    class Type(StrEnum):
        """RFC 7643 §2.3's data types."""

        STRING = "string"
        BOOLEAN = "boolean"
        DECIMAL = "decimal"
        INTEGER = "integer"
        DATE_TIME = "dateTime"
        REFERENCE = "reference"
        COMPLEX = "complex"
        BINARY = "binary"

    class Mutability(StrEnum):
        """RFC 7643 §7 `mutability`."""

        READ_ONLY = "readOnly"
        READ_WRITE = "readWrite"
        IMMUTABLE = "immutable"
        WRITE_ONLY = "writeOnly"

    class Returned(StrEnum):
        """RFC 7643 §7 `returned`."""

        ALWAYS = "always"
        NEVER = "never"
        DEFAULT = "default"
        REQUEST = "request"

    class Uniqueness(StrEnum):
        """RFC 7643 §7 `uniqueness`."""

        NONE = "none"
        SERVER = "server"
        GLOBAL = "global"

    name: str
    type: Type = Type.STRING
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: Mutability = Mutability.READ_WRITE
    returned: Returned = Returned.DEFAULT
    uniqueness: Uniqueness = Uniqueness.NONE
    description: str = ""
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        for key, allowed in (
            ("type", Attribute.Type),
            ("mutability", Attribute.Mutability),
            ("returned", Attribute.Returned),
            ("uniqueness", Attribute.Uniqueness),
        ):
            value = getattr(self, key)
            try:
                member = allowed(value)
            except ValueError:
                raise ValueError(
                    f"attribute {self.name!r}: {key} must be one of {', '.join(allowed)}; "
                    f"got {value!r}"
                ) from None
            object.__setattr__(self, key, member)  # frozen: replace the spelling by its member
        if self.type == Attribute.Type.BINARY and (
            not self.case_exact or self.uniqueness != Attribute.Uniqueness.NONE
        ):
            # RFC 7643 §2.3.6: "A binary is case exact and has no uniqueness"; filters compare
            # base64 as written, so /Schemas must not advertise caseExact false for one.
            raise ValueError(
                f"attribute {self.name!r}: a binary attribute is case exact and has no "
                "uniqueness (RFC 7643 §2.3.6)"
            )
        if self.sub_attributes and self.type != Attribute.Type.COMPLEX:
            raise ValueError(
                f"attribute {self.name!r}: only a complex attribute has sub-attributes"
            )

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called `name`; attribute names are case-insensitive (RFC 7643 §2.1)."""
        wanted = name.lower()
        return next((a for a in self.sub_attributes if a.name.lower() == wanted), None)

    @property
    def is_complex(self) -> bool:
        return self.type == Attribute.Type.COMPLEX

    @property
    def writable(self) -> bool:
        return self.mutability != Attribute.Mutability.READ_ONLY

    def to_scim(self) -> dict[str, object]:
        """The attribute as /Schemas publishes it (RFC 7643 §7)."""
        out: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
        }
        if self.is_complex:
            out["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        else:
            out["caseExact"] = self.case_exact
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        out.update(mutability=self.mutability, returned=self.returned, uniqueness=self.uniqueness)
        return out


def complex_(name: str, *subs: Attribute, **characteristics: object) -> Attribute:
    return Attribute(name, type=Attribute.Type.COMPLEX, sub_attributes=subs, **characteristics)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        wanted = name.lower()
        return next((a for a in self.attributes if a.name.lower() == wanted), None)

    def to_scim(self, base_url: str) -> dict[str, object]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


@dataclass(frozen=True)
class Resolved:
    """A parsed attribute path: which schema, which attribute, optionally which sub-attribute."""

    schema: Schema | None  # None for the common attributes id, externalId, meta
    attribute: Attribute
    sub_attribute: Attribute | None = None

    @property
    def leaf(self) -> Attribute:
        return self.sub_attribute or self.attribute

    @property
    def name(self) -> str:
        """Short dotted name, for messages and lookups: `name.givenName`, `department`."""
        if self.sub_attribute is None:
            return self.attribute.name
        return f"{self.attribute.name}.{self.sub_attribute.name}"


@dataclass(frozen=True)
class ResourceType:
    id: str
    endpoint: str
    description: str
    schema: Schema
    extensions: tuple[Schema, ...] = field(default=())
    common: tuple[Attribute, ...] = field(default=())

    @property
    def schemas(self) -> tuple[Schema, ...]:
        return (self.schema, *self.extensions)

    def extension(self, urn: str) -> Schema | None:
        return next((s for s in self.extensions if s.id.lower() == urn.lower()), None)

    def common_attribute(self, name: str) -> Attribute | None:
        wanted = name.lower()
        return next((a for a in self.common if a.name.lower() == wanted), None)

    def resolve(self, path: str) -> Resolved | None:
        """Resolve `userName`, `name.givenName` or a URN-qualified path; None when unknown."""
        schema, rest = self._split_urn(path)
        if schema is None and rest is None:
            return None
        head, _, sub = rest.partition(".")
        if schema is None:
            attribute = self.common_attribute(head)
            if attribute is not None:
                return self._with_sub(None, attribute, sub)
            schema = self.schema
        attribute = schema.attribute(head)
        if attribute is None:
            return None
        return self._with_sub(schema, attribute, sub)

    def _split_urn(self, path: str) -> tuple[Schema | None, str | None]:
        lowered = path.lower()
        for schema in self.schemas:
            prefix = schema.id.lower() + ":"
            if lowered.startswith(prefix):
                return schema, path[len(prefix) :]
        if lowered.startswith("urn:"):
            return None, None  # a URN we do not know
        return None, path

    @staticmethod
    def _with_sub(schema: Schema | None, attribute: Attribute, sub: str) -> Resolved | None:
        if not sub:
            return Resolved(schema, attribute)
        sub_attribute = attribute.sub(sub)
        if sub_attribute is None:
            return None
        return Resolved(schema, attribute, sub_attribute)

    def to_scim(self, base_url: str) -> dict[str, object]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.id,
            "name": self.id,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [{"schema": s.id, "required": False} for s in self.extensions],
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base_url}/ResourceTypes/{self.id}",
            },
        }
