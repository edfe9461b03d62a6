"""The project's shape, kept: no import circle among its modules (imports for type checking
count too), and no module outside the tests longer than a reader can hold."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PACKAGES = ("components", "lab")
MAX_LINES = 500
# The lab's folders, each importing only the ones before it (README, Layout).
LAB_LAYERS = ("host", "stack", "engine", "guests", "report", "scenario")


def project_modules() -> dict[str, Path]:
    """Every module of the program and the lab, by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_DIR / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from . import runs` imports a module; `from .plan import Plan` a name of one.
            targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def test_no_import_circle() -> None:
    modules = project_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as circle:
        raise AssertionError(f"an import circle: {' -> '.join(circle.args[1])}") from None


def test_each_lab_folder_imports_only_the_folders_before_it() -> None:
    modules = project_modules()

    def layer(name: str) -> int | None:
        parts = name.split(".")
        return LAB_LAYERS.index(parts[1]) if parts[0] == "lab" and len(parts) > 2 and parts[1] in LAB_LAYERS else None

    upward = [
        f"{name} imports {target}"
        for name, path in modules.items()
        if (own := layer(name)) is not None
        for target in imports_of(name, path, modules)
        if (theirs := layer(target)) is not None and theirs > own
    ]
    assert upward == []


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import thing\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(PROJECT_DIR)): lines
        for path in [*project_modules().values(), PROJECT_DIR / "__main__.py"]
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: {long}"
