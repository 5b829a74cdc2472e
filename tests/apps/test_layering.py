"""Which app may import which: the pipeline announces finished runs and never reaches into
the apps that react to them (see apps/jobs/events.py)."""

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
        for path, names in _imports(APPS / "jobs").items()
    }
    assert not {path: names for path, names in offending.items() if names}


def test_approvals_listens_to_the_pipeline_events() -> None:
    from apps.jobs import events

    assert events.version_ready.has_listeners()
    assert events.version_failed.has_listeners()


FEATURE_APPS = ("accounts", "approvals", "audit", "deployments", "jobs", "registry", "runtimes", "web", "webhooks")


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
