"""torch's own transformer layers: the converter traces through ``nn.Transformer``, ``nn.TransformerEncoder``,
``nn.TransformerDecoder`` and their layers to the ``nn.Linear``, ``nn.LayerNorm`` and ``nn.MultiheadAttention``
inside.

In eval mode without gradients, ``nn.TransformerEncoderLayer`` runs a fused kernel on its sublayers' *full*
weight tensors (``self_attn.in_proj_weight``, ``linear1.weight``, ...), and ``nn.TransformerEncoder`` turns padded
batches into nested tensors for it. A searchable layer inside would be bypassed, so the converted model keeps
those fast paths off (`disable_fastpaths`), and so do the plain models extracted from it: torch's FLOP counter does
not see inside the fused kernel, so a subnet with it would count fewer FLOPs than a smaller one without it, and
latencies would compare a fused largest arch with unfused smaller ones.
"""

from __future__ import annotations

from torch import nn

from ..space.base import Searchable

#: torch.nn modules traced through (every other torch.nn module is a leaf of the trace).
TRACED: tuple[type[nn.Module], ...] = (
    nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder, nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)

#: The attributes that let the fused paths run: ``activation_relu_or_gelu`` (0: the encoder layer's fast path is
#: off; torch sets it from the activation, and reads it nowhere else) and ``use_nested_tensor`` (the encoder's
#: nested-tensor path).
_LAYER_FLAG, _ENCODER_FLAG = "activation_relu_or_gelu", "use_nested_tensor"


def _under(path: str, parent: str) -> bool:
    return not parent or path.startswith(parent + ".")


def disable_fastpaths(net: nn.Module) -> list[str]:
    """Turn off (in place) the fast path of every ``nn.TransformerEncoderLayer`` that holds a searchable layer,
    and the nested-tensor path of every ``nn.TransformerEncoder`` over such a layer; returns their paths."""
    done: list[str] = []
    for path, m in net.named_modules():
        if type(m) is nn.TransformerEncoderLayer and getattr(m, _LAYER_FLAG, 0):
            if any(isinstance(sub, Searchable) for sub in m.modules() if sub is not m):
                setattr(m, _LAYER_FLAG, 0)
                done.append(path)
    for path, m in net.named_modules():
        if type(m) is nn.TransformerEncoder and getattr(m, _ENCODER_FLAG, False) and any(_under(p, path) for p in done):
            setattr(m, _ENCODER_FLAG, False)
            done.append(path)
    return done


def fastpath_hint(m: nn.Module) -> str:
    """Why a torch module branched on tensor values, if it is the nested-tensor check of ``nn.TransformerEncoder``
    (it tests whether the padding mask is left-aligned), with the way round it; else ``""``."""
    if type(m) is nn.TransformerEncoder and getattr(m, _ENCODER_FLAG, False):
        return (" in nn.TransformerEncoder's nested-tensor fast path (it checks the src_key_padding_mask); "
                "build the encoder with enable_nested_tensor=False to search it")
    return ""
