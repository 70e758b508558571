"""Two local worker processes on one SQLite study: no arch evaluated twice, one shared Pareto front."""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import supernet as sn
from supernet.searching import arch_key, search
from supernet.searching.pareto import dominates


def space() -> sn.SuperModule:
    return sn.spaces.gpt(
        block_size=8, embed_dims=(8, 16, 24), num_heads=(1, 2), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=4
    )


class LoggingEvaluator:
    """Appends one line per evaluation (pid + arch) to a file shared by the worker processes."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __call__(self, arch: dict) -> dict:
        time.sleep(0.02)  # long enough for the workers to overlap
        with open(self.path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "arch": arch}) + "\n")
        return {"loss": 3.0 - 0.02 * arch["embed_dim"] - 0.1 * arch["depth"]}


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    log = tmp_path / "evals.jsonl"
    result = search(
        space(),
        LoggingEvaluator(log),
        objectives=["loss", "params"],
        algorithm="random",
        trials=24,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        workers=2,
        out_dir=tmp_path / "out",
        seed=0,
        progress=False,
    )
    sp = space()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    per_arch = collections.Counter(arch_key(sp, rec["arch"]) for rec in lines)
    assert max(per_arch.values()) == 1, f"archs evaluated twice: {[k for k, n in per_arch.items() if n > 1]}"
    pids = {rec["pid"] for rec in lines}
    assert len(pids) == 2 and os.getpid() not in pids, "both worker processes must have evaluated archs"
    # both workers' results are in the one front: it is computed over every worker's archs
    assert len(result.entries) >= 24 and result.evaluations == len(lines)
    assert {e["key"] for e in result.entries} == set(per_arch)
    vec = {e["key"]: [e["metrics"]["loss"], e["metrics"]["params"]] for e in result.entries}
    front = {e["key"] for e in result.front}
    for k in front:
        assert not any(dominates(vec[o], vec[k], result.objectives) for o in vec)
    for k in set(vec) - front:
        assert any(dominates(vec[f], vec[k], result.objectives) for f in front)
    saved = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert {e["key"] for e in saved["front"]} == front
