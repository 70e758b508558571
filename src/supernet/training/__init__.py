"""Supernet training: the loop (`train`, exported as ``sn.train``), strategies, tasks, checkpoints, evaluation."""

from ..validation import ConfigError
from . import strategies
from .checkpoint import latest_checkpoint
from .config import TrainConfig
from .context import TrainContext
from .distill import alpha_divergence, kl_distill
from .evaluate import batchnorm_modules, evaluate, evaluate_many, evaluate_model, recalibrate_bn
from .kinds import decision_kinds
from .loop import Run, load_run, lr_at, train
from .strategies import STRATEGIES, StepOutput, Strategy, StrategyOptions, get_strategy, register_strategy
from .tasks import ClassificationTask, LMTask, Task, crop_flip, make_task

__all__ = [
    "STRATEGIES",
    "ClassificationTask",
    "ConfigError",
    "LMTask",
    "Run",
    "StepOutput",
    "Strategy",
    "StrategyOptions",
    "Task",
    "TrainConfig",
    "TrainContext",
    "alpha_divergence",
    "batchnorm_modules",
    "crop_flip",
    "decision_kinds",
    "evaluate",
    "evaluate_many",
    "evaluate_model",
    "get_strategy",
    "kl_distill",
    "latest_checkpoint",
    "load_run",
    "lr_at",
    "make_task",
    "recalibrate_bn",
    "register_strategy",
    "strategies",
    "train",
]
