"""The house keeps its layers (design: style.md, "The shape"): the core never imports the
app, the macOS Photos adapter, the bot or the command line; no module drives the screen
and the database at once; the machine does no I/O; each package keeps the promise of its
docstring; at most 20 modules sit at the top; every declared dependency is used."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

PKG = ROOT / "moonshot"
# The wiring: the one module that names every adapter, each imported inside the function
# that builds it (so importing the core loads no adapter).
WIRING = "moonshot.adapters"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
# The core: the modules directly in moonshot/ (not the subpackages), but the wiring.
CORE = sorted(
    m for m, p in MODULES.items() if p.parent == PKG and m not in {WIRING, "moonshot.__main__"}
)


def imports(module: str, *, top_level_only: bool = False) -> set[str]:
    """Every module `module` imports, `from a import b` counted as `a.b` when b is one."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return found


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_import_walk_sees_every_form():
    """The rules below are only as good as `imports`: it must see plain, from, nested,
    relative and `from package import module` imports."""
    assert "moonshot.app.launcher_gui" in imports("moonshot.adapters")  # inside a function
    assert "moonshot.app.launcher_gui" not in imports("moonshot.adapters", top_level_only=True)
    assert "moonshot.ops.logs" in imports("moonshot.pipeline")  # from moonshot.ops import logs
    assert "sqlite_utils" in imports("moonshot.store")
    assert "pyautogui" in imports("moonshot.app.driver")


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_the_app_the_bot_the_cli_or_macos_photos(module):
    bad = {
        i
        for i in imports(module)
        if under(i, "moonshot.app", "moonshot.twitter", "moonshot.cli")
        or under(i, "moonshot.photos.library_macos")
    }
    assert not bad, f"{module} imports {sorted(bad)}"


def test_the_wiring_imports_adapters_only_when_it_builds_them():
    top = imports(WIRING, top_level_only=True)
    adapters = {i for i in top if under(i, "moonshot.app", "moonshot.photos", "moonshot.supabase")}
    assert not adapters, f"{WIRING} imports {sorted(adapters)} at import time"
    assert not {i for i in imports(WIRING) if under(i, "moonshot.twitter", "moonshot.cli")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_drives_the_screen_and_the_database(module):
    found = imports(module)
    screen = {i for i in found if under(i, "pyautogui", "pynput")}
    database = {i for i in found if under(i, "sqlite3", "sqlite_utils", "moonshot.store")}
    assert not (screen and database), f"{module} imports {sorted(screen | database)}"


def test_the_machine_does_no_io():
    allowed = {"__future__", "collections.abc", "typing", "moonshot.errors"}
    found = imports("moonshot.machine")
    extra = {i for i in found if i not in allowed and not under(i, "transitions")}
    assert not extra, f"moonshot.machine imports {sorted(extra)}"
    tree = ast.parse(MODULES["moonshot.machine"].read_text())
    calls = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert not calls & {"open", "print", "input", "exec", "eval", "__import__"}


# What each package promises in its docstring never to import.
PACKAGE_RULES = {
    "moonshot.app": (
        "sqlite3",
        "sqlite_utils",
        "moonshot.store",
        "moonshot.cli",
        "moonshot.twitter",
    ),
    "moonshot.photos": ("moonshot.app", "moonshot.twitter", "moonshot.supabase", "moonshot.cli"),
    "moonshot.supabase": ("moonshot.app", "moonshot.photos", "moonshot.twitter", "moonshot.cli"),
    "moonshot.twitter": ("moonshot.app", "moonshot.photos", "moonshot.cli"),
    "moonshot.ops": ("moonshot.app", "moonshot.twitter", "moonshot.cli"),
}


@pytest.mark.parametrize("package", sorted(PACKAGE_RULES))
def test_each_package_keeps_its_promise(package):
    forbidden = PACKAGE_RULES[package]
    bad = {(m, i) for m in MODULES if under(m, package) for i in imports(m) if under(i, *forbidden)}
    assert not bad, sorted(bad)
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert "never" in doc.lower(), f"{package}/__init__.py must say what it never imports"


def test_every_module_opens_with_a_docstring():
    missing = [
        m
        for m, p in MODULES.items()
        if m != "moonshot.__main__" and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing


def test_at_most_twenty_modules_sit_at_the_top():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 20, top


def test_tests_mirror_the_packages():
    for package in ("app", "cli", "ops", "photos", "supabase", "twitter"):
        assert (ROOT / "tests" / package / "__init__.py").is_file(), package


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


# Import names of the macOS-only distributions, which are not installed off macOS.
DARWIN_IMPORTS = {"pyobjc-framework-cocoa": "Foundation", "pyobjc-framework-photos": "Photos"}


def _import_names(req: Requirement) -> set[str]:
    key = req.name.lower()
    if key in DARWIN_IMPORTS:
        return {DARWIN_IMPORTS[key]}
    by_dist: dict[str, set[str]] = {}
    for top, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(dist.lower().replace("_", "-"), set()).add(top)
    names = by_dist.get(key.replace("_", "-"), set())
    assert names, f"{req.name} is declared but not installed"
    return names


def test_every_declared_runtime_dependency_is_imported():
    used = {i.split(".")[0] for m in MODULES for i in imports(m)}
    unused = [
        str(r)
        for r in _runtime_requirements()
        if (r.marker is None or r.marker.evaluate() or "darwin" in str(r.marker))
        and not _import_names(r) & used
    ]
    assert not unused, f"declared in pyproject.toml but imported nowhere in moonshot/: {unused}"


def test_macos_dependencies_are_marked_for_darwin():
    for req in _runtime_requirements():
        if req.name.lower() in DARWIN_IMPORTS:
            assert req.marker is not None and "darwin" in str(req.marker), req
    assert sys.platform == "darwin" or all(
        req.marker is None or not req.marker.evaluate()
        for req in _runtime_requirements()
        if req.name.lower() in DARWIN_IMPORTS
    )
