"""The sans-IO layers stay sans-IO: no trio, nothing from the layers above them.

Modules are discovered from the source tree, so a new file under ``simtrio/wire`` or
``simtrio/core`` is covered without editing this test. Each module is imported in a fresh
interpreter with the root ``simtrio`` package stubbed out: the package's own ``__init__`` may
re-export the trio-based clients, and what is checked here is the module itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "simtrio"
FORBIDDEN = frozenset({"trio", "trio_websocket"})

# What each sans-IO area may import from simtrio itself (dependencies point downward only).
ALLOWED: dict[str, frozenset[str]] = {
    "simtrio.wire": frozenset({"simtrio.wire", "simtrio.errors"}),
    "simtrio.core": frozenset({"simtrio.wire", "simtrio.core", "simtrio.errors", "simtrio.events"}),
    "simtrio.events": frozenset({"simtrio.wire", "simtrio.errors"}),
    "simtrio.managed.config": frozenset({"simtrio.core", "simtrio.wire", "simtrio.errors"}),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sans_io_files() -> list[Path]:
    files: list[Path] = []
    for sub in ("wire", "core"):
        files.extend(sorted((PACKAGE_DIR / sub).rglob("*.py")))
    files.append(PACKAGE_DIR / "events.py")
    files.append(PACKAGE_DIR / "managed" / "config.py")
    return [f for f in files if f.exists()]


FILES = _sans_io_files()
MODULES = [_module_name(f) for f in FILES]


def _area(module: str) -> str:
    for area in sorted(ALLOWED, key=len, reverse=True):
        if module == area or module.startswith(area + "."):
            return area
    raise AssertionError(f"no layering rule for {module}")


def _imports(path: Path, module: str) -> list[str]:
    """Every module an import statement in ``path`` names (TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.append(target)
            # ``from simtrio import events`` imports the submodule simtrio.events.
            if target == "simtrio":
                names.extend(f"simtrio.{alias.name}" for alias in node.names)
    return names


def test_discovery_finds_the_known_modules() -> None:
    assert {
        "simtrio.core.backoff",
        "simtrio.core.session",
        "simtrio.core.demux",
        "simtrio.core.drain",
        "simtrio.wire.types",
        "simtrio.events",
        "simtrio.managed.config",
    } <= set(MODULES)


@pytest.mark.parametrize("path", FILES, ids=MODULES)
def test_no_trio_import_in_source(path: Path) -> None:
    module = _module_name(path)
    imported = _imports(path, module)
    bad = [name for name in imported if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{module} imports {bad}"
    allowed = ALLOWED[_area(module)]
    upward = [
        name
        for name in imported
        if name.split(".")[0] == "simtrio"
        and name != "simtrio"
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert not upward, f"{module} imports from layers above it: {upward}"


_PROBE = """
import importlib, sys, types
root = types.ModuleType("simtrio")
root.__path__ = [{package_dir!r}]
sys.modules["simtrio"] = root
importlib.import_module({module!r})
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})))
"""


@pytest.mark.parametrize("module", MODULES)
def test_importing_does_not_load_trio(module: str) -> None:
    code = _PROBE.format(package_dir=str(PACKAGE_DIR), module=module, forbidden=set(FORBIDDEN))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing {module} loaded {proc.stdout.strip()}"


# --------------------------------------------------------------------------------------------
# Naming: the wire facade is for users, and names shared with simtrio.events are qualified
# --------------------------------------------------------------------------------------------

ALL_FILES = sorted(PACKAGE_DIR.rglob("*.py"))
ALL_MODULES = [_module_name(f) for f in ALL_FILES]
WIRE_DIR = PACKAGE_DIR / "wire"


def _clashing_names() -> frozenset[str]:
    """Class names defined both in ``simtrio.events`` and in ``simtrio.wire.types``."""

    def classes(path: Path) -> set[str]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}

    return frozenset(classes(PACKAGE_DIR / "events.py") & classes(WIRE_DIR / "types.py"))


CLASHING = _clashing_names()


def _from_imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.module or "", [alias.name for alias in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level
    ]


def test_the_clashing_names_are_the_known_ones() -> None:
    assert {"Completed", "DiscoveryBatch", "Paused", "ReadyForContinue", "Status"} <= CLASHING


# The wire package never sees simtrio.events, so its own names stand alone there.
OUTSIDE_WIRE = [f for f in ALL_FILES if not f.is_relative_to(WIRE_DIR)]


@pytest.mark.parametrize("path", OUTSIDE_WIRE, ids=[_module_name(f) for f in OUTSIDE_WIRE])
def test_names_shared_with_events_are_never_imported_bare(path: Path) -> None:
    sources = {"simtrio.events", "simtrio.wire", "simtrio.wire.types"}
    bare = [
        f"{module}.{name}"
        for module, names in _from_imports(path)
        if module in sources
        for name in names
        if name in CLASHING
    ]
    assert not bare, f"{_module_name(path)} imports {bare}: write events.X or wire.X instead"


@pytest.mark.parametrize("path", ALL_FILES, ids=ALL_MODULES)
def test_package_code_imports_wire_names_from_their_modules(path: Path) -> None:
    submodules = {p.stem for p in WIRE_DIR.glob("*.py")}
    facade = [
        name
        for module, names in _from_imports(path)
        if module == "simtrio.wire"
        for name in names
        if name not in submodules
    ]
    assert not facade, f"{_module_name(path)} imports {facade} from the simtrio.wire facade"
