"""nbkit's import layers, written down and enforced: a module imports its own layer or a lower one, and no
imports go round in a circle, not even through an import inside a function.

The layers, bottom to top (each may import every layer below it):

0. foundation: `nbkit` itself, errors, paths, plain, validation, layout, locking, progress, _lazy, display
   (the formatting layer of tables and numbers that stages and notebooks show), provenance. The
   standard library and pydantic only; every other module leans on them.
1. `nbkit.data`: the Nova RFT record format, reading, validating and splitting records.
2. `nbkit.policy`: models that answer prompts (records in, completions out).
3. `nbkit.rewards`: the reward contract, graders, the harness. Above policy because a grader may run a
   model (the LLM judge loads its judge through `nbkit.policy.load_generator`); no policy module imports
   a reward.
4. the stages: `nbkit.evaluate`, `nbkit.train`, `nbkit.monitor`, `nbkit.review`. Siblings do not import
   each other, except the two edges in SIBLING_EDGES.
5. the notebook and pipeline layer: `nbkit.params`, `nbkit.report`, `nbkit.runner`, `nbkit.cli`, `nbkit.sweep`, and the
   front ends that live beside their stage's code (FRONT_ENDS: the `nbkit <stage>` subcommands in
   `nbkit/<stage>/cli.py` and the notebook-04 editor widget). They turn notebook parameters and command
   lines into stage calls, so they may import any stage; no stage module imports them at run time.

One exception (TYPING_ONLY): a stage's entry module names its notebook's params class in annotations
(`run(P: LaunchTrainingParams)`), imported under `if TYPE_CHECKING:`. The params class names the entry as a
string (`entry = "nbkit.train.stage:run"`), so neither module imports the other when the code runs.

Imports are read with `ast` from every module's source, in three kinds: module level (run at import),
inside functions (run on first call: the way to keep a heavy or rarely needed module off the import path,
never a way around a cycle) and under TYPE_CHECKING (never run). Layers hold for all three. Cycles are
looked for among the imports that run, module level and inside functions: a cycle hidden in a function is
still a cycle. An annotation may name a module that imports this one (`nbkit.train.stage` names
`LaunchTrainingParams`, and `nbkit.params` builds it from `nbkit.train.spec`), since a TYPE_CHECKING import
never runs. Importing `nbkit.a.b` also runs the package `nbkit.a`, so a module outside that package
depends on the package too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

import nbkit

PACKAGE_DIR = Path(nbkit.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("nbkit", "nbkit.errors", "nbkit.paths", "nbkit.plain", "nbkit.validation", "nbkit.layout",
     "nbkit.locking", "nbkit.progress", "nbkit._lazy", "nbkit.display", "nbkit.provenance"),
    ("nbkit.data",),
    ("nbkit.policy",),
    ("nbkit.rewards",),
    ("nbkit.evaluate", "nbkit.train", "nbkit.monitor", "nbkit.review"),
    ("nbkit.params", "nbkit.report", "nbkit.runner", "nbkit.cli", "nbkit.sweep"),
]
TOP = len(LAYERS) - 1
# Front ends that live in a stage package but belong to the top layer.
FRONT_ENDS = ("nbkit.data.cli", "nbkit.rewards.cli", "nbkit.evaluate.cli", "nbkit.train.cli", "nbkit.monitor.cli",
              "nbkit.train.widgets")
# Sibling stages that may import each other (from, to): why.
SIBLING_EDGES = {
    ("nbkit.evaluate", "nbkit.train"): "the tuned model is found through the run's training job (load_job)",
    ("nbkit.monitor", "nbkit.train"): "metrics are read from the run's training job (job.json, its handle, "
                                      "its output archive)",
}
# Higher-layer modules a lower module may import under TYPE_CHECKING only: why.
TYPING_ONLY = {"nbkit.params": "a stage entry's parameter annotation (see the module doc)"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    kind: str  # "module", "function" or "typing"
    line: int


def module_names(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted name -> file of every module in the package (a package is its __init__.py)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool, known: set[str]) -> list[str]:
    """The known modules an import statement loads: `from pkg import mod` is the submodule when it is one."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    base = source if is_package else source.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
    if module not in known:
        return []
    subs = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known]
    return subs if len(subs) == len(node.names) else [module, *subs]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, text: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import of a known module in one module's source, with its kind."""
    found: list[Import] = []

    def walk(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend(Import(source, t, kind, child.lineno)
                             for t in _targets(child, source, is_package, known))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                walk(child, "typing" if kind == "typing" else "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                walk(child, kind)

    walk(ast.parse(text), "module")
    return found


def all_imports(root: Path = PACKAGE_DIR) -> list[Import]:
    modules = module_names(root)
    known = set(modules)
    edges = []
    for name, path in modules.items():
        edges += imports_of(name, path.read_text(), path.name == "__init__.py", known)
    return edges


def layer_of(module: str) -> int:
    """The layer of a module: a front end is on top, otherwise its longest listed prefix decides."""
    if module in FRONT_ENDS:
        return TOP
    best, layer = -1, None
    for index, members in enumerate(LAYERS):
        for prefix in members:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    if layer is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return layer


def _package(module: str) -> str:
    """The listed name a module belongs to (nbkit.train for nbkit.train.job), for sibling checks."""
    return max((p for members in LAYERS for p in members if module == p or module.startswith(p + ".")), key=len)


def layer_violations(edges: Iterable[Import]) -> list[str]:
    """Every import of a higher layer, or of a sibling stage, that no rule above allows."""
    problems = []
    for edge in edges:
        src, dst = layer_of(edge.source), layer_of(edge.target)
        where = f"{edge.source}:{edge.line} imports {edge.target} ({edge.kind} level)"
        if dst > src:
            if edge.kind == "typing" and edge.target in TYPING_ONLY:
                continue
            problems.append(f"{where}: layer {dst} is above layer {src}")
        elif dst == src and src != TOP and src != 0:
            pair = (_package(edge.source), _package(edge.target))
            if pair[0] != pair[1] and edge.source not in FRONT_ENDS and pair not in SIBLING_EDGES:
                problems.append(f"{where}: sibling stages; allowed pairs are {sorted(SIBLING_EDGES)}")
    return problems


def runtime_graph(edges: Iterable[Import], kinds: tuple[str, ...] = ("module", "function")) -> dict[str, set[str]]:
    """Which modules each module runs the import of (its imports of `kinds` and the packages those live in)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.kind not in kinds:
            continue
        targets = graph.setdefault(edge.source, set())
        targets.add(edge.target)
        parts = edge.target.split(".")
        for i in range(2, len(parts)):
            package = ".".join(parts[:i])
            if not (edge.source == package or edge.source.startswith(package + ".")):
                targets.add(package)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# ---------------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return all_imports()


def test_every_module_has_a_layer():
    for name in module_names():
        layer_of(name)  # raises, naming the module, when a new top-level module is in no layer


def test_no_module_imports_a_higher_layer_or_a_sibling_stage(edges):
    problems = layer_violations(edges)
    assert not problems, "import layering broken (see the layers in tests/test_layering.py):\n" + "\n".join(problems)


def test_imports_form_no_cycle(edges):
    at_import = cycles(runtime_graph(edges, ("module",)))
    assert not at_import, "import cycles at module level:\n" + "\n".join(" <-> ".join(c) for c in at_import)
    hidden = cycles(runtime_graph(edges))
    assert not hidden, ("import cycles through imports inside functions (move the code that needs the other "
                        "module to where it belongs):\n" + "\n".join(" <-> ".join(c) for c in hidden))


def test_the_checks_catch_an_upward_import_a_sibling_import_and_a_cycle(tmp_path):
    """The checker itself: a planted violation of each kind is reported, and an allowed one is not."""
    pkg = tmp_path / "nbkit"
    for rel, text in {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "",
        "data/records.py": "def parse():\n    from nbkit.data import validate\n",
        "data/validate.py": "from nbkit.data.records import X\n",
        "data/leak.py": "def f():\n    from nbkit.train import job\n",
        "train/__init__.py": "",
        "train/job.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nbkit.params import P\n",
        "monitor/__init__.py": "",
        "monitor/live.py": "from nbkit.train import job\nfrom nbkit.review import frame\n",
        "review/__init__.py": "",
        "review/frame.py": "",
        "params.py": "from nbkit.train import job\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    planted = all_imports(pkg)
    problems = layer_violations(planted)
    assert any("nbkit.data.leak:2 imports nbkit.train.job (function level)" in p for p in problems)
    assert any("nbkit.monitor.live:2 imports nbkit.review.frame" in p and "sibling" in p for p in problems)
    assert len(problems) == 2, problems  # monitor -> train and the typing-only params import are allowed
    assert cycles(runtime_graph(planted, ("module",))) == []  # hidden in a function ...
    assert cycles(runtime_graph(planted)) == [["nbkit.data.records", "nbkit.data.validate"]]  # ... and found
    # params -> train.job at import, train.job -> params under TYPE_CHECKING only: not a cycle
