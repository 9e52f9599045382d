"""Every string and the nesting of a request's JSON, checked once before anything reads them.

A JSON body may hold text no database can store: a lone UTF-16 surrogate (`"\\ud800"` is valid
JSON, but no Unicode scalar value, so the driver cannot encode it) or NUL (PostgreSQL's text
cannot hold it). It may hold strings longer than an index entry, or nest deeper than the
validators expect. All of that is refused here with a SCIM error naming where it was found,
so that validation, PATCH, the audit and error messages only ever see storable text.
"""

from __future__ import annotations

from typing import Any

from app.errors import InvalidSyntax, InvalidValue
from app.limits import Limits


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None: a lone surrogate or a NUL character."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode: it holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
    return None


def check_string(text: str, where: str | Location, limits: Limits) -> None:
    """One string value: storable, and within SCIM_MAX_STRING_BYTES as sent and case-folded."""
    if text.isascii():  # most strings: no surrogate, and folding keeps the length
        size = len(text)
        if "\x00" in text:
            raise InvalidValue(f"{_named(where)} must not contain NUL characters")
    elif problem := text_problem(text):
        raise InvalidValue(f"{_named(where)} {problem}")
    else:
        size = len(text.encode("utf-8"))
        # Case folding at most triples the UTF-8 length ("ΐ" is 2 bytes, folded 6), so the
        # folded form needs counting only when it could exceed the limit.
        if size * 3 > limits.string_bytes:
            size = max(size, len(text.casefold().encode("utf-8")))
    if size > limits.string_bytes:
        raise InvalidValue(
            f"{_named(where)} is {size} bytes long in UTF-8 (or case-folded); at most "
            f"{limits.string_bytes} are accepted (SCIM_MAX_STRING_BYTES)"
        )


# Where a value sits in the body, kept as (parent, step) links and spelled out only for an
# error message: a 20,000-member list costs no 20,000 location strings.
Location = tuple["Location | None", str] | None


def check_body(body: Any, limits: Limits, *, skip: frozenset[str] = frozenset()) -> None:
    """Walk a parsed JSON body: every key and string storable and short enough, nesting bounded.

    `skip`: top-level keys checked elsewhere by rules of their own (a SearchRequest's filter).
    Iterative, so that no nesting depth can exhaust the stack.
    """
    pending: list[tuple[Any, Location, int]] = [(body, None, 0)]
    while pending:
        value, where, depth = pending.pop()
        if isinstance(value, str):
            check_string(value, where, limits)
        elif isinstance(value, dict | list):
            if depth >= limits.json_depth:
                raise InvalidSyntax(
                    f"The request body nests deeper than {limits.json_depth} levels"
                )
            if isinstance(value, list):
                pending.extend((item, (where, f"[{i}]"), depth + 1) for i, item in enumerate(value))
                continue
            path = _patch_path(value)
            for key, item in value.items():
                if problem := text_problem(key):
                    raise InvalidValue(f"An attribute name in the request body {problem}")
                if depth == 0 and key in skip:
                    continue
                step = f" ({path})" if path is not None and key.lower() == "value" else f".{key}"
                pending.append((item, (where, step), depth + 1))


def _named(where: str | Location) -> str:
    """`emails[0].value`, `Operations[0] (name.familyName)`: a location as a client reads it."""
    if isinstance(where, str):
        return where
    steps: list[str] = []
    while where is not None:
        where, step = where
        steps.append(step)
    return "".join(reversed(steps)).lstrip(".") or "The request body"


def _patch_path(value: dict[str, Any]) -> str | None:
    """The path of a PATCH operation (an object with `op`), to name its value by."""
    if not any(key.lower() == "op" for key in value):
        return None
    path = next((v for k, v in value.items() if k.lower() == "path"), None)
    if not isinstance(path, str) or text_problem(path) is not None:
        return None
    return path if len(path) <= 100 else path[:100] + "..."
