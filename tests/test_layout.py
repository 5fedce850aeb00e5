"""The library's layout: no import cycles (lazy imports inside functions included), and the
measuring core imports without papermill or pymoo (GPU boxes have torch only)."""

from __future__ import annotations

import ast
import subprocess
import sys

from linas_lib.paths import project_root

PACKAGE = project_root() / "linas_lib"


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, modules: set[str]) -> set[str]:
    """linas_lib modules imported anywhere in a file (relative or absolute)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_library_has_no_import_cycle():
    graph = import_graph()
    assert "linas_lib.supernet.train" in graph and "linas_lib.keys" in graph
    assert find_cycle(graph) is None


def test_measuring_core_and_cli_import_without_papermill_or_pymoo():
    code = ("import sys; sys.modules['papermill'] = None; sys.modules['pymoo'] = None; sys.modules['yaml'] = None\n"
            "import linas_lib.cli, linas_lib.latency.lut, linas_lib.latency.e2e, linas_lib.latency.measure\n"
            "assert linas_lib.cli.build_parser().parse_args(['lut', 'check', 'x.json']).file == 'x.json'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root())
    assert done.returncode == 0, done.stderr


def test_display_path_is_relative_inside_the_project_and_absolute_outside(tmp_path):
    from linas_lib.paths import display_path

    assert display_path(project_root() / "results" / "cpu" / "bench" / "table.csv") == "results/cpu/bench/table.csv"
    assert display_path(tmp_path / "x.csv") == str(tmp_path / "x.csv")
