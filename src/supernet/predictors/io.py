"""Saving and loading GBDT predictors as JSON (boosters as LightGBM's text model format; no pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..files import FileModel, read_json, write_text
from .gbdt import GBDTPredictor
from .pretrain import PretrainedGBDTPredictor

FORMAT = "supernet-predictor"
VERSION = 1


class PredictorFile(FileModel):
    """A saved predictor: its kind, settings and LightGBM boosters as text."""

    format: Literal["supernet-predictor"]
    version: int
    kind: Literal["GBDTPredictor", "PretrainedGBDTPredictor"]
    n_models: int
    rounds: int
    params: dict[str, Any]
    seed: int
    choices: dict[str, list[Any]]
    models: list[str]


def save_predictor(
    predictor: GBDTPredictor, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write a fitted (`Pretrained`)`GBDTPredictor` to ``path`` as JSON, atomically."""
    predictor.check_fitted(bool(predictor.models))
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": type(predictor).__name__,
        "choices": {k: list(v) for k, v in predictor.encoder.choices.items()},
        "n_models": predictor.n_models,
        "rounds": predictor.rounds,
        "seed": predictor.seed,
        "params": predictor.params,
        "models": [m.model_to_string() for m in predictor.models],
        "metadata": metadata or {},
    }
    if isinstance(predictor, PretrainedGBDTPredictor):
        state.update(
            mode=predictor.mode,
            stat_names=predictor.stat_names,
            stat_models=[m.model_to_string() for m in predictor.stat_models],
            prior=None if predictor.prior is None else [float(v) for v in predictor.prior],
            rounds_used=predictor.rounds_used,
        )
    path = Path(path)
    write_text(path, json.dumps(state))
    return path


def load_predictor(path: str | os.PathLike[str]) -> GBDTPredictor:
    """Read a predictor written by `save_predictor`."""
    import lightgbm as lgb  # slow to import: only when a predictor is loaded

    path = Path(path)
    state = read_json(path, PredictorFile, "supernet predictor file")
    common = dict(n_models=state["n_models"], rounds=state["rounds"], params=state["params"], seed=state["seed"])
    if state["kind"] == "PretrainedGBDTPredictor":
        pred: GBDTPredictor = PretrainedGBDTPredictor(state["choices"], mode=state["mode"], **common)
        pred.stat_names = list(state["stat_names"])
        pred.stat_models = [lgb.Booster(model_str=s) for s in state["stat_models"]]
        pred.rounds_used = int(state.get("rounds_used", pred.rounds_used))
        if state["prior"] is not None:
            pred.prior = np.asarray(state["prior"], dtype=np.float64)
    elif state["kind"] == "GBDTPredictor":
        pred = GBDTPredictor(state["choices"], **common)
    else:
        raise ValueError(f"{path}: unknown predictor kind {state['kind']!r}")
    pred.models = [lgb.Booster(model_str=s) for s in state["models"]]
    return pred
