"""Configs of the whole pipeline (space, data, train, search, export, finetune), validated by pydantic.

A YAML file for ``supernet train CONFIG`` looks like (``search``/``export`` sections give the defaults of
``supernet search`` / ``supernet export`` on that run)::

    run_dir: runs/gpt
    device: auto
    plugins: []            # modules of your own that register methods (spaces, strategies, ...), imported first
    space: {name: gpt, kwargs: {embed_dims: [64, 96, 128]}}
    data: {name: shakespeare}
    train: {steps: 2000, batch_size: 32, strategy: sandwich, lr: 0.002}
    search: {algorithm: nsga2, objectives: [loss, params], constraints: ["params <= 500k"], trials: 60}
    export: {arch: best, constraints: ["params <= 300k"]}

An unknown key or a wrong type raises `ConfigError` naming the key (``search.trails``) and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PositiveInt, ValidationInfo, field_validator, model_validator

from .data.config import DataConfig
from .files import FileFormatError, read_json
from .searching.objectives import (
    METRIC_DOMAINS,
    RUN_METRICS,
    check_known_metrics,
    check_satisfiable,
    parse_constraints,
    parse_objectives,
)
from .searching.settings import SearchOptions, rename_strategy_key
from .training.checkpoint import PIPELINE_JSON
from .training.config import TrainConfig
from .validation import ConfigError, Strict, validate_model


class SpaceConfig(Strict):
    """A space by name and its keyword arguments.

    ``name`` is a ready or registered space (``supernet info`` lists them) or ``module:function``, a function
    in an importable module that returns a `SuperModule` (annotated ``-> sn.SuperModule``). ``kwargs`` are
    checked against the factory's signature and parameter types: an unknown keyword or a wrong type is an
    error naming the keyword.
    """

    name: str = "gpt"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from .spaces import resolve_space

        resolve_space(v)  # raises SpaceError (a ValueError) naming what failed
        return v

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from .spaces import check_space_kwargs

        name = info.data.get("name")
        if name is not None:  # a bad name is reported on its own
            check_space_kwargs(name, v)
        return v


def _check_constraints(cls: type, v: Any) -> Any:
    """Accept one constraint string or a list; fail at once on one that does not parse, names a metric the
    search of a run does not measure, or that no arch can meet (``loss <= 0``)."""
    if isinstance(v, str):
        v = [v]
    if isinstance(v, list):
        cons = parse_constraints([str(c) for c in v])
        check_known_metrics([], cons, RUN_METRICS, "the search of a training run")
        check_satisfiable(cons, METRIC_DOMAINS)
    return v


class SearchConfig(SearchOptions):
    """Settings of ``supernet search`` (see `supernet.searching.search`).

    ``algorithm`` names a search algorithm of `supernet.searching.ALGORITHMS`. The deprecated key ``strategy`` is
    still read as ``algorithm`` (with a DeprecationWarning), also from the pipeline.json of older runs.
    """

    model_config = Strict.model_config

    objectives: list[str] = Field(default_factory=lambda: ["loss", "params"])
    constraints: list[str] = Field(default_factory=list)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        check_known_metrics(parse_objectives(v), [], RUN_METRICS, "the search of a training run")
        return v

    _constraints = field_validator("constraints", mode="before")(_check_constraints)

    @model_validator(mode="before")
    @classmethod
    def _old_strategy_key(cls, data: Any) -> Any:
        return rename_strategy_key(data, "search")


class ExportConfig(Strict):
    """Which arch to export and where: ``best`` (under ``constraints``), an index into the front, or JSON."""

    arch: str = "best"
    out: str | None = None
    constraints: list[str] = Field(default_factory=list)
    metric: str | None = None
    latency_device: str = "cpu"

    _constraints = field_validator("constraints", mode="before")(_check_constraints)


class FinetuneConfig(Strict):
    """Settings of ``supernet finetune`` (plain training of an exported model)."""

    steps: PositiveInt = 200
    batch_size: PositiveInt = 32
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    eval_batches: PositiveInt | None = None
    eval_batch_size: PositiveInt | None = None
    seed: int = Field(0, ge=0)


class PipelineConfig(Strict):
    """The whole pipeline: a YAML file with these sections (each optional).

    ``plugins`` lists modules of your own to import before anything else is checked: a module that registers a
    space, a training strategy, a proxy... with the public decorators makes those names usable in the rest of
    the config (``plugins: [mymethods]``; the module must be importable from the working directory or
    ``PYTHONPATH``). The list is recorded in ``pipeline.json``, so ``supernet search RUN`` imports them again.
    """

    plugins: list[str] = Field(default_factory=list)
    run_dir: str = "runs/run"
    device: str = "auto"
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)

    @field_validator("plugins")
    @classmethod
    def _import_plugins(cls, v: list[str]) -> list[str]:
        from .registry import load_plugins

        load_plugins(v)  # a ValueError naming the module that failed
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not v.startswith("cuda"):
            raise ValueError(f"expected 'auto', 'cpu' or 'cuda[:N]', got {v!r}")
        return v

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> PipelineConfig:
        """Validate a dict; unknown keys and bad values raise `ConfigError` naming the key."""
        return validate_model(cls, data, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        """Read and validate a YAML config file."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"config {p}: not valid YAML: {err}") from None
        return cls.from_dict(data if data is not None else {}, where=f"config {p}")

    def to_json(self) -> dict[str, Any]:
        """Every setting as JSON."""
        return self.model_dump(mode="json")


def load_section(model: type[BaseModel], data: Any, where: str) -> Any:
    """Validate one section (e.g. a `SearchConfig` from a dict), raising `ConfigError` naming the key."""
    return validate_model(model, data, where)


def read_pipeline(run_dir: str | Path) -> PipelineConfig:
    """The validated ``pipeline.json`` of a run made by ``supernet train`` (bad content names the file and key)."""
    path = Path(run_dir) / PIPELINE_JSON
    data = read_json(path, what="pipeline config (pipeline.json)")
    try:
        return PipelineConfig.from_dict(data, where=str(path))
    except ConfigError as err:
        raise FileFormatError(path, f"not a valid pipeline config: {err}") from None
