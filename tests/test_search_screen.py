"""Pre-filtering in search: each trial evaluates the best-scoring of several proposals."""

from __future__ import annotations

import pytest

import supernet as sn
from supernet.searching import search


def one_decision_space() -> sn.SuperModule:
    return sn.SuperModule(sn.Linear(4, sn.Choice(list(range(1, 21)), name="width")))


class Recorder:
    """Screen and evaluator that log their calls in one sequence."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    def screen(self, arch: dict) -> float:
        self.log.append(("screen", arch["width"]))
        return -abs(arch["width"] - 7)  # the screen prefers widths near 7

    def evaluate(self, arch: dict) -> dict:
        self.log.append(("eval", arch["width"]))
        return {"loss": float(arch["width"])}


@pytest.mark.parametrize("algorithm", ["random", "evolution"])
def test_each_evaluation_is_the_best_screened_proposal(algorithm: str) -> None:
    rec = Recorder()
    search(
        one_decision_space(),
        evaluator=rec.evaluate,
        objectives=["loss"],
        algorithm=algorithm,
        trials=12,
        screen=rec.screen,
        screen_candidates=5,
        population_size=4,
        sample_size=2,
        progress=False,
        seed=1,
    )
    evals = [i for i, (kind, _) in enumerate(rec.log) if kind == "eval"]
    assert evals
    for i in evals:
        proposals = [w for kind, w in rec.log[i - 5 : i] if kind == "screen"]
        assert len(proposals) == 5, rec.log[max(0, i - 6) : i + 1]
        assert abs(rec.log[i][1] - 7) == min(abs(w - 7) for w in proposals)


def test_screening_is_refused_with_nsga2() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="nsga2"):
        search(
            one_decision_space(),
            evaluator=rec.evaluate,
            objectives=["loss"],
            algorithm="nsga2",
            trials=2,
            screen=rec.screen,
            progress=False,
        )
