"""The shape of the tree: no import circle, no private name across modules, one strategy
contract that every registered strategy and adapter strategy answers in full."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import get_args

import pytest

from distbench.config import RunConfig
from distbench.frameworks import FRAMEWORK
from distbench.strategies.contract import PredictionModel, StrategyFacts
from distbench.strategies.registry import STRATEGIES

SRC = Path(__file__).resolve().parents[2] / "src"


def module_files() -> dict[str, Path]:
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def imported(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it) for every import statement, function-local and
    ``TYPE_CHECKING`` ones included; a package's own ``__init__`` is not an edge of its
    submodules."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.append((f"{base}.{alias.name}", None))
                elif base in modules:
                    found.append((base, alias.name))
    return [(target, name) for target, name in found if target != module]


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    modules = module_files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        for target, name in imported(module, path, modules):
            graph[module].add(target)
            if name and name.startswith("_") and not name.startswith("__"):
                private.append((module, target, name))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_modules() -> None:
    graph, _ = import_graph()
    assert len(graph) > 50  # the walk saw the tree
    assert cycles(graph) == []


def test_no_private_name_is_imported_across_modules() -> None:
    _, private = import_graph()
    assert private == []


def _imported_roots(nodes: list[ast.AST]) -> list[str]:
    roots = []
    for node in nodes:
        if isinstance(node, ast.Import):
            roots += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots.append((node.module or "").split(".")[0])
    return roots


def test_the_measurement_contracts_import_only_the_standard_library() -> None:
    """The in-venv framework workers load these by file path: records, timer and the
    stopping rule entirely; memory at module level (it imports torch only for CUDA)."""
    modules = module_files()
    for name in (
        "distbench.measurement.records",
        "distbench.measurement.timer",
        "distbench.measurement.goal",
    ):
        tree = ast.parse(modules[name].read_text(encoding="utf-8"))
        for root in _imported_roots(list(ast.walk(tree))):
            assert root == "__future__" or root in sys.stdlib_module_names, (name, root)
    memory = ast.parse(modules["distbench.measurement.memory"].read_text(encoding="utf-8"))
    for root in _imported_roots(list(memory.body)):  # ``if TYPE_CHECKING`` is not an import
        assert root == "__future__" or root in sys.stdlib_module_names, ("memory", root)


FACTS = [m for m in dir(StrategyFacts) if not m.startswith("_")]
ALL_STRATEGIES = [(f"torch/{n}", s, "torch", n) for n, s in STRATEGIES.items()] + [
    (f"{a}/{n}", s, a, n) for a, adapter in FRAMEWORK.items() for n, s in adapter.strategies.items()
]


@pytest.mark.parametrize(
    ("label", "facts", "framework", "name"), ALL_STRATEGIES, ids=[s[0] for s in ALL_STRATEGIES]
)
def test_every_strategy_answers_the_whole_contract(
    label: str, facts: StrategyFacts, framework: str, name: str
) -> None:
    assert {"name", "synchronous", "validate", "rank_role", "prediction_model"} <= set(FACTS)
    for member in FACTS:
        assert hasattr(facts, member), f"{label} lacks {member}"
    assert facts.name == name and facts.description
    assert facts.scaling in ("weak", "strong")
    assert facts.prediction_model in (None, *get_args(PredictionModel))
    workers = 1 if facts.single_worker else 2
    batch = 16
    cfg = RunConfig(
        model="lenet5", strategy=name, framework=framework, workers=workers, batch_size=batch
    )
    facts.validate(cfg)
    assert facts.world_size(cfg) == workers + facts.server_processes(cfg)
    roles = {facts.rank_role(cfg, rank) for rank in range(facts.world_size(cfg))}
    assert roles <= {"worker", "server"} and "worker" in roles
    assert isinstance(facts.survives_worker_loss(cfg), bool)
    assert facts.local_batch(cfg) >= 1 and facts.global_batch(cfg) >= facts.local_batch(cfg)
    assert facts.equivalence.kind in ("exact", "statistical")


def test_no_caller_probes_a_strategy_for_optional_hooks() -> None:
    """Optional hooks have defaults on the contract; callers use them directly."""
    hooks = ("rank_role", "peers_lost", "survives_worker_loss", "server_processes")
    for path in module_files().values():
        text = path.read_text(encoding="utf-8")
        for hook in hooks:
            assert f'getattr(strategy, "{hook}"' not in text, (path, hook)
            assert f'"{hook}", None)' not in text, (path, hook)
