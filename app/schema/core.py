"""User, EnterpriseUser and Group exactly as RFC 7643 §4 and §8.7.1 declare them."""

from __future__ import annotations

from dataclasses import dataclass

from app.schema import Attribute, ResourceType, Schema, complex_

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _multi(name: str, description: str, *, value: Attribute, types: tuple[str, ...]) -> Attribute:
    """The value/display/type/primary shape shared by emails, phoneNumbers, ims and the rest."""
    return complex_(
        name,
        value,
        Attribute("display", description="A human-readable name, primarily used for display."),
        Attribute("type", canonical_values=types, description="A label indicating the function."),
        Attribute("primary", type="boolean", description="The preferred value; at most one."),
        multi_valued=True,
        description=description,
    )


# RFC 7643 §3.1: present on every resource, declared outside the resource schemas.
COMMON_ATTRIBUTES = (
    Attribute(
        "id",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
        description="Unique identifier assigned by the service provider.",
    ),
    Attribute("externalId", case_exact=True, description="Identifier assigned by the client."),
    complex_(
        "meta",
        # serialize.project keeps meta.resourceType whatever attributes/excludedAttributes say.
        Attribute("resourceType", case_exact=True, mutability="readOnly", returned="always"),
        Attribute("created", type="dateTime", mutability="readOnly"),
        Attribute("lastModified", type="dateTime", mutability="readOnly"),
        Attribute("location", type="reference", reference_types=("uri",), mutability="readOnly"),
        Attribute("version", case_exact=True, mutability="readOnly"),
        mutability="readOnly",
        description="Resource metadata.",
    ),
)

USER = Schema(
    USER_URN,
    "User",
    "User Account",
    (
        Attribute(
            "userName",
            required=True,
            uniqueness="server",
            description="Unique identifier for the User, typically used to sign in.",
        ),
        complex_(
            "name",
            Attribute("formatted", description="The full name, formatted for display."),
            Attribute("familyName", description="The family name, or last name."),
            Attribute("givenName", description="The given name, or first name."),
            Attribute("middleName", description="The middle name(s)."),
            Attribute("honorificPrefix", description="Honorific prefix, e.g. 'Ms.'."),
            Attribute("honorificSuffix", description="Honorific suffix, e.g. 'III'."),
            description="The components of the user's real name.",
        ),
        Attribute("displayName", description="The name of the User, suitable for display."),
        Attribute("nickName", description="The casual way to address the user."),
        Attribute(
            "profileUrl",
            type="reference",
            reference_types=("external",),
            description="A URI of an online profile.",
        ),
        Attribute("title", description="The user's title, such as 'Vice President'."),
        Attribute("userType", description="The relationship between organization and user."),
        Attribute("preferredLanguage", description="Preferred language (RFC 7231 §5.3.5)."),
        Attribute("locale", description="Default location, e.g. 'en-US'."),
        Attribute("timezone", description="Time zone in IANA format, e.g. 'Europe/Paris'."),
        Attribute("active", type="boolean", description="The user's administrative status."),
        Attribute(
            "password",
            mutability="writeOnly",
            returned="never",
            description="The user's clear-text password; stored hashed, never returned.",
        ),
        _multi(
            "emails",
            "Email addresses for the user.",
            value=Attribute("value", description="Email address."),
            types=("work", "home", "other"),
        ),
        _multi(
            "phoneNumbers",
            "Phone numbers for the user.",
            value=Attribute("value", description="Phone number."),
            types=("work", "home", "mobile", "fax", "pager", "other"),
        ),
        _multi(
            "ims",
            "Instant messaging addresses for the user.",
            value=Attribute("value", description="Instant messaging address."),
            types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        _multi(
            "photos",
            "URLs of images of the user.",
            value=Attribute(
                "value",
                type="reference",
                reference_types=("external",),
                description="URL of a photo.",
            ),
            types=("photo", "thumbnail"),
        ),
        complex_(
            "addresses",
            Attribute("formatted", description="The full mailing address."),
            Attribute("streetAddress", description="The full street address."),
            Attribute("locality", description="The city or locality."),
            Attribute("region", description="The state or region."),
            Attribute("postalCode", description="The zip code or postal code."),
            Attribute("country", description="The country name (ISO 3166-1 alpha-2)."),
            Attribute("type", canonical_values=("work", "home", "other")),
            Attribute("primary", type="boolean"),
            multi_valued=True,
            description="A physical mailing address for this user.",
        ),
        complex_(
            "groups",
            Attribute("value", mutability="readOnly", description="The id of the group."),
            Attribute(
                "$ref",
                type="reference",
                reference_types=("User", "Group"),
                mutability="readOnly",
                description="The URI of the group.",
            ),
            Attribute("display", mutability="readOnly", description="The group's displayName."),
            Attribute("type", canonical_values=("direct", "indirect"), mutability="readOnly"),
            multi_valued=True,
            mutability="readOnly",
            description="The groups the user belongs to; managed through the Group resource.",
        ),
        _multi(
            "entitlements",
            "A list of entitlements for the user.",
            value=Attribute("value", description="The value of an entitlement."),
            types=(),
        ),
        _multi(
            "roles",
            "A list of roles for the user.",
            value=Attribute("value", description="The value of a role."),
            types=(),
        ),
        _multi(
            "x509Certificates",
            "A list of certificates issued to the user.",
            # RFC 7643 §2.3.6: "A binary is case exact" (§8.7.1's listing says false, but
            # filters compare the base64 as written).
            value=Attribute(
                "value", type="binary", case_exact=True, description="DER certificate, base64."
            ),
            types=(),
        ),
    ),
)

ENTERPRISE_USER = Schema(
    ENTERPRISE_USER_URN,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber", description="Identifier assigned by the organization."),
        Attribute("costCenter", description="Name of a cost center."),
        Attribute("organization", description="Name of an organization."),
        Attribute("division", description="Name of a division."),
        Attribute("department", description="Name of a department."),
        complex_(
            "manager",
            Attribute("value", description="The id of the SCIM resource of the manager."),
            Attribute(
                "$ref",
                type="reference",
                reference_types=("User",),
                description="The URI of the manager's User resource.",
            ),
            Attribute("displayName", mutability="readOnly", description="The manager's name."),
            description="The user's manager.",
        ),
    ),
)

GROUP = Schema(
    GROUP_URN,
    "Group",
    "Group",
    (
        # RFC 7643 §8.7.1 lists uniqueness "none"; this service keeps displayName unique among
        # live groups, case-insensitively (uq_groups_live_display_name), and says so (§7).
        Attribute(
            "displayName",
            required=True,
            uniqueness="server",
            description="A human-readable name for the Group.",
        ),
        complex_(
            "members",
            # store/groups.py refuses a member without a value (§8.7.1 lists it as optional).
            Attribute(
                "value",
                required=True,
                mutability="immutable",
                description="The id of the member.",
            ),
            Attribute(
                "$ref",
                type="reference",
                reference_types=("User", "Group"),
                mutability="immutable",
                description="The URI of the member resource.",
            ),
            Attribute("display", mutability="readOnly", description="The member's name."),
            Attribute("type", canonical_values=("User", "Group"), mutability="immutable"),
            multi_valued=True,
            description="A list of members of the Group.",
        ),
    ),
)

GROUP_RESOURCE = ResourceType("Group", "/Groups", "Group", GROUP, common=COMMON_ATTRIBUTES)


@dataclass(frozen=True)
class Registry:
    """The resource types one deployment serves: the User schema, its extensions, Group."""

    user: ResourceType
    group: ResourceType

    @property
    def resource_types(self) -> tuple[ResourceType, ...]:
        return (self.user, self.group)

    @property
    def schemas(self) -> tuple[Schema, ...]:
        return (*self.user.schemas, self.group.schema)


def build_registry(extensions: tuple[Schema, ...] = ()) -> Registry:
    """The registry with admin-declared User extensions (schema/extensions.py) added."""
    user = ResourceType(
        "User",
        "/Users",
        "User Account",
        USER,
        extensions=(ENTERPRISE_USER, *extensions),
        common=COMMON_ATTRIBUTES,
    )
    return Registry(user, GROUP_RESOURCE)


# Core and enterprise only: what a deployment without extensions serves, and what code that
# needs no extension (benchmarks, migrations) may use.
DEFAULT_REGISTRY = build_registry()
USER_RESOURCE = DEFAULT_REGISTRY.user
