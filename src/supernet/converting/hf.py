"""Hugging Face ``transformers`` models: what the converter needs to know about them (transformers stays
optional: nothing here imports it; a model from it has already imported it).

* GPT-2's ``transformers.pytorch_utils.Conv1D`` is a linear layer with a transposed weight (``(in, out)``);
  it converts like ``nn.Linear`` (see `supernet.converting.layers.Conv1D`).
* A ``PreTrainedModel`` returns a key/value cache by default; it is analysed with ``use_cache=False`` (the cache
  is not a tensor the analysis follows). The converted model is called as the user calls it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from torch import nn


def _class(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is already imported (never imports it)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) else None


def is_conv1d(m: nn.Module) -> bool:
    """Whether ``m`` is exactly a ``transformers.pytorch_utils.Conv1D`` (GPT-2's transposed linear layer)."""
    cls = _class("transformers.pytorch_utils", "Conv1D")
    return cls is not None and type(m) is cls


def is_pretrained(model: nn.Module) -> bool:
    """Whether ``model`` is a ``transformers.PreTrainedModel``."""
    cls = _class("transformers.modeling_utils", "PreTrainedModel")
    return cls is not None and isinstance(model, cls)


def analysis_inputs(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to trace and check ``model`` with: for a Hugging Face model whose ``forward``
    takes ``use_cache`` and was not given it, ``use_cache=False`` (no key/value cache in the outputs)."""
    out = dict(inputs)
    if not is_pretrained(model):
        return out
    params = inspect.signature(model.forward).parameters
    if "use_cache" in params and out.get("use_cache") is None:
        out["use_cache"] = False
    return out
