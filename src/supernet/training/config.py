"""`TrainConfig`: every setting of a training run, validated by pydantic (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt, ValidationInfo, field_validator, model_validator

from ..validation import NoBoolNumbers, validate_model


class TrainConfig(NoBoolNumbers):
    """Settings of one supernet training run (see .notes/train-api.md for the table).

    Load from YAML with `TrainConfig.from_yaml`, from a dict with `TrainConfig.from_dict`; both raise
    `ConfigError` naming any unknown key or bad value.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

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
    seed: int = Field(0, ge=0)
    deterministic: bool = False
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 10
    eval_every: int = Field(0, ge=0)
    eval_batches: PositiveInt = 8
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    progress: bool = True
    tensorboard: bool = True  # also write metrics.jsonl's scalars to RUN_DIR/tensorboard (if installed)

    @field_validator("strategy")
    @classmethod
    def _registered_strategy(cls, v: str, info: ValidationInfo) -> str:
        if (info.context or {}).get("recorded"):
            return v
        from .strategies.base import STRATEGIES

        if v not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {v!r}; expected one of {', '.join(STRATEGIES)} (a strategy of your own is "
                "registered with @supernet.training.register_strategy in a module the config lists under plugins:)"
            )
        return v

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"both Adam betas must be in [0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "train config") -> TrainConfig:
        """Validate a dict (unknown keys and bad values raise `ConfigError` naming the key, after ``where``)."""
        return validate_model(cls, data, where)

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
