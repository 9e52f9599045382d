"""A condition's shape and values apart: conditions that differ only in their values share a
shape, and a statement built once for the shape runs each of them with their values as
parameters (store/pages.py, for a filter's page).

A shape is SQLAlchemy's own cache key of the condition, which it computes to find a compiled
statement: equal keys mean the same SQL, the parameters in the same order. Its parameters
(BindParameter) are renamed by position, required (a value missing raises instead of reusing
the first condition's), and the values of a later condition given by those names.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

_PREFIX = "_shape_"


@dataclass(frozen=True)
class Shape:
    key: Hashable
    values: dict[str, Any]  # by the names `named` gives the parameters


def shape_of(condition: ColumnElement[Any]) -> tuple[Shape, list[BindParameter[Any]]] | None:
    """The condition's shape, and its parameters in the order of the shape (for `named`);
    None for a condition SQLAlchemy cannot key (none of ours)."""
    key = condition._generate_cache_key()
    if key is None:
        return None
    parameters = key.bindparams
    # A parameter can occur more than once: its first position names it. Which positions share
    # one is part of the shape, so that values never land on another condition's sharing.
    first: dict[int, int] = {}
    positions = tuple(first.setdefault(id(p), n) for n, p in enumerate(parameters))
    values = {
        f"{_PREFIX}{position}": parameter.effective_value
        for position, parameter in zip(positions, parameters, strict=True)
    }
    return Shape((key.key, positions), values), parameters


def named(condition: ColumnElement[Any], parameters: list[BindParameter[Any]]) -> Any:
    """The condition with each of `parameters` (as shape_of gave them) renamed by its first
    position and stripped of its value."""
    names: dict[int, str] = {}
    for n, parameter in enumerate(parameters):
        names.setdefault(id(parameter), f"{_PREFIX}{n}")

    def rename(element: Any) -> Any:
        if isinstance(element, BindParameter) and id(element) in names:
            return bindparam(
                names[id(element)],
                type_=element.type,
                expanding=element.expanding,
                required=True,
            )
        return None  # keep the element, look inside

    return visitors.replacement_traverse(condition, {}, rename)
