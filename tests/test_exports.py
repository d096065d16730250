"""The public face: what each public module exports, and that the reference renders all of it.

Every name in the ``__all__`` of a public module resolves, has a docstring, is the same object
wherever else a public module exports it, and is rendered in ``docs/reference/*.md``, whose
``:::`` lines name public paths only (``simtrio.X``, ``simtrio.wire.X``, ...), as do the
cross-references of every docs page.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import griffe
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

PUBLIC_MODULES = (
    "simtrio",
    "simtrio.errors",
    "simtrio.events",
    "simtrio.recording",
    "simtrio.rpc",
    "simtrio.server",
    "simtrio.sweep",
    "simtrio.testing",
    "simtrio.wire",
)

# One name, two public objects, on purpose: the spec names a wire response and the event made
# from it alike (api.md §2 and §4), and the two planes are different things in a recording
# (which also has its own run markers) and in a fault plan.
SHARED_NAMES = {
    "Completed": {"simtrio.events", "simtrio.wire"},
    "DiscoveryBatch": {"simtrio.events", "simtrio.wire"},
    "Paused": {"simtrio.events", "simtrio.wire"},
    "ReadyForContinue": {"simtrio.events", "simtrio.wire"},
    "Status": {"simtrio.events", "simtrio.wire"},
    "Plane": {"simtrio.recording", "simtrio.server"},
}

# Not rendered in the reference: the version is the package's metadata.
NOT_RENDERED = {("simtrio", "__version__")}

_DIRECTIVE = re.compile(r"^::: (\S+)\s*$")
_MEMBER = re.compile(r"^\s+- (\w+)\s*$")
_LINK = re.compile(r"\]\[(simtrio(?:\.\w+)+)\]")


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name, a package by its ``__init__``."""
    modules: dict[str, Path] = {}
    for path in sorted((ROOT / "simtrio").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()
INTERNAL_MODULES = sorted(set(MODULES) - set(PUBLIC_MODULES))


def _exports() -> Iterator[tuple[str, str]]:
    for module in PUBLIC_MODULES:
        for name in importlib.import_module(module).__all__:
            yield module, name


EXPORTS = sorted(_exports())


@cache
def _package() -> griffe.Module:
    loaded = griffe.load("simtrio", search_paths=[str(ROOT)], allow_inspection=False)
    assert isinstance(loaded, griffe.Module)
    return loaded


def _static(module: str, name: str) -> griffe.Object | griffe.Alias:
    package = _package()
    inner = module.removeprefix("simtrio").removeprefix(".")
    return package[f"{inner}.{name}" if inner else name]


def _is_public_path(path: str) -> bool:
    module, _, name = path.rpartition(".")
    return module in PUBLIC_MODULES and name in importlib.import_module(module).__all__


@cache
def _rendered() -> dict[str, Path]:
    """Every public path a ``:::`` line of the reference renders, with its page.

    A module's line with a ``members:`` list renders those members; any other line renders
    the object it names.
    """
    rendered: dict[str, Path] = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            directive = _DIRECTIVE.match(line)
            if directive is None:
                continue
            path = directive.group(1)
            members: list[str] = []
            for option in lines[index + 1 :]:
                if option and not option.startswith(" "):
                    break
                member = _MEMBER.match(option)
                if member is not None:
                    members.append(member.group(1))
            if path in PUBLIC_MODULES and members:
                targets = [f"{path}.{member}" for member in members]
            else:
                targets = [path]
            for target in targets:
                assert _is_public_path(target), f"{page.name} renders {target}, not a public name"
                assert target not in rendered, f"{target} is rendered twice"
                rendered[target] = page
    return rendered


def _resolve(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_top_level_defines_nothing() -> None:
    """``simtrio/__init__.py`` holds its docstring, imports and a sorted ``__all__``, no more."""
    import simtrio

    tree = ast.parse(Path(simtrio.__file__).read_text(encoding="utf-8"))
    for node in tree.body[1:]:
        if isinstance(node, ast.Assign):
            assert [ast.unparse(target) for target in node.targets] == ["__all__"]
        else:
            assert isinstance(node, ast.ImportFrom), ast.unparse(node)
    assert simtrio.__all__ == sorted(simtrio.__all__)


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


def _all_statement(module: str) -> tuple[int, ast.stmt | None]:
    """Where the module assigns ``__all__`` among its top-level statements, and the statement."""
    tree = _tree(module)
    for index, node in enumerate(tree.body):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return index, node
    return len(tree.body), None


def test_every_public_module_is_a_module() -> None:
    assert set(PUBLIC_MODULES) <= MODULES.keys()


@pytest.mark.parametrize("module", INTERNAL_MODULES)
def test_internal_module_exports_nothing(module: str) -> None:
    """An empty ``__all__`` tells checkers and IDEs that no name here is public API."""
    _, statement = _all_statement(module)
    assert isinstance(statement, ast.Assign | ast.AnnAssign), f"{module} has no __all__"
    assert statement.value is not None
    assert ast.literal_eval(statement.value) == [], f"{module} exports names"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_all_comes_before_the_imports(module: str) -> None:
    """As PEP 8 places module dunders: after the docstring and ``__future__``, before imports."""
    position, statement = _all_statement(module)
    assert statement is not None, f"{module} has no __all__"
    for node in _tree(module).body[:position]:
        assert not isinstance(node, ast.Import), f"{module}: {ast.unparse(node)} before __all__"
        if isinstance(node, ast.ImportFrom):
            assert node.module == "__future__", f"{module}: {ast.unparse(node)} before __all__"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_has_no_repeats(module: str) -> None:
    names = importlib.import_module(module).__all__
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("module", "name"), EXPORTS)
def test_export_resolves(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_star_import_gives_all(module: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import *", namespace)
    assert set(importlib.import_module(module).__all__) <= namespace.keys()


@pytest.mark.parametrize(("module", "name"), EXPORTS)
def test_static_analysis_sees_export(module: str, name: str) -> None:
    """Read without running it, the export resolves to the same definition as at run time."""
    static = _static(module, name)
    target = static.final_target if isinstance(static, griffe.Alias) else static
    value = _resolve(f"{module}.{name}")
    found = _resolve(target.path)
    assert found is value if _is_identifiable(value) else found == value


@pytest.mark.parametrize(("module", "name"), EXPORTS)
def test_export_has_docstring(module: str, name: str) -> None:
    docstring = _static(module, name).docstring
    assert docstring is not None
    assert docstring.value.strip()


def test_each_name_is_one_object() -> None:
    """A name two public modules export is one object, except the spec's deliberate pairs."""
    homes: dict[str, dict[str, object]] = {}
    for module, name in EXPORTS:
        homes.setdefault(name, {})[module] = _resolve(f"{module}.{name}")
    for name, objects in homes.items():
        if len(objects) < 2:
            continue
        distinct = {id(value) for value in objects.values()}
        if name in SHARED_NAMES:
            assert set(objects) == SHARED_NAMES[name]
            assert len(distinct) == len(objects), name
        else:
            assert len(distinct) == 1, f"{name} is a different object in {sorted(objects)}"


def test_shared_names_are_still_shared() -> None:
    for name, modules in SHARED_NAMES.items():
        for module in modules:
            assert name in importlib.import_module(module).__all__


def _is_identifiable(value: object) -> bool:
    """Whether being the same object means being the same export (not so for numbers and text,
    which Python may share between unrelated constants)."""
    return not isinstance(value, int | float | str | bytes)


@pytest.mark.parametrize(("module", "name"), [pair for pair in EXPORTS if pair not in NOT_RENDERED])
def test_export_is_rendered(module: str, name: str) -> None:
    """Rendered under this public path, or (anything but a constant) under another one."""
    path = f"{module}.{name}"
    if path in _rendered():
        return
    value = _resolve(path)
    assert _is_identifiable(value), f"{path} is not in docs/reference"
    others = [other for other in _rendered() if _resolve(other) is value]
    assert others, f"{path} is not in docs/reference"


def test_reference_lines_name_public_paths() -> None:
    assert _rendered()


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(DOCS)))
def test_cross_references_name_rendered_paths(page: Path) -> None:
    """``[text][simtrio.X]`` links land on a rendered public name or one of its members."""
    rendered = _rendered()
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        parts = target.split(".")
        heads = {".".join(parts[:end]) for end in range(2, len(parts) + 1)}
        assert heads & rendered.keys(), f"{target} is not a rendered public name"
