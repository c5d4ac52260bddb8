"""The layers of DESIGN §2, and objects that keep their state their own (STYLE 3).

The pure core in runtime/ does no I/O and no concurrency and knows nothing of the
actors and stores built on it; storage knows nothing of the actors; the actors use a
store through its public API only. No module reads or writes another object's
private attributes (a class may set up an instance it has just made). A module past
600 lines says at its top why it is one concept.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME, ACTORS, STORAGE = ROOT / "runtime", ROOT / "actors", ROOT / "storage"
SERVER = ROOT / "server"
FORBIDDEN = {"anyio", "trio", "asyncio", "sqlite3", "socket", "threading", "subprocess", "orjson"}
# The facade re-exports the engine; everything else in runtime/ is the pure core.
FACADES = {"__init__.py", "__main__.py", "testing.py"}
CORE = sorted(path for path in RUNTIME.glob("*.py") if path.name not in FACADES)
PACKAGES = sorted(
    [*RUNTIME.glob("*.py"), *ACTORS.glob("*.py"), *STORAGE.glob("*.py"), *SERVER.glob("*.py")]
)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name (relative imports
    resolved against the package the file installs as)."""
    package = {
        RUNTIME: "prana",
        ACTORS: "prana.actors",
        STORAGE: "prana.storage",
        SERVER: "prana.server",
    }[path.parent]
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def roots(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_core_module_imports_no_io_or_concurrency(path: Path) -> None:
    imports = imported_modules(path)
    assert not roots(imports) & FORBIDDEN
    assert not {m for m in imports if m.startswith(("prana.actors", "prana.storage"))}


@pytest.mark.parametrize("path", sorted(STORAGE.glob("*.py")), ids=lambda path: path.name)
def test_storage_knows_nothing_of_the_actors(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m.startswith("prana.actors")}


@pytest.mark.parametrize("path", sorted(ACTORS.glob("*.py")), ids=lambda path: path.name)
def test_actors_use_a_store_through_its_public_api(path: Path) -> None:
    private = {m for m in imported_modules(path) if m.startswith("prana.storage._")}
    assert not private


@pytest.mark.parametrize("path", sorted(SERVER.glob("*.py")), ids=lambda path: path.name)
def test_the_server_uses_the_engine_s_public_api_only(path: Path) -> None:
    prana_modules = {m for m in imported_modules(path) if m.startswith("prana")}
    private = {m for m in prana_modules if not m.startswith("prana.server") and "._" in f".{m}"}
    assert not private
    assert not {m for m in prana_modules if m.startswith(("prana.actors", "prana.storage"))}


def test_the_layer_checks_see_absolute_imports(tmp_path: Path) -> None:
    # The check must not miss the import it most needs to catch.
    fake = RUNTIME / "_machine.py"
    tree = imported_modules(fake)
    assert "prana._compiler" in tree
    assert "prana._compiler.ExecutionGraph" in tree


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_core_module_has_no_async_code(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not [
        node for node in ast.walk(tree) if isinstance(node, (ast.AsyncFunctionDef, ast.Await))
    ]


def other_objects_privates(path: Path) -> list[str]:
    """``name._attribute`` where ``name`` is not ``self`` or ``cls`` (nor a module, nor
    an instance made by ``cls(...)``)."""
    tree = ast.parse(path.read_text())
    modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    made_by_class = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "cls"
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id not in ("self", "cls", "__self", "super")
            and node.value.id not in modules
            and node.value.id not in made_by_class
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize(
    "path",
    PACKAGES,
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_no_module_reaches_into_another_object_s_state(path: Path) -> None:
    assert other_objects_privates(path) == []


@pytest.mark.parametrize("path", PACKAGES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_long_module_says_why_it_is_one_concept(path: Path) -> None:
    text = path.read_text()
    if len(text.splitlines()) <= 600:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert "past 600 lines" in docstring, f"{path.name}: split it by concept, or say why not"
