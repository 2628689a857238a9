"""The layers of docs/architecture.md, read from the source: every import under src/ goes down
the layer order, and no two packages (nor two modules) import each other in a circle.

Imports are parsed, not run: ``import`` and ``from`` forms, relative ones, lazy ones inside
functions and those under ``TYPE_CHECKING`` all count, since each is a dependency a reader
has to follow.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first; a package imports only packages of lower layers. Top-level modules count as
# packages (``hook``, ``smoke``, ``money``...); ``spendtrail`` is the package's own
# ``__init__`` (``spendtrail.instrument``), a face like the CLI.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "errors",
        "events money periods redact settings foreground",
        "yamlfile journal",
        "pricing registry bills access",
        "ledger",
        "budgets allocation reconcile",
        "gateway evidence reports simulator hook integrations connectors alerts",
        "smoke close console",
        "cli spendtrail api web",
    )
)
# Imports allowed between two packages of one layer, (importer, imported): the reason why.
SAME_LAYER: dict[tuple[str, str], str] = {
    ("cli", "api"): "`spendtrail serve` runs the API: one face starting another",
    ("cli", "web"): "`spendtrail serve` serves the pages beside the API",
    ("web", "api"): "the pages sign in through the API's login, sessions and CSRF check",
}
# Known breaks, mended on the branch that moves pricing and registry persistence into
# ledger/. Delete these entries when it merges; test_known_breaks_are_still_there says when.
def modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Every module under src: dotted name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted((src / "spendtrail").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imported(name: str, is_package: bool, tree: ast.AST, known: set[str]) -> Iterator[str]:
    """The spendtrail modules one module's syntax tree imports, by dotted name."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from package import module` imports the module; `from module import name`,
            # the module.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where c is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def package(module: str) -> str:
    """``spendtrail.ledger.schema`` -> ``ledger``; ``spendtrail`` -> ``spendtrail``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_graph(src: Path = SRC) -> dict[str, set[str]]:
    found = modules(src)
    known = set(found)
    return {
        name: set(imported(name, is_package, ast.parse(path.read_text()), known))
        for name, (path, is_package) in found.items()
    }


def package_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """importer package -> imported package -> the modules that import it."""
    packages: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name, targets in graph.items():
        packages[package(name)]  # a package importing nothing is still a package
        for target in targets:
            if package(target) != package(name):
                packages[package(name)][package(target)].add(name)
    return packages


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while (member := stack.pop()) != node:
                component.add(member)
            component.add(node)
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = module_graph()
PACKAGES = package_graph(GRAPH)
LAYER_OF = {name: level for level, layer in enumerate(LAYERS) for name in layer}


def test_every_package_has_a_layer():
    unplaced = sorted(set(PACKAGES) - set(LAYER_OF))
    assert not unplaced, f"place {unplaced} in a layer here and in docs/architecture.md"


@pytest.mark.parametrize("importer", sorted(PACKAGES))
def test_imports_go_down_the_layers(importer):
    if importer not in LAYER_OF:
        pytest.fail(f"{importer} has no layer (see test_every_package_has_a_layer)")
    upward = []
    for target, by in sorted(PACKAGES[importer].items()):
        level = LAYER_OF.get(target, len(LAYERS))
        if level > LAYER_OF[importer] or (
            level == LAYER_OF[importer] and (importer, target) not in SAME_LAYER
        ):
            upward.append(f"{target} (imported by {', '.join(sorted(by))})")
    assert not upward, f"{importer} imports a package at or above its own layer: {upward}"


def test_no_package_imports_another_in_a_circle():
    assert cycles({name: set(targets) for name, targets in PACKAGES.items()}) == []


def test_no_module_imports_another_in_a_circle():
    assert cycles(GRAPH) == []


def test_the_reader_sees_every_form_of_import(tmp_path):
    # A small tree exercising each form, so a blind spot in the reader cannot pass as clean.
    root = tmp_path / "spendtrail"
    (root / "low").mkdir(parents=True)
    for name in (
        "__init__.py",
        "low/__init__.py",
        "low/a.py",
        "low/b.py",
        "low/c.py",
        "top.py",
        "lazy.py",
    ):
        (root / name).touch()
    (root / "low" / "a.py").write_text("from . import b\nfrom .c import thing\n")
    (root / "low" / "b.py").write_text("from ..top import face\n")
    (root / "low" / "__init__.py").write_text("from spendtrail.low.a import x\n")
    (root / "top.py").write_text("import spendtrail.low.c as c\nfrom spendtrail import lazy\n")
    (root / "lazy.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import spendtrail.top\n"
        "def f():\n    from spendtrail.low import b\n"
    )
    graph = module_graph(tmp_path)
    assert graph == {
        "spendtrail": set(),
        "spendtrail.low": {"spendtrail.low.a"},
        "spendtrail.low.a": {"spendtrail.low.b", "spendtrail.low.c"},
        "spendtrail.low.b": {"spendtrail.top"},
        "spendtrail.low.c": set(),
        "spendtrail.top": {"spendtrail.low.c", "spendtrail.lazy"},
        "spendtrail.lazy": {"spendtrail.top", "spendtrail.low.b"},
    }
    assert package_graph(graph)["low"] == {"top": {"spendtrail.low.b"}}
    assert sorted(map(sorted, cycles(graph))) == [
        ["spendtrail.lazy", "spendtrail.low.b", "spendtrail.top"]
    ]


PACKAGE_DIRS = sorted(path.parent for path in (SRC / "spendtrail").glob("*/__init__.py"))


@pytest.mark.parametrize("directory", PACKAGE_DIRS, ids=lambda path: path.name)
def test_every_package_maps_its_modules(directory):
    # The __init__ docstring is the package's map: each module and the rule it holds, and
    # the docs/ page of its capability.
    doc = ast.get_docstring(ast.parse((directory / "__init__.py").read_text())) or ""
    parts = [path.name for path in directory.glob("*.py") if path.name != "__init__.py"]
    parts += [
        f"{path.name}/"
        for path in directory.iterdir()
        if path.is_dir() and path.name != "__pycache__"
    ]
    assert [part for part in sorted(parts) if f"``{part}``" not in doc] == []
    pages = re.findall(r"docs/([\w-]+\.md)", doc)
    docs = SRC.parent / "docs"
    assert pages and [page for page in pages if not (docs / page).is_file()] == []


def test_importing_the_hook_loads_no_database_or_server_stack():
    # `spendtrail.instrument` runs inside the caller's application: it must stay light.
    code = (
        "import sys, spendtrail.hook\n"
        "print(spendtrail.hook.__file__)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    path = os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH"))))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    where, loaded = result.stdout.splitlines()
    assert Path(where).is_relative_to(SRC)
    assert {"httpx2", "msgspec"} <= set(loaded.split())  # what the hook does need
    assert set(loaded.split()) & {"sqlalchemy", "alembic", "aiohttp", "psycopg"} == set()
