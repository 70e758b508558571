"""The package's layers depend downwards only, no module imports itself round a cycle, and every subpackage
imports alone in a fresh interpreter.

The import graph is read from the source with `ast` (function-level imports included: an import deferred to
call time is still a dependency), so the test needs no import of the package to find a violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "supernet"

# Rank of each top-level part of the package: a part may import only parts of a lower rank.
# space -> training -> (gradient, searching, ...) -> export/bench -> cli, over shared helpers that import nothing.
LAYERS: dict[str, int] = {
    **dict.fromkeys(("version", "validation", "files", "seeding", "device", "registry", "blocks"), 0),
    **dict.fromkeys(("space", "data"), 1),
    **dict.fromkeys(("cost", "spaces", "converting"), 2),
    "training": 3,
    **dict.fromkeys(("gradient", "searching", "proxies", "predictors"), 4),
    **dict.fromkeys(("config", "estimate"), 5),
    **dict.fromkeys(("export", "bench"), 6),
    **dict.fromkeys(("finetune", "reporting"), 7),
    "demo": 8,
    "": 9,  # the package itself: the public API (`import supernet as sn`)
    "cli": 10,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported supernet module, line, at module level)`` for every import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    # Imports only for type checkers never run: ``if TYPE_CHECKING:`` blocks are skipped.
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import cost` imports the module supernet.cost, not the package.
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(n, node.lineno, id(node) in top_level) for n in names if n.split(".")[0] == "supernet"]
    return found


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to (``supernet.training.loop`` -> ``training``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_of_the_package_has_a_layer() -> None:
    missing = sorted({_part(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def test_parts_import_only_lower_layers() -> None:
    wrong = []
    for module in MODULES:
        for target, line, _ in _imports(module):
            src, dst = _part(module), _part(target)
            if src != dst and LAYERS[dst] >= LAYERS[src]:
                wrong.append(f"{MODULES[module].relative_to(SRC.parent)}:{line} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles found by a depth-first search of ``graph`` (one per back edge)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n) :], n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        for target, _, _ in _imports(module):
            # Importing a submodule first imports its package: count both as dependencies.
            while target and target != module and not module.startswith(target + "."):
                if target in MODULES:
                    graph[module].add(target)
                target = target.rpartition(".")[0]
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_find_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scan must see a deferred (function-level) import from a lower layer to a higher one.
    fake = SRC / "training" / "_layering_probe.py"
    monkeypatch.setitem(MODULES, "supernet.training._layering_probe", fake)
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: "def f():\n    from ..gradient import darts\n")
    assert _imports("supernet.training._layering_probe") == [("supernet.gradient.darts", 2, False)]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    with pytest.raises(AssertionError, match=r"_layering_probe\.py:2 imports supernet\.gradient\.darts"):
        test_parts_import_only_lower_layers()


@pytest.mark.parametrize("part", sorted(p for p in LAYERS if p and (SRC / p).is_dir()))
def test_each_subpackage_imports_alone(part: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import supernet.{part}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
