"""How the package hangs together, read from its source: imports flow one way (ground floor <- core <- data <- config
<- training <- runs <- experiment/sweeps/lrfind/report/plot <- api <- cli), there is no import cycle (imports inside functions
count), only the cli package imports typer and rich, and each job has one place: runs are planned by runs/plan.py,
dispatched by runs/dispatcher.py, and CSV is written by runs/store.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "bncli"
RANK = {"errors": 0, "atomic": 0, "safeio": 0, "yamlio": 0, "stats": 0, "executor": 0, "_version": 0, "examples": 0,
        "core": 1, "data": 2, "config": 3, "training": 4, "stacking": 4.5, "runs": 5, "plotting": 5,
        "experiment": 6, "sweeps": 6, "lrfind": 6, "report": 6, "plot": 6, "api": 7, "cli": 8, "__main__": 9,
        "__init__": 10}  # the package's __init__ holds the version and the lazy API names (bncli.train, ...)


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every bncli module ``name`` imports, anywhere in the file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the module x (the package is already loading), `from .m import f` module m
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = subs if all(t in MODULES for t in subs) else [base]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {layer(m) for m in MODULES} <= set(RANK), {layer(m) for m in MODULES} - set(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_one_way(module):
    wrong = [t for t in GRAPH[module] if RANK[layer(t)] > RANK[layer(module)]]
    assert not wrong, f"{module} (layer {layer(module)}) imports a higher layer: {wrong}"


def test_no_import_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in GRAPH[m]:
            if state.get(t) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def source_lines(pattern: str) -> dict[str, int]:
    return {m: sum(pattern in line for line in MODULES[m].read_text().splitlines()) for m in MODULES}


def test_only_the_cli_package_imports_typer_and_rich():
    for m, path in MODULES.items():
        if layer(m) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("typer", "rich", "click") for n in names), m


def places(pattern: str) -> set[str]:
    return {m for m, n in source_lines(pattern).items() if n}


def test_one_place_for_each_job():
    assert places("csv.writer(") | places("csv.DictWriter(") == {"bncli.runs.store"}
    assert places("execute(") == {"bncli.runs.dispatcher", "bncli.executor"}  # the executor defines it
    # stored runs are planned in one place; the rest are in-process measurements (lr range test, C8 checks, C12
    # timings, C13's parameter counts)
    assert places(".run_config(") == {"bncli.runs.plan", "bncli.lrfind", "bncli.report.cost", "bncli.report.mechanisms",
                                      "bncli.report.images"}
    assert places("train_step(") <= {"bncli.training", "bncli.lrfind", "bncli.report.cost"}
    assert places("order_rng.permutation(") == {"bncli.training"}  # the one batch iterator
