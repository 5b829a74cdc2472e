"""The engine stays framework-free and cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[2] / "workers" / "engine"
REPO_ROOT = ENGINE_DIR.parents[1]
FRAMEWORKS = {"django", "celery", "rest_framework", "kombu"}
HEAVY = {"onnx", "onnxruntime", "numpy", "torch", "tensorrt", "openvino", "nncf", "MNN", "ncnn", "pnnx", "onnx2torch"}
ENGINE_FILES = sorted(ENGINE_DIR.rglob("*.py"))
# The framework sides are programs of another interpreter (workers/engine/importers/envs): no
# Slipway process imports them, so their module-level imports cost nothing here.
SIDE_PROGRAMS = sorted((ENGINE_DIR / "importers" / "envs").glob("*_side.py"))


def _imported_roots(nodes: Sequence[ast.AST]) -> Iterator[tuple[str, int]]:
    for node in nodes:
        for child in ast.walk(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], child.lineno
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                yield child.module.split(".")[0], child.lineno


def _module_level_statements(tree: ast.Module) -> list[ast.stmt]:
    """Statements run on import: everything outside function bodies and TYPE_CHECKING."""
    statements: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    if isinstance(child, ast.ExceptHandler):
                        pending.extend(child.body)
                    else:
                        pending.append(child)
            continue
        statements.append(node)
    return statements


def test_engine_files_are_found() -> None:
    names = {path.name for path in ENGINE_FILES}
    assert {"errors.py", "formats.py", "archive.py", "inspection.py"} <= names


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda path: path.name)
def test_no_framework_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [f"{path.name}:{line} imports {root}" for root, line in _imported_roots([tree]) if root in FRAMEWORKS]
    assert found == []


@pytest.mark.parametrize(
    "path", [path for path in ENGINE_FILES if path not in SIDE_PROGRAMS], ids=lambda path: path.name
)
def test_heavy_libraries_are_imported_inside_functions(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [
        f"{path.name}:{line} imports {root} at module level"
        for root, line in _imported_roots(_module_level_statements(tree))
        if root in HEAVY
    ]
    assert found == []


def test_importing_the_engine_loads_no_heavy_library() -> None:
    modules = ", ".join(f"workers.engine.{name}" for name in ("errors", "formats", "archive", "inspection"))
    watched = sorted(FRAMEWORKS | HEAVY)
    script = f"import sys, {modules}\nprint(','.join(name for name in {watched!r} if name in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == ""


def test_no_slipway_process_imports_a_framework_side() -> None:
    """What makes SIDE_PROGRAMS exempt: they are started as programs, never imported."""
    from workers.engine.framework_envs import ENVS

    names = {path.stem for path in SIDE_PROGRAMS}
    assert names == {f"{name}_side" for name in ENVS}
    importers = [
        f"{path.relative_to(REPO_ROOT)} imports {root}"
        for path in sorted((REPO_ROOT / "workers").rglob("*.py")) + sorted((REPO_ROOT / "apps").rglob("*.py"))
        if path not in SIDE_PROGRAMS
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
        for root in [node.module.rsplit(".", 1)[-1], *(alias.name for alias in node.names)]
        if root in names
    ]
    assert importers == []
