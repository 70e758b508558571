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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationInfo, field_validator, model_validator

from .files import FileFormatError, read_json
from .searching.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from .searching.objectives import (
    METRIC_DOMAINS,
    RUN_METRICS,
    check_known_metrics,
    check_satisfiable,
    parse_constraints,
    parse_objectives,
)
from .training.checkpoint import PIPELINE_JSON, read_run_json
from .training.config import ConfigError, NoBoolNumbers, TrainConfig, validate_model

SHAKESPEARE_CHARS = 1_115_394


class _Strict(NoBoolNumbers):
    """Base of the pipeline's sections: unknown keys, booleans for numbers and inf/nan are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SpaceConfig(_Strict):
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


class DataConfig(_Strict):
    """The dataset: ``shakespeare`` (embedded), ``text`` (a text file), ``digits`` or ``images`` (a tarball)."""

    name: Literal["shakespeare", "text", "digits", "images"] = "shakespeare"
    path: str | None = None
    val_fraction: float | None = Field(None, gt=0, lt=1)
    size: PositiveInt | None = None
    subset: PositiveInt | None = None
    seed: int = Field(0, ge=0)

    @field_validator("path")
    @classmethod
    def _nonempty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("expected a file path, got an empty string")
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


class SearchConfig(_Strict):
    """Settings of ``supernet search`` (see `supernet.searching.search`).

    ``algorithm`` names a search algorithm of `supernet.searching.ALGORITHMS`. The deprecated key ``strategy`` is
    still read as ``algorithm`` (with a DeprecationWarning), also from the pipeline.json of older runs.
    """

    algorithm: str = DEFAULT_ALGORITHM
    objectives: list[str] = Field(default_factory=lambda: ["loss", "params"])
    constraints: list[str] = Field(default_factory=list)
    trials: PositiveInt = 50
    workers: PositiveInt = 1
    storage: str | None = None
    study_name: str = "search"
    seed: int = Field(0, ge=0)
    population_size: PositiveInt | None = None
    sample_size: PositiveInt | None = None
    eval_batches: PositiveInt | None = 8
    eval_batch_size: PositiveInt = 64
    bn_batches: int = Field(16, ge=0)
    latency_device: str = "cpu"

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        check_known_metrics(parse_objectives(v), [], RUN_METRICS, "the search of a training run")
        return v

    _constraints = field_validator("constraints", mode="before")(_check_constraints)

    @model_validator(mode="before")
    @classmethod
    def _old_strategy_key(cls, data: Any) -> Any:
        from .searching.settings import rename_strategy_key

        return rename_strategy_key(data, "search")

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, v: str) -> str:
        ALGORITHMS.get(v)  # UnknownNameError (a ValueError) listing the registered algorithms
        return v


class ExportConfig(_Strict):
    """Which arch to export and where: ``best`` (under ``constraints``), an index into the front, or JSON."""

    arch: str = "best"
    out: str | None = None
    constraints: list[str] = Field(default_factory=list)
    metric: str | None = None
    latency_device: str = "cpu"

    _constraints = field_validator("constraints", mode="before")(_check_constraints)


class FinetuneConfig(_Strict):
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


class PipelineConfig(_Strict):
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


def build_data(cfg: DataConfig) -> Any:
    """The dataset a `DataConfig` names (what `supernet.training.make_task` accepts)."""
    from . import data

    if cfg.name == "shakespeare":
        return data.shakespeare(cfg.val_fraction if cfg.val_fraction is not None else 0.1)
    if cfg.name == "text":
        if cfg.path is None:
            raise ConfigError("data: 'path': a text dataset needs the path of a text file")
        return data.char_text_file(cfg.path, cfg.val_fraction if cfg.val_fraction is not None else 0.1)
    if cfg.name == "digits":
        return data.digits(cfg.val_fraction if cfg.val_fraction is not None else 0.2, seed=cfg.seed)
    if cfg.path is None:
        raise ConfigError("data: 'path': an image dataset needs the path of an image tarball")
    kwargs: dict[str, Any] = {"seed": cfg.seed}
    if cfg.size is not None:
        kwargs["size"] = cfg.size
    if cfg.subset is not None:
        kwargs["subset"] = cfg.subset
    return data.image_tarball(cfg.path, **kwargs)


def build_task(cfg: DataConfig, block_size: int | None = None, seed: int = 0) -> Any:
    """The `supernet.training.Task` of a `DataConfig` (``block_size`` for text)."""
    from .training import make_task

    return make_task(build_data(cfg), block_size=block_size, val_fraction=cfg.val_fraction or 0.1, seed=seed)


def read_pipeline(run_dir: str | Path) -> PipelineConfig:
    """The validated ``pipeline.json`` of a run made by ``supernet train`` (bad content names the file and key)."""
    path = Path(run_dir) / PIPELINE_JSON
    data = read_json(path, what="pipeline config (pipeline.json)")
    try:
        return PipelineConfig.from_dict(data, where=str(path))
    except ConfigError as err:
        raise FileFormatError(path, f"not a valid pipeline config: {err}") from None


def data_config_of_run(run_dir: str | Path) -> DataConfig:
    """How a run's data can be rebuilt: its ``pipeline.json``, else recognised from ``run.json`` (Shakespeare).

    Raises:
        ValueError: the run was trained from Python on data this cannot rebuild (pass ``task=`` then).
    """
    run_dir = Path(run_dir)
    pipe = run_dir / PIPELINE_JSON
    if pipe.is_file():
        return read_pipeline(run_dir).data
    meta = read_run_json(run_dir)
    task = meta.get("task") or {}
    n_train, n_val = task.get("train_tokens"), task.get("val_tokens")
    if task.get("kind") == "lm" and task.get("vocab_size") == 65 and n_train and n_val:
        for frac in (0.1, 0.05, 0.2, 0.15, 0.25):  # the common val fractions of char_text
            if n_train + n_val == SHAKESPEARE_CHARS and n_train == int(SHAKESPEARE_CHARS * (1.0 - frac)):
                return DataConfig(name="shakespeare", val_fraction=frac)
    raise ValueError(
        f"cannot tell which data {run_dir} was trained on (no {PIPELINE_JSON}; trained from Python?): "
        "pass the task, e.g. sn.search(run_dir, task=supernet.training.make_task(data, block_size))"
    )


def task_of_run(run_dir: str | Path) -> Any:
    """Rebuild the `Task` of a run directory (see `data_config_of_run`)."""
    run_dir = Path(run_dir)
    cfg = data_config_of_run(run_dir)
    meta = read_run_json(run_dir)
    task_meta = meta.get("task") or {}
    seed = int((meta.get("config") or {}).get("seed", 0))
    return build_task(cfg, block_size=task_meta.get("block_size"), seed=seed)
