"""What a search found: `SearchResult`, and its files (pareto.json / pareto.csv / trials.csv / pareto.png)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from pydantic import model_validator

from ..files import FileModel, read_json, write_json
from .algorithms import DEFAULT_ALGORITHM
from .objectives import Constraint, Objective
from .pareto import plot_front, write_csv
from .study import STALL_TRIALS, search_progress, stop_reason

SEARCH_DIR = "search"
PARETO_FORMAT = "supernet-search"


class _ParetoObjective(FileModel):
    metric: str
    direction: Literal["minimize", "maximize"]


class _ParetoEntry(FileModel):
    arch: dict[str, Any]
    metrics: dict[str, float | None]


class ParetoFile(FileModel):
    """The shape of pareto.json, as `SearchResult.to_json` writes it (newer versions may add keys).

    Files written before the search's ``strategy`` was renamed ``algorithm`` have ``strategy`` instead.
    """

    format: Literal["supernet-search"]
    version: int
    algorithm: str
    objectives: list[_ParetoObjective]
    constraints: list[str]
    front: list[_ParetoEntry]

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "algorithm" not in data and "strategy" in data:
            return {**data, "algorithm": data["strategy"]}
        return data


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        front: Pareto-optimal feasible entries ``{"trial", "arch", "key", "metrics"}``, best first objective first.
        entries: every feasible evaluated arch (one entry per distinct subnet).
        objectives / constraints: what was optimised under which hard constraints.
        evaluations: how many subnets were actually evaluated (duplicates reuse earlier results).
        trials: all trials of the study, in any state.
        out_dir: where pareto.json / pareto.csv / pareto.png / trials.csv were written (None: nothing written).
        storage / study_name: the Optuna study holding the full record.
        algorithm: the search algorithm's name.
        rejected: candidates rejected before evaluation by a params/FLOPs/latency constraint (EEEA's early exit:
            such an arch never enters evolution's population and is never evaluated); every rejected proposal counts.
        extra: more keys of pareto.json (why the search stopped early, how archs were evaluated, ...).
    """

    front: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    objectives: list[Objective]
    constraints: list[Constraint]
    evaluations: int
    trials: int
    out_dir: Path | None = None
    storage: str | None = None
    study_name: str = "search"
    algorithm: str = DEFAULT_ALGORITHM
    rejected: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, Any]:
        """The front's best entry on the first objective."""
        if not self.front:
            raise ValueError("the search found no feasible arch")
        return self.front[0]

    @property
    def strategy(self) -> str:
        """Deprecated name of `algorithm`."""
        warnings.warn("SearchResult.strategy is now SearchResult.algorithm", DeprecationWarning, stacklevel=2)
        return self.algorithm

    def to_json(self) -> dict[str, Any]:
        """The JSON written as pareto.json."""
        return {
            "format": PARETO_FORMAT,
            "version": 1,
            "algorithm": self.algorithm,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "constraints": [c.describe() for c in self.constraints],
            "study_name": self.study_name,
            "storage": self.storage,
            "trials": self.trials,
            "evaluations": self.evaluations,
            "rejected": self.rejected,
            "distinct_archs": len(self.entries),
            "front": self.front,
            **self.extra,
        }


def collect_entries(study: optuna.Study) -> list[dict[str, Any]]:
    """One entry per distinct feasible subnet with results (the earliest trial of each key)."""
    seen: dict[str, dict[str, Any]] = {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        key = t.user_attrs.get("key")
        if key is None or key in seen or not t.user_attrs.get("feasible", False) or "metrics" not in t.user_attrs:
            continue
        seen[key] = {"trial": t.number, "arch": t.user_attrs["arch"], "key": key, "metrics": t.user_attrs["metrics"]}
    return list(seen.values())


def stop_note(study: optuna.Study, trials: int, max_total: int, space_archs: int | None) -> dict[str, Any]:
    """``extra`` of the result: the space's size, and why the search stopped short of ``trials`` archs."""
    p = search_progress(study)
    note: dict[str, Any] = {} if space_archs is None else {"space_archs": space_archs}
    reason = stop_reason(p, trials, max_total, space_archs)
    if reason == "exhausted":
        if p.infeasible:
            found = f"all were tried ({p.distinct} evaluated, {p.infeasible} infeasible under the constraints)"
        else:
            found = "all were evaluated"
        note.update(
            exhausted=True,
            message=f"the space has only {space_archs} distinct archs and {found}; {trials} trials were asked for",
        )
    elif reason == "stalled":
        note.update(
            stalled=True,
            message=f"stopped after {STALL_TRIALS} trials in a row proposed only archs tried before: "
            f"{p.distinct} of the {trials} distinct archs asked for were evaluated",
        )
    elif reason == "max_total":
        note["message"] = (
            f"stopped at the limit of {max_total} trials (max_total_trials): "
            f"{p.distinct} of the {trials} distinct archs asked for were evaluated"
        )
    return note


def write_outputs(result: SearchResult) -> None:
    """Write pareto.json, pareto.csv, trials.csv and pareto.png into ``result.out_dir`` (each atomically)."""
    out = Path(result.out_dir)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    metric_names = list(dict.fromkeys([o.metric for o in result.objectives] + _all_metrics(result.entries)))
    write_json(out / "pareto.json", result.to_json())
    write_csv(out / "pareto.csv", result.front, metric_names)
    write_csv(out / "trials.csv", result.entries, metric_names)
    if result.entries:
        title = f"{result.algorithm}: {len(result.entries)} archs, {len(result.front)} on the front"
        plot_front(out / "pareto.png", result.entries, result.front, result.objectives, title=title)


def _all_metrics(entries: Sequence[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for e in entries:
        names.update(dict.fromkeys(e["metrics"]))
    return list(names)


def load_front(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a pareto.json (a file or the directory holding it, or a run dir with ``search/pareto.json``).

    A file written before ``strategy`` was renamed ``algorithm`` gets ``algorithm`` added (its ``strategy`` stays).

    Raises:
        FileNotFoundError: no pareto.json there.
        FileFormatError: the file is not UTF-8, not JSON, or not of the `ParetoFile` shape (naming the file).
    """
    p = Path(path)
    for cand in (p, p / "pareto.json", p / SEARCH_DIR / "pareto.json"):
        if cand.is_file():
            data = dict(read_json(cand, model=ParetoFile, what="pareto.json of a search"))
            if "algorithm" not in data and "strategy" in data:
                data = {"algorithm": data["strategy"], **data}
            return data
    raise FileNotFoundError(f"no pareto.json at {p} (run `supernet search` first)")
