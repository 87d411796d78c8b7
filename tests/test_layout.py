"""The architecture the folders show, enforced: the library's subpackages are layers, each importing
only those below it, with no circles; the commands (apps/) sit on top and nothing imports them; the
embedded default (builtin/) is reached only where `source: builtin` chooses it.

  core  <-  model  <-  data, train, evaluate  <-  serve  <-  apps
                       (stages/ may import any layer but apps/)

Run: python -m pytest tests/test_layout.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "medqa_scale"

# What each subpackage may import (itself included); imports of a layer not listed are violations.
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "data": {"core", "model", "data", "builtin"},  # builtin: only as BUILTIN_CALLERS says
    "train": {"core", "model", "train"},
    "evaluate": {"core", "model", "evaluate"},
    "serve": {"core", "model", "evaluate", "serve"},
    "apps": {"core", "model", "data", "train", "evaluate", "serve"},
    "builtin": {"core", "model", "builtin"},
    "stages": {"core", "model", "data", "train", "evaluate", "serve", "builtin"},
}
# The only places that import the embedded default, each inside the function that `source: builtin`
# (model.source or a data.sources entry) calls.
BUILTIN_CALLERS = {"medqa_scale/data/sources.py": "_read_builtin", "medqa_scale/data/choices.py": "_read_builtin",
                   "stages/download_model.py": "main"}


def modules() -> list[Path]:
    """Every Python file of the library and the stages, walked recursively."""
    return sorted([*(ROOT / PACKAGE).rglob("*.py"), *(ROOT / "stages").rglob("*.py")])


def layer(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return "stages" if rel[0] == "stages" else rel[1] if len(rel) > 2 else "root"


def imports(path: Path) -> list[tuple[str, ast.AST, list[ast.AST]]]:
    """(imported module, the import node, its enclosing function nodes) for every medqa_scale or
    stages import in `path`, at module level or inside a function."""
    found = []

    def walk(node, scope):
        for child in ast.iter_child_nodes(node):
            inner = scope + [child] if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            if isinstance(child, ast.Import):
                found.extend((a.name, child, scope) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, child, scope))
                found.extend((f"{child.module}.{a.name}", child, scope) for a in child.names)
            walk(child, inner)

    walk(ast.parse(path.read_text(encoding="utf-8")), [])
    return [(name, node, scope) for name, node, scope in found if name.split(".")[0] in (PACKAGE, "stages")]


def target_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "stages":
        return "stages"
    if len(parts) > 1 and (ROOT / PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None  # `medqa_scale` itself, or a name imported from a module


def violations(paths) -> list[str]:
    found = []
    for path in paths:
        here = layer(path)
        if here == "root":
            continue
        for name, node, _ in imports(path):
            there = target_layer(name)
            if there is not None and there not in ALLOWED[here]:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} ({here}) imports {name} ({there})")
    return found


def test_the_library_has_exactly_the_layers_the_rule_names():
    packages = {p.name for p in (ROOT / PACKAGE).iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED) - {"stages"}
    assert [p.name for p in (ROOT / PACKAGE).glob("*.py")] == ["__init__.py"], "a module outside every layer"


def test_every_import_goes_to_an_allowed_layer():
    assert violations(modules()) == []


def test_a_planted_upward_import_is_caught(tmp_path):
    # The rule itself must fail on a violation: core importing training code.
    planted = ROOT / PACKAGE / "core" / "_planted_for_test.py"
    planted.write_text("from medqa_scale.train.memory import GiB\n", encoding="utf-8")
    try:
        assert violations([planted]) == [
            "medqa_scale/core/_planted_for_test.py:1 (core) imports medqa_scale.train.memory (train)",
            "medqa_scale/core/_planted_for_test.py:1 (core) imports medqa_scale.train.memory.GiB (train)"]
    finally:
        planted.unlink()


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in modules():
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = set()
        for imported, _, _ in imports(path):
            target = ROOT / imported.replace(".", "/")
            if target.with_suffix(".py").exists():
                graph[name].add(imported)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_no_module_imports_itself_through_others():
    assert cycle(module_graph()) is None
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one


def test_nothing_imports_the_commands_or_the_stages():
    for path in modules():
        for name, node, _ in imports(path):
            assert not name.startswith(f"{PACKAGE}.apps") or layer(path) == "apps", f"{path}:{node.lineno} imports {name}"
            assert not name.startswith("stages"), f"{path}:{node.lineno} imports {name}"
    for path in (ROOT / PACKAGE / "apps").glob("*.py"):  # no command builds on another
        assert not any(n.startswith(f"{PACKAGE}.apps") for n, _, _ in imports(path)), path


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_builtin_package_is_reached_only_where_source_builtin_chooses_it(path):
    rel = str(path.relative_to(ROOT))
    for name, node, scope in imports(path):
        if target_layer(name) != "builtin" or layer(path) == "builtin":
            continue
        assert rel in BUILTIN_CALLERS, f"{rel}:{node.lineno} imports {name}"
        assert scope and scope[-1].name == BUILTIN_CALLERS[rel], f"{rel}:{node.lineno}: import it inside " \
            f"{BUILTIN_CALLERS[rel]}, on the branch `source: builtin` takes, not at module level"
