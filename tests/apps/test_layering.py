"""Which app may import which: the pipeline announces finished runs and never reaches into
the apps that react to them (see apps/pipeline/events.py); the registry announces new versions
(apps/registry/events.py); no two packages import each other, directly or round a loop."""

from __future__ import annotations

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"


def _imports(folder: Path) -> dict[str, set[str]]:
    """Every module each file under `folder` imports, lazy imports inside functions included."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(APPS.parent))] = names
    return found


def test_the_pipeline_never_imports_approvals() -> None:
    offending = {
        path: sorted(name for name in names if name == "apps.approvals" or name.startswith("apps.approvals."))
        for path, names in _imports(APPS / "pipeline").items()
    }
    assert not {path: names for path, names in offending.items() if names}


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """Package -> imported package -> where, across apps, workers and the CLI (lazy imports too).

    A package is a folder with an __init__.py; an import counts for the deepest package that
    holds the module (`from apps.pipeline import services` names apps.pipeline). A subpackage using
    its own parents (an app's api using the app's services) is layering, not a loop."""
    root = APPS.parent
    packages = {
        ".".join(init.parent.relative_to(root).parts)
        for top in ("apps", "workers", "slipway_cli")
        for init in (root / top).rglob("__init__.py")
        if "migrations" not in init.parts
    }

    def package_of(module: str) -> str | None:
        parts = module.split(".")
        while parts and ".".join(parts) not in packages:
            parts.pop()
        return ".".join(parts) or None

    edges: dict[str, dict[str, list[str]]] = {}
    for top in ("apps", "workers", "slipway_cli"):
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = ".".join(path.parent.relative_to(root).parts)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules = [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for module in modules:
                    target = package_of(module)
                    if target and target != source and not source.startswith(target + "."):
                        where = f"{path.relative_to(root)}:{node.lineno}"
                        edges.setdefault(source, {}).setdefault(target, []).append(where)
    return edges


def _loops(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected groups of more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_loop_among_packages() -> None:
    """Apps talk upwards by events (apps/*/events.py), never by importing each other both ways."""
    edges = _package_imports()
    assert "apps.registry" in edges.get("apps.pipeline", {}), "the scan must see the pipeline's use of the registry"
    described = [
        {source: {target: where for target, where in edges[source].items() if target in group} for source in group}
        for group in _loops(edges)
    ]
    assert not described


def test_the_scan_finds_a_loop_when_there_is_one() -> None:
    edges = {"a": {"b": ["a/x.py:1"]}, "b": {"c": ["b/y.py:2"]}, "c": {"a": ["c/z.py:3"]}, "d": {"a": ["d.py:1"]}}
    assert _loops(edges) == [["a", "b", "c"]]


def test_the_pipeline_starts_when_the_registry_announces_a_version() -> None:
    from apps.registry import events

    assert events.version_created.has_listeners()


def test_approvals_listens_to_the_pipeline_events() -> None:
    from apps.pipeline import events

    assert events.version_ready.has_listeners()
    assert events.version_failed.has_listeners()


FEATURE_APPS = ("accounts", "approvals", "audit", "deployments", "hardware", "pipeline", "registry", "web", "webhooks")


def test_accounts_never_imports_approvals() -> None:
    """Accounts announces a changed four-eyes rule (apps/accounts/events.py); approvals applies it."""
    offending = {
        path: sorted(name for name in names if name.startswith("apps.approvals"))
        for path, names in _imports(APPS / "accounts").items()
    }
    assert not {path: names for path, names in offending.items() if names}
    from apps.accounts import events

    assert events.four_eyes_changed.has_listeners()


def test_core_imports_no_feature_app() -> None:
    """Core is what every app builds on (errors, middleware, schema, throttling): it includes
    the apps' routes by module name and reads credentials by duck type, never by import."""
    offending = {
        path: sorted(name for name in names if any(name.startswith(f"apps.{app}") for app in FEATURE_APPS))
        for path, names in _imports(APPS / "core").items()
    }
    assert not {path: names for path, names in offending.items() if names}


def test_domain_errors_know_nothing_of_the_web_framework() -> None:
    """Services and workers raise and catch apps.core.errors; only the API's exception handler
    maps them to HTTP, and worker tasks never import the API's error module."""
    errors = APPS / "core" / "errors.py"
    imported = _imports(errors.parent)[str(errors.relative_to(APPS.parent))]
    assert not {name for name in imported if name.startswith(("rest_framework", "django"))}
    tasks = APPS.parent / "workers" / "tasks"
    for path in sorted(tasks.rglob("*.py")):
        assert "apps.core.api" not in path.read_text(encoding="utf-8"), path.name


def test_api_views_scope_rows_to_the_users_teams_in_one_place() -> None:
    """Rows of teams reach API views through apps/accounts/api/scoping.py (a row of another
    team is a 404 there), never through a filter each view writes by hand."""
    by_hand = sorted(
        str(path.relative_to(APPS.parent))
        for path in APPS.glob("*/api/*.py")
        if "__in=visible_teams(" in path.read_text(encoding="utf-8")
    )
    assert by_hand == []


def test_lists_narrow_to_one_team_in_the_base_view() -> None:
    """`?team=<slug>` on a list is TeamScoped's (apps/accounts/api/scoping.py), not a filter
    each list writes: only the model-by-slug lookup, which disambiguates a slug several teams
    use, filters by team slug itself."""
    by_hand = {
        str(path.relative_to(APPS.parent)): path.read_text(encoding="utf-8").count("team__slug=")
        for path in APPS.glob("*/api/*.py")
    }
    assert {path: count for path, count in by_hand.items() if count} == {"apps/registry/api/views.py": 1}
