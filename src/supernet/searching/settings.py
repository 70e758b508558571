"""`SearchSettings`: everything a search is asked to do, validated by pydantic (and picklable, for workers)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, Field, PositiveInt, field_validator

from ..validation import NoBoolNumbers, validate_model
from .algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from .objectives import Constraint, Objective, parse_constraints, parse_objectives
from .potential import PotentialOptions

# Without max_total_trials a search stops after 10 * trials + 50 trials of any kind: room for duplicates and
# infeasible proposals, while a sampler stuck on a few archs cannot loop for ever.
MAX_TRIALS_FACTOR = 10
MAX_TRIALS_EXTRA = 50
DEFAULT_STUDY_NAME = "search"
_OPS = ("<=", ">=", "<", ">")


class SearchOptions(NoBoolNumbers):
    """The settings a search shares with the ``search:`` section of a pipeline config (declared once for both).

    Attributes:
        algorithm: a name registered in `ALGORITHMS` (``random``, ``evolution``, ``nsga2``, ...).
        trials: distinct archs to get results for.
        workers: local worker processes sharing the study. seed: seeds the sampler.
        storage / study_name: the Optuna study (None: a SQLite file in the run directory, or in memory).
        population_size / sample_size: evolution's P and S, NSGA-II's population (None: the algorithm's default).
        eval_batches / eval_batch_size / bn_batches: the default evaluator's val batches and BN recalibration.
        latency_device: where latency is measured.
        potential: the rounds of a search with the ``potential`` objective (`PotentialOptions`: rounds, training
            steps per round, the potential's window, learning rate, batch size); unused by other searches.
    """

    algorithm: str = DEFAULT_ALGORITHM
    trials: PositiveInt = 50
    workers: PositiveInt = 1
    seed: int = Field(0, ge=0)
    storage: str | None = None
    study_name: str = DEFAULT_STUDY_NAME
    population_size: PositiveInt | None = None
    sample_size: PositiveInt | None = None
    eval_batches: PositiveInt | None = 8
    eval_batch_size: PositiveInt = 64
    bn_batches: int = Field(16, ge=0)
    latency_device: str = "cpu"
    potential: PotentialOptions = Field(default_factory=PotentialOptions)

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, v: str) -> str:
        ALGORITHMS.get(v)  # UnknownNameError (a ValueError) naming the registered algorithms
        return v


class SearchSettings(SearchOptions):
    """What a search is asked to do (the arguments of `supernet.searching.search` that are plain values).

    The search's collaborators (the supernet or run it searches, the evaluator, the example input, the task, a
    screen) are given to the `Searcher` beside these. Objectives and constraints may be given in any form
    `parse_objectives` / `parse_constraints` accept; they are stored parsed. ``SearchSettings.model_validate`` of
    ``settings.model_dump(mode="json")`` gives the same settings back (what `Searcher.state_dict` records).

    Attributes (beside those of `SearchOptions`):
        objectives / constraints: what to optimise under which hard constraints.
        max_total_trials: stop after this many trials of any kind (None: `MAX_TRIALS_FACTOR` x trials +
            `MAX_TRIALS_EXTRA`; see `max_total`).
        out_dir: where pareto.json etc. are written (None: ``RUN_DIR/search`` for runs, nowhere otherwise).
        device: where the supernet is evaluated (``auto``: CUDA if any).
        screen_candidates: proposals per trial when a screen is given. progress: show a progress bar.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    objectives: list[Objective] = Field(default_factory=lambda: parse_objectives(["loss", "params"]))
    constraints: list[Constraint] = Field(default_factory=list)
    max_total_trials: PositiveInt | None = None
    out_dir: str | None = None
    device: str = "auto"
    screen_candidates: PositiveInt = 8
    progress: bool = True

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, v: Any) -> Any:
        if _records(v, Objective):  # already parsed, or as model_dump wrote them
            return [o if isinstance(o, Objective) else parse_objectives({o["metric"]: o["direction"]})[0] for o in v]
        return parse_objectives(v)

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraints(cls, v: Any) -> Any:
        if _records(v, Constraint):
            return [c if isinstance(c, Constraint) else _constraint(c) for c in v]
        return parse_constraints(v)

    @field_validator("device", "latency_device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        return str(v) if isinstance(v, torch.device) else v

    @field_validator("out_dir", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        return os.fspath(v) if isinstance(v, os.PathLike) else v

    @field_validator("study_name", mode="before")
    @classmethod
    def _study_name(cls, v: Any) -> Any:
        return v or DEFAULT_STUDY_NAME

    @classmethod
    def create(cls, data: Mapping[str, Any] | SearchSettings | None = None, **changes: Any) -> SearchSettings:
        """Validate ``data`` updated by ``changes``; a bad value raises `ConfigError` (a ValueError) naming it."""
        if isinstance(data, SearchSettings):
            data = dict(data)
        merged = {**(data or {}), **changes}
        return validate_model(cls, merged, "search settings")

    @property
    def max_total(self) -> int:
        """The most trials of any kind the study may hold (``max_total_trials`` or the default)."""
        return self.max_total_trials or MAX_TRIALS_FACTOR * self.trials + MAX_TRIALS_EXTRA

    @property
    def eval_options(self) -> dict[str, Any]:
        """The default evaluator's options (`RunEvaluator` keyword arguments, recorded in pareto.json)."""
        return {"max_batches": self.eval_batches, "batch_size": self.eval_batch_size, "bn_batches": self.bn_batches}

    @property
    def out_path(self) -> Path | None:
        """``out_dir`` as a path."""
        return Path(self.out_dir) if self.out_dir is not None else None


def _records(v: Any, kind: type) -> bool:
    """Whether ``v`` is a non-empty list of ``kind`` instances or of dicts of their fields."""
    fields = set(kind.__dataclass_fields__)  # type: ignore[attr-defined]
    # fields with a default (a constraint's fraction/reference) may be missing from records written before them
    required = {f.name for f in dataclasses.fields(kind) if f.default is dataclasses.MISSING}
    return (
        isinstance(v, (list, tuple))
        and bool(v)
        and all(isinstance(x, kind) or (isinstance(x, Mapping) and required <= set(x) <= fields) for x in v)
    )


def _constraint(c: Mapping[str, Any]) -> Constraint:
    if c["op"] not in _OPS or isinstance(c["bound"], bool) or not isinstance(c["bound"], (int, float)):
        raise ValueError(f"expected a constraint {{metric, op, bound}} with op one of {', '.join(_OPS)}, got {c}")
    fraction, reference = c.get("fraction"), c.get("reference")
    return Constraint(str(c["metric"]), c["op"], float(c["bound"]),
                      None if fraction is None else float(fraction), None if reference is None else float(reference))


# ---------------------------------------------------------------- the old name of `algorithm`

STRATEGY_DEPRECATION = (
    "the search's 'strategy' is now called 'algorithm' ({how}); 'strategy' still works in this release and will "
    "be removed in the next"
)


def algorithm_of(algorithm: str, strategy: str | None, stacklevel: int = 3) -> str:
    """``algorithm``, or the deprecated ``strategy`` of ``sn.search(..., strategy=...)`` with a DeprecationWarning.

    Raises:
        ValueError: both were given, with different names.
    """
    if strategy is None:
        return algorithm
    warnings.warn(STRATEGY_DEPRECATION.format(how="sn.search(..., algorithm=...)"), DeprecationWarning, stacklevel)
    if algorithm not in (DEFAULT_ALGORITHM, strategy):
        raise ValueError(f"pass algorithm= only (strategy= is its deprecated name): got algorithm={algorithm!r} "
                         f"and strategy={strategy!r}")
    return strategy


def rename_strategy_key(data: Any, where: str) -> Any:
    """A config section (``search: {...}``) with its deprecated key ``strategy`` renamed to ``algorithm``.

    Warns (DeprecationWarning) when it renames; other data is returned as is.

    Raises:
        ValueError: the section has both keys, with different values.
    """
    if not isinstance(data, Mapping) or "strategy" not in data:
        return data
    data = dict(data)
    strategy = data.pop("strategy")
    if "algorithm" in data and data["algorithm"] != strategy:
        raise ValueError(
            f"{where}: give 'algorithm' only ('strategy' is its deprecated name): got algorithm="
            f"{data['algorithm']!r} and strategy={strategy!r}"
        )
    data["algorithm"] = strategy
    warnings.warn(STRATEGY_DEPRECATION.format(how=f"write '{where}: {{algorithm: ...}}'"), DeprecationWarning, 2)
    return data
