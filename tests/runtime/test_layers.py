"""The layers of DESIGN §2: the pure core in runtime/ does no I/O and no concurrency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = {"anyio", "trio", "asyncio", "sqlite3", "socket", "threading", "subprocess", "orjson"}
# The facade re-exports the engine; everything else in runtime/ is the pure core.
FACADES = {"__init__.py", "__main__.py", "testing.py"}
CORE = sorted(path for path in RUNTIME.glob("*.py") if path.name not in FACADES)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add("." + node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_core_module_imports_no_io_or_concurrency(path: Path) -> None:
    imports = imported_modules(path)
    assert not imports & FORBIDDEN
    assert not {".actors", ".storage"} & imports


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_core_module_has_no_async_code(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not [
        node for node in ast.walk(tree) if isinstance(node, (ast.AsyncFunctionDef, ast.Await))
    ]


def test_core_modules_stay_small() -> None:
    for path in CORE:
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{path.name} has {lines} lines"
