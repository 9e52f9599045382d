"""Imports point one way (README, Architecture): a test that fails when one goes the wrong way.

Every module under app/ is read with `ast`, never imported, so every import counts: at the top,
inside a function, under `if TYPE_CHECKING`. The layers and the rules below are the README's
section as data; change them together.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FACTORY = "app"  # app/__init__.py: create_app wires every layer together, so it may import any


@dataclass(frozen=True)
class Import:
    target: str  # an app module, or an outside name as written: "sqlalchemy.select"
    line: int


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # relative to the repository, for messages
    is_package: bool
    imports: tuple[Import, ...]
    declares_blueprint: bool


# Top to bottom; a module may import its own layer and those below it, never one above.
# A name covers its package's modules: "app.store" is app/store/*.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", (FACTORY, "app.cli", "app.worker")),
    ("views", ("app.api", "app.console")),
    (
        "HTTP edge",
        ("app.protocol", "app.auth", "app.requests", "app.ratelimit", "app.audit", "app.metrics"),
    ),
    ("store", ("app.store",)),
    (
        "engine",
        (
            "app.filters",
            "app.patch",
            "app.bulk",
            "app.validate",
            "app.serialize",
            "app.paging",
            "app.intake",
            "app.openapi",
            "app.sets",
        ),
    ),
    ("database", ("app.db", "app.models", "app.writer_queue")),
    (
        "registry and values",
        (
            "app.schema",
            "app.fold",
            "app.projection",
            "app.etags",
            "app.limits",
            "app.config",
            "app.tenancy",
        ),
    ),
    ("errors", ("app.errors",)),
)


def read(path: Path, name: str, known: set[str], shown_as: str) -> Module:
    """What one source file imports, wherever in the file the import statement stands."""
    tree = ast.parse(path.read_text(), filename=shown_as)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    bound: dict[str, str] = {}  # `import flask` binds flask: flask.request counts as an import
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(_app_module(alias.name, known), node.lineno))
                if alias.asname:  # import a.b as c: c.x is a.b.x
                    bound[alias.asname] = alias.name
                else:  # import a.b: a.x is a.x
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if _within(base, FACTORY):  # a submodule by name, or a name in the module
                    target = target if target in known else _app_module(base, known)
                found.append(Import(target, node.lineno))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
        ):
            found.append(Import(f"{bound[node.value.id]}.{node.attr}", node.lineno))
    blueprint = any(
        isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "Blueprint"
        for node in ast.walk(tree)
    )
    return Module(name, shown_as, is_package, tuple(found), blueprint)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _app_module(name: str, known: set[str]) -> str:
    """`import app.store.users.x`: the longest part that is a module of ours."""
    while _within(name, FACTORY) and name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _load() -> dict[str, Module]:
    paths = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(paths)
    return {
        name: read(path, name, known, str(path.relative_to(ROOT))) for name, path in paths.items()
    }


MODULES = _load()
# A view module declares a blueprint; app/api/__init__.py only nests them, and
# app/api/render.py is what they share.
VIEWS = tuple(
    name
    for name, module in MODULES.items()
    if _within(name, "app.api") and name != "app.api" and module.declares_blueprint
)


@dataclass(frozen=True)
class Rule:
    id: str
    says: str
    modules: tuple[str, ...]  # whom it binds (a package binds its modules); never the factory
    must_not_import: tuple[str, ...]  # modules or outside names, with what lies below them
    allowed: tuple[str, ...] = ()  # exceptions to must_not_import
    unless: tuple[str, ...] = ()  # modules it does not bind
    transitive: bool = False  # through other app modules (and the packages they live in) too


PURE = (
    "flask",
    "flask_sqlalchemy",
    "flask_migrate",
    "werkzeug",
    "sqlalchemy",
    "app.models",
    "app.db",
)
RULES = (
    Rule(
        "pure-core",
        "the grammar, its visitor, the in-memory backend, the fold, patch, bulk and validate are "
        "pure: no Flask, no SQLAlchemy, no models, not even through another module",
        ("app.filters.grammar", "app.filters.visitor", "app.filters.match", "app.fold")
        + ("app.patch", "app.bulk", "app.validate"),
        PURE,
        transitive=True,
    ),
    Rule(
        "serialize-without-http",
        "serialize knows nothing of HTTP: it is handed a Projection, never the request",
        ("app.serialize",),
        ("flask", "werkzeug", "app.protocol", "app.api"),
        transitive=True,
    ),
    Rule(
        "schema-alone",
        "the schema registry stands alone: it imports only itself and the errors",
        ("app.schema",),
        ("app",),
        allowed=("app.schema", "app.errors"),
        transitive=True,
    ),
    Rule(
        "api-on-top",
        "nothing below the views imports app.api; the app factory registers its blueprints",
        ("app",),
        ("app.api",),
        unless=("app.api",),
    ),
    Rule(
        "views-apart",
        "no view module imports another; what views share lives in app.api.render",
        VIEWS,
        VIEWS,
    ),
    Rule(
        "sql-in-store",
        "only the store, the database module, the models and the SQL backend use SQLAlchemy "
        "(catching its exceptions and parsing a database URL run no SQL)",
        ("app",),
        ("sqlalchemy", "flask_sqlalchemy", "flask_migrate", "alembic"),
        allowed=("sqlalchemy.exc", "sqlalchemy.engine.make_url"),
        unless=("app.store", "app.db", "app.models", "app.filters.sql"),
    ),
    Rule(
        "request-at-edge",
        "only the HTTP edge reads flask.request: the views (API and console), protocol, auth, "
        "requests, and the three request hooks audit, ratelimit and metrics",
        ("app",),
        ("flask.request",),
        unless=("app.api", "app.console", "app.protocol", "app.auth", "app.requests")
        + ("app.audit", "app.ratelimit", "app.metrics"),
    ),
)


def layer_of(name: str) -> int | None:
    """The layer of the longest LAYERS entry that covers the module; None: it has no layer."""
    covering = [
        (len(entry), index)
        for index, (_, entries) in enumerate(LAYERS)
        for entry in entries
        if name == entry or (entry != FACTORY and _within(name, entry))  # "app" is only itself
    ]
    return max(covering)[1] if covering else None


def _bound(rule: Rule) -> list[str]:
    return [
        name
        for name in MODULES
        if name != FACTORY
        and any(_within(name, m) for m in rule.modules)
        and not any(_within(name, m) for m in rule.unless)
    ]


def _forbidden(rule: Rule, target: str) -> bool:
    return any(_within(target, m) for m in rule.must_not_import) and not any(
        _within(target, m) for m in rule.allowed
    )


def _reached(rule: Rule, start: str) -> dict[str, list[tuple[str, Import]]]:
    """The app modules `start` loads, each with the shortest chain of imports to it; a module
    the rule forbids is where a chain stops (it is the finding, not what it imports)."""
    chains: dict[str, list[tuple[str, Import]]] = {start: []}
    queue = deque([start] if rule.transitive else [])
    while queue:
        name = queue.popleft()
        edges = [i for i in MODULES[name].imports if i.target in MODULES]
        # Importing app.filters.grammar runs app/filters/__init__.py first: it counts too.
        package = name.rpartition(".")[0]
        if package != FACTORY:
            edges.append(Import(package, 0))
        for edge in edges:
            if edge.target in chains or edge.target == FACTORY or _forbidden(rule, edge.target):
                continue
            chains[edge.target] = chains[name] + [(name, edge)]
            queue.append(edge.target)
    return chains


def _where(name: str, line: int) -> str:
    path = MODULES[name].path
    return f"{path}:{line}" if line else f"{path} (its package)"


def _names(targets: set[str]) -> str:
    """sqlalchemy.{and_, select} rather than the package written out for every name."""
    parents = {t.rpartition(".")[0] for t in targets}
    if len(targets) > 1 and len(parents) == 1 and "" not in parents:
        return f"{parents.pop()}.{{{', '.join(sorted(t.rpartition('.')[2] for t in targets))}}}"
    return ", ".join(sorted(targets))


def violations(rule: Rule) -> list[str]:
    """One line per offending import statement, with the chain of imports that reaches it."""
    found: dict[str, set[str]] = {}
    for name in _bound(rule):
        for reached, chain in _reached(rule, name).items():
            via = "".join(f"{_where(m, edge.line)} imports {edge.target}, " for m, edge in chain)
            for imported in MODULES[reached].imports:
                if _forbidden(rule, imported.target):
                    where = f"{via}{_where(reached, imported.line)} imports"
                    found.setdefault(where, set()).add(imported.target)
    return [f"{where} {_names(targets)}" for where, targets in sorted(found.items())]


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_rule(rule: Rule):
    found = violations(rule)
    assert not found, f"[{rule.id}] {rule.says}; broken by:\n" + "\n".join(found)


def test_imports_point_down_the_layers():
    order = " -> ".join(layer for layer, _ in LAYERS)
    found = []
    for name, module in MODULES.items():
        own = layer_of(name)
        for imported in module.imports:
            theirs = layer_of(imported.target) if imported.target in MODULES else None
            if own is not None and theirs is not None and theirs < own:
                found.append(
                    f"{_where(name, imported.line)}: {name} ({LAYERS[own][0]}) imports "
                    f"{imported.target} ({LAYERS[theirs][0]}), a layer above it; "
                    f"imports point down: {order}"
                )
    assert not found, "\n".join(found)


def test_every_module_has_a_layer():
    missing = [MODULES[name].path for name in MODULES if layer_of(name) is None]
    assert not missing, f"add to LAYERS (and the README's Architecture section): {missing}"


def test_the_rules_name_modules_that_exist():
    """A renamed module must not leave a rule that silently binds nothing."""
    named = {name for _, names in LAYERS for name in names}
    for rule in RULES:
        named |= {
            n for n in rule.modules + rule.unless + rule.must_not_import if _within(n, FACTORY)
        }
    missing = sorted(n for n in named if not any(_within(m, n) for m in MODULES))
    assert not missing, f"no such module under app/: {missing}"


def test_views_are_found():
    assert {"app.api.users", "app.api.groups", "app.api.search"} <= set(VIEWS)


def test_the_reader_sees_imports_in_functions_and_type_checking_blocks(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import flask\n"
        "if TYPE_CHECKING:\n"
        "    from app.models import User\n"
        "def later():\n"
        "    from sqlalchemy import select\n"
        "    from . import db\n"
        "    return flask.request\n"
    )
    module = read(source, "app.sample", {"app", "app.models", "app.db"}, "sample.py")
    targets = {(i.target, i.line) for i in module.imports}
    assert {
        ("app.models", 4),
        ("sqlalchemy.select", 6),
        ("app.db", 7),
        ("flask.request", 8),
    } <= targets
