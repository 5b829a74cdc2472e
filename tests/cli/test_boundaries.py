"""The CLI is a thin client of the public API: it imports nothing of the platform (Django,
apps, workers) and needs only `requests` and the standard library, so a CI image can
install and run it on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CLI_DIR = Path(__file__).resolve().parents[2] / "slipway_cli"
REPO_ROOT = CLI_DIR.parent
CLI_FILES = sorted(CLI_DIR.rglob("*.py"))
ALLOWED = set(sys.stdlib_module_names) | {"requests", "slipway_cli"}


def _imported_roots(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_cli_files_are_found() -> None:
    assert {"main.py", "client.py", "multipart.py", "push.py", "gate.py"} <= {p.name for p in CLI_FILES}


@pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: str(p.relative_to(CLI_DIR)))
def test_imports_only_the_standard_library_and_requests(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [f"{path.name}:{line} imports {root}" for root, line in _imported_roots(tree) if root not in ALLOWED]
    assert found == []


def test_running_the_cli_loads_no_platform_module() -> None:
    watched = ["django", "rest_framework", "celery", "apps", "workers", "config", "numpy", "onnx"]
    script = (
        "import sys\n"
        "from slipway_cli.main import build_parser\n"
        "build_parser()\n"
        f"print(','.join(name for name in {watched!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env={"PATH": ""}, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
