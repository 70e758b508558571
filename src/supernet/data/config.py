"""The ``data:`` section of a config: which dataset, and building it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from ..validation import ConfigError, Strict


class DataConfig(Strict):
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


def build_data(cfg: DataConfig) -> Any:
    """The dataset a `DataConfig` names (what `supernet.training.make_task` accepts)."""
    from .. import data

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
