"""`TrainConfig`: every setting of a training run, validated by pydantic (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration has an unknown key, a wrong type or a value out of range (the message names the key)."""


def format_validation_error(err: ValidationError, where: str) -> str:
    """One readable line per problem: ``where: 'key.sub': what was expected (got ...)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
        if e.get("type") == "extra_forbidden":
            lines.append(f"{where}: unknown key {loc!r}")
        else:
            got = e.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            lines.append(f"{where}: {loc!r}: {e.get('msg')} (got {shown})")
    return "\n".join(lines)


def validate_model(model: type[BaseModel], data: Mapping[str, Any] | BaseModel | None, where: str) -> Any:
    """``model.model_validate(data)`` that raises `ConfigError` naming the bad key and listing allowed keys."""
    if isinstance(data, model):
        return data
    if data is None:
        data = {}
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        msg = format_validation_error(err, where)
        if "unknown key" in msg:
            msg += f"\n{where}: allowed keys: {', '.join(model.model_fields)}"
        raise ConfigError(msg) from None


class TrainConfig(BaseModel):
    """Settings of one supernet training run (see .notes/train-api.md for the table).

    Load from YAML with `TrainConfig.from_yaml`, from a dict with `TrainConfig.from_dict`; both raise
    `ConfigError` naming any unknown key or bad value.
    """

    model_config = ConfigDict(extra="forbid", frozen=False)

    steps: PositiveInt = 1000
    batch_size: PositiveInt = 32
    block_size: PositiveInt | None = None
    strategy: str = "uniform"
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 10
    eval_every: int = Field(0, ge=0)
    eval_batches: PositiveInt = 8
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrainConfig:
        """Validate a dict (unknown keys and bad values raise `ConfigError` naming the key)."""
        return validate_model(cls, data, "train config")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of settings (a mapping at top level)."""
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        return validate_model(cls, data, f"train config {path}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every setting."""
        return self.model_dump(mode="json")
