"""No import cycles in pfnkit/ or priors/, checked statically and by importing each module.

The static check parses every module with `ast` and counts every import of a package
module: at module level, under ``if TYPE_CHECKING:`` and inside functions, absolute and
relative. ``from a.b import c`` is an edge to module ``a.b.c`` when that is a module, else
to ``a.b``; importing ``a.b.c`` adds no implicit edge to its parent packages, but a package
``__init__`` importing its own submodules is an edge like any other. Imports by computed
name (``importlib.import_module(f"...")``) are invisible to it; the dynamic check, which
imports every module first in a fresh interpreter, catches the cycles those make (after
sbi's ``tests/circular_import_test.py``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pfnkit", "priors")

Graph = dict[str, set[str]]


def package_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under each package of `root`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is a package module; None for third-party names."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module that ``from <base> import ...`` names, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that `module` imports anywhere in its file (itself excluded)."""
    is_package = path.name == "__init__.py"
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, is_package)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else _known(base, modules))
    return {name for name in found if name is not None and name != module}


def import_graph(root: Path, packages: tuple[str, ...]) -> Graph:
    modules = package_modules(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(start: str, members: set[str], graph: Graph) -> list[str]:
    """A shortest import path start -> ... -> start inside one component."""
    paths = {succ: [start, succ] for succ in sorted(graph[start]) if succ in members}
    frontier = list(paths)
    while start not in paths:
        node = frontier.pop(0)
        for succ in sorted(graph[node]):
            if succ in members and succ not in paths:
                paths[succ] = [*paths[node], succ]
                frontier.append(succ)
    return paths[start]


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module."""
    return [
        _cycle_through(component[0], set(component), graph)
        for component in _strongly_connected(graph)
        if len(component) > 1
    ]


def test_pfnkit_and_priors_have_no_import_cycle() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert "pfnkit.nn.attention" in graph["pfnkit.nn.blocks"], "the graph lost an edge"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_finds_cycles_through_type_checking_functions_and_inits(
    tmp_path: Path,
) -> None:
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import f\n",
            "pkg/b.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from . import a
                def f(): ...
            """,
            "pkg/sub/__init__.py": "from .c import g\n",
            "pkg/sub/c.py": "def g():\n    from pkg.sub import d\n    from ..sub import g2\n",
            "pkg/sub/d.py": "import pkg.a\n",
            "pkg/clean.py": "from pkg.sub import d\nimport numpy\n",
        },
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub.c"] == {"pkg.sub", "pkg.sub.d"}
    assert graph["pkg.clean"] == {"pkg.sub.d"}  # a submodule named in `from`, not its package
    cycles = {frozenset(cycle) for cycle in find_cycles(graph)}
    assert cycles == {frozenset({"pkg.a", "pkg.b"}), frozenset({"pkg.sub", "pkg.sub.c"})}


def test_the_checker_passes_an_acyclic_package(tmp_path: Path) -> None:
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\nfrom pkg.b import g\n",
            "pkg/a.py": "def f(): ...\n",
            "pkg/b.py": "from pkg.a import f\ndef g():\n    from . import a\n",
        },
    )
    assert find_cycles(import_graph(tmp_path, ("pkg",))) == []


def _third_party(root: Path, modules: dict[str, Path]) -> set[str]:
    """The modules outside this checkout that the package modules import (to preload)."""
    names = set()
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    local = {p.stem for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    return {name for name in names if name.split(".")[0] not in local | {"__future__"}}


_IMPORT_EACH_FIRST = """
import importlib, os, sys
packages = tuple(sys.argv[1].split(','))
for name in sys.argv[2].split():  # modules outside the checkout, loaded once
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not any(m.split('.')[0] in packages for m in sys.modules)
running, failed = {}, []
def reap():
    pid, status = os.wait()
    if status:
        failed.append(running[pid])
    del running[pid]
for name in sys.argv[3:]:
    if len(running) >= (os.cpu_count() or 1):
        reap()
    pid = os.fork()
    if pid == 0:  # a child whose sys.modules holds no package module yet
        try:
            importlib.import_module(name)
        except BaseException as exc:
            sys.stderr.write(f"{name}: {type(exc).__name__}: {exc}\\n")
            os._exit(1)
        os._exit(0)
    running[pid] = name
while running:
    reap()
sys.exit(f"failed to import first: {sorted(failed)}" if failed else 0)
"""


def import_each_first(root: Path, packages: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Import every module of `packages` first, each in a fork of one fresh interpreter.

    The interpreter loads the modules from outside the checkout once; each forked child
    then starts with no package module in `sys.modules`, as a fresh interpreter would.
    """
    modules = package_modules(root, packages)
    preload = " ".join(sorted(_third_party(root, modules)))
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, ",".join(packages), preload, *sorted(modules)],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_dynamic_check_fails_on_a_runtime_cycle(tmp_path: Path) -> None:
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import g\ndef f(): ...\n",
            "pkg/b.py": "from pkg.a import f\ndef g(): ...\n",
            "pkg/clean.py": "import json\n",
        },
    )
    result = import_each_first(tmp_path, ("pkg",))
    assert result.returncode != 0
    assert "['pkg.a', 'pkg.b']" in result.stderr and "partially initialized" in result.stderr


@pytest.mark.slow  # a fresh interpreter loads the whole stack (torch, lightning, sbi): ~10 s
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    result = import_each_first(ROOT, PACKAGES)
    assert result.returncode == 0, result.stderr[-4000:]
