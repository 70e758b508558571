"""Concrete symbolic tracing: a torch.fx graph of a model together with the value of every node on one input.

The graph is only *analysed* (a converted model still runs its own ``forward``), so control flow may be
specialised to the example input: when traced code branches on a proxy, the branch is taken on the concrete
value and the condition is recorded as a `Guard`. The analysis then decides whether that was safe (a branch on
a batch size is; a branch on a width is not, and its width is pinned; a branch on tensor values makes the module
that branched opaque, see `trace`).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx._symbolic_trace import _orig_module_call as _ORIG_CALL
from torch.fx._symbolic_trace import _orig_module_getattr as _ORIG_GETATTR
from torch.fx.node import map_arg

#: torch.nn layers the converter sees inside (never traced through).
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class TraceFailure(Exception):
    """Tracing failed inside ``module`` (a qualified path; ``""`` for the model itself)."""

    def __init__(self, module: str, reason: str, node_index: int | None = None) -> None:
        super().__init__(f"{module or '<model>'}: {reason}")
        self.module, self.reason, self.node_index = module, reason, node_index


@dataclass
class Guard:
    """Traced code branched on the concrete value of ``node`` inside module ``module``."""

    node: fx.Node
    module: str
    kind: str = "bool"  # bool, iter or len


@dataclass
class ModuleCall:
    """A call of a traced-through (non-leaf) module: its graph nodes are ``nodes[start:end]``; ``inputs`` are
    the tensors it was given (``stream``: its first positional argument, if that is one)."""

    path: str
    start: int
    end: int
    inputs: list[fx.Node]
    output: Any
    stream: fx.Node | None = None


@dataclass
class Trace:
    """A traced model: graph, concrete values of its nodes, module calls and guards."""

    graph: fx.Graph
    nodes: list[fx.Node]
    values: dict[fx.Node, Any]
    calls: list[ModuleCall] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)
    leaves: set[str] = field(default_factory=set)

    def index(self, node: fx.Node) -> int:
        """Position of ``node`` in graph order."""
        return self._pos[node]

    def __post_init__(self) -> None:
        self._pos = {n: i for i, n in enumerate(self.nodes)}


#: tensor attributes no width changes: read from the concrete value, not recorded (``torch.finfo(x.dtype)``).
_STATIC_ATTRS = frozenset({"dtype", "device", "ndim", "layout", "is_cuda", "is_nested"})


class _Proxy(fx.Proxy):
    def __len__(self) -> int:
        return self.tracer.proxy_len(self)  # type: ignore[attr-defined]

    def __getattr__(self, k: str) -> Any:
        if k in _STATIC_ATTRS:
            value = self.tracer.values.get(self.node)  # type: ignore[attr-defined]
            if isinstance(value, torch.Tensor):
                return getattr(value, k)
        return super().__getattr__(k)


class ConcreteTracer(fx.Tracer):
    """An fx tracer that also runs every node on concrete values as it records it."""

    def __init__(self, root: nn.Module, inputs: Mapping[str, Any], leaves: set[str], is_leaf: Callable) -> None:
        super().__init__(autowrap_functions=())
        self.proxy_buffer_attributes = True  # buffers read in forward code are graph nodes (sliceable by sizes)
        self.root_module = root
        self.inputs = dict(inputs)
        self.extra_leaves = leaves
        self.is_leaf_fn = is_leaf
        self.values: dict[fx.Node, Any] = {}
        self.calls: list[ModuleCall] = []
        self.guards: list[Guard] = []
        self.stack: list[str] = [""]
        self.count = 0

    # --- which modules are leaves -------------------------------------------------------------------------
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.extra_leaves:
            return True
        if isinstance(m, CONTAINERS):
            return False
        return bool(self.is_leaf_fn(m, module_qualified_name))

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        start = self.count
        inputs = [a.node for a in list(args) + list(kwargs.values()) if isinstance(a, fx.Proxy)]
        self.stack.append(path)
        try:
            out = super().call_module(m, forward, args, kwargs)
        except TraceFailure:
            raise
        except Exception as err:
            raise TraceFailure(path, f"{type(err).__name__}: {err}") from err
        finally:
            self.stack.pop()
        output = out.node if isinstance(out, fx.Proxy) else out
        if isinstance(out, (tuple, list)):  # e.g. (hidden_states, attentions) of a transformers block
            output = tuple(o.node if isinstance(o, fx.Proxy) else o for o in out)
        stream = args[0].node if args and isinstance(args[0], fx.Proxy) else None
        self.calls.append(ModuleCall(path, start, self.count, inputs, output, stream))
        return out

    # --- concrete evaluation ------------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def create_node(self, kind: str, target: Any, args: tuple, kwargs: dict, name: str | None = None,
                    type_expr: Any | None = None) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        self.count += 1
        if kind != "output":
            # fx patches nn.Module.__call__/__getattr__ while tracing: run the node with the real ones.
            patched = nn.Module.__call__, nn.Module.__getattr__
            nn.Module.__call__, nn.Module.__getattr__ = _ORIG_CALL, _ORIG_GETATTR  # type: ignore[method-assign]
            try:
                self.values[node] = self._evaluate(node)
            except TraceFailure:
                raise
            except Exception as err:
                raise TraceFailure(self.stack[-1], f"{type(err).__name__}: {err}", self.count - 1) from err
            finally:
                nn.Module.__call__, nn.Module.__getattr__ = patched  # type: ignore[method-assign]
        return node

    def _evaluate(self, node: fx.Node) -> Any:
        def value(n: fx.Node) -> Any:
            return self.values[n]

        if node.op == "placeholder":
            name = str(node.target).lstrip("*")
            if name not in self.inputs:  # fx names the placeholder of a specialised argument ``name_<n>``
                name = re.sub(r"_\d+$", "", name)
            if name not in self.inputs:
                raise TraceFailure("", f"no example value for forward argument {name!r}")
            return self.inputs[name]
        if node.op == "get_attr":
            obj: Any = self.root_module
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        args = map_arg(node.args, value)
        kwargs = map_arg(node.kwargs, value)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        if node.op == "call_module":
            return self.root_module.get_submodule(str(node.target))(*args, **kwargs)
        raise TraceFailure("", f"unexpected node kind {node.op}")

    def create_args_for_root(self, root_fn: Callable, is_module: bool, concrete_args: Any = None) -> tuple:
        """fx's placeholders, except for a ``forward`` that takes ``**kwargs`` or is wrapped by a decorator (as
        Hugging Face models' are), which fx cannot patch: there the tensor inputs become placeholders by name
        and ``forward`` is called with keywords (the other inputs as constants)."""
        inner = inspect.unwrap(root_fn)
        varstuff = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS
        if not is_module or (inner is root_fn and not inner.__code__.co_flags & varstuff):
            return super().create_args_for_root(root_fn, is_module, concrete_args)
        names = [n for n, v in self.inputs.items() if isinstance(v, torch.Tensor)]
        consts = {n: v for n, v in self.inputs.items() if not isinstance(v, torch.Tensor)}
        proxies = [self.create_proxy("placeholder", n, (), {}) for n in names]

        def call(root: nn.Module, *tensors: Any) -> Any:
            return root_fn(root, **consts, **dict(zip(names, tensors, strict=True)))

        return call, [self.root, *proxies]

    def to_bool(self, obj: fx.Proxy) -> bool:
        self.guards.append(Guard(obj.node, self.stack[-1]))
        return bool(self.values[obj.node])

    def iter(self, obj: fx.Proxy) -> Iterator:
        self.guards.append(Guard(obj.node, self.stack[-1], "iter"))
        return iter([obj[i] for i in range(len(self.values[obj.node]))])

    def proxy_len(self, obj: fx.Proxy) -> int:
        self.guards.append(Guard(obj.node, self.stack[-1], "len"))
        return len(self.values[obj.node])


#: torch factory functions whose size arguments may be proxies (fx cannot see them through __torch_function__).
FACTORIES = ("ones", "zeros", "full", "empty", "rand", "randn", "eye", "arange", "linspace", "tril_indices")


def _wrap_factory(tracer: ConcreteTracer, fn: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        found: list[Any] = []
        torch.utils._pytree.tree_map(lambda a: found.append(a), (args, kwargs))
        if any(isinstance(a, fx.Proxy) for a in found):
            return tracer.create_proxy("call_function", fn, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper


#: torch helpers that run on the concrete values of their arguments, recording nothing: they read a mask's dtype
#: or whether it is the causal mask (a kernel hint), never a width, and refuse or branch on proxies otherwise.
#: torch's transformer layers call them on their masks.
CONCRETE_HELPERS = (
    ("torch.nn.functional", "_none_or_dtype"),
    ("torch.nn.modules.transformer", "_detect_is_causal_mask"),
)


def _concrete(tracer: ConcreteTracer, fn: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = torch.utils._pytree.tree_map(
            lambda a: tracer.values[a.node] if isinstance(a, fx.Proxy) else a, (args, kwargs)
        )
        return fn(*args, **kwargs)

    return wrapper


def bind_inputs(model: nn.Module, example_input: Any) -> dict[str, Any]:
    """``{forward argument: value}`` for an example input: a tensor, a tuple of positional args, or a dict.

    The model is then called as ``model(**inputs)``: entries of a ``**kwargs`` parameter are keywords of their
    own, and a ``*args`` parameter takes no example values.
    """
    sig = inspect.signature(model.forward)
    if isinstance(example_input, Mapping):
        bound = sig.bind(**example_input)
    elif isinstance(example_input, tuple):
        bound = sig.bind(*example_input)
    else:
        bound = sig.bind(example_input)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"{type(model).__name__}.forward takes *{name}: pass the example input by name")
        elif kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"{type(model).__name__}.forward has positional-only arguments ({name})")
        else:
            out[name] = value
    return out


def trace(model: nn.Module, inputs: Mapping[str, Any], leaves: set[str], is_leaf: Callable) -> Trace:
    """Trace ``model`` (in eval mode, without gradients) on ``inputs``; ``leaves`` are extra opaque modules.

    Arguments whose example value is not a tensor are specialised (passed as constants).

    Raises:
        TraceFailure: naming the innermost traced-through module in which tracing failed.
    """
    tracer = ConcreteTracer(model, inputs, leaves, is_leaf)
    concrete = {k: v for k, v in inputs.items() if not isinstance(v, torch.Tensor)}
    was_training = model.training
    model.eval()
    patches = [(torch, name, _wrap_factory(tracer, getattr(torch, name))) for name in FACTORIES]
    for module_name, name in CONCRETE_HELPERS:
        module = sys.modules.get(module_name)
        if module is not None and callable(getattr(module, name, None)):
            patches.append((module, name, _concrete(tracer, getattr(module, name))))
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, fn in patches:
            setattr(owner, name, fn)
        with torch.no_grad():
            graph = tracer.trace(model, concrete_args=concrete or None)
    except TraceFailure:
        raise
    except Exception as err:
        raise TraceFailure("", f"{type(err).__name__}: {err}") from err
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
        model.train(was_training)
    nodes = list(graph.nodes)
    return Trace(graph, nodes, tracer.values, tracer.calls, tracer.guards, set(leaves))
