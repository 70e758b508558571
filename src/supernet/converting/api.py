"""`convert`: make an ordinary PyTorch model a search space (width and depth choices over its own weights)."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from ..space import Choice, SuperModule
from ..space.base import Searchable
from .depth import apply_runs, find_runs, restore
from .groups import HF_ATTENTION, Analysis, Member, Tag, analyse, is_known_leaf
from .hf import analysis_inputs, attention_heads
from .named import SPEC_NAME, load_model
from .replace import replace_layers
from .report import AttentionRow, ConvertReport, GroupRow
from .trace import CONTAINERS, Trace, TraceFailure, bind_inputs, trace
from .transformer import TRACED, disable_fastpaths, fastpath_hint

Widths = Sequence[float | int]


class ConversionError(ValueError):
    """The model cannot be converted (or a check of the converted model failed)."""


class ConvertedSpace(SuperModule):
    """The search space made by `convert`: a `SuperModule` that also knows its width groups.

    Attributes:
        width_groups: ``{decision name: [Member, ...]}``, every layer slice that follows each width choice
            (used by `sort_channels`).
        report: the `ConvertReport` of the conversion.
        example_input: the example input the model was converted with (for FLOPs and latency).
        spec: ``{"space": "supernet.converting:converted", "kwargs": {...}}`` when the model was given by name
            (``module:function``), so a new process can rebuild the space; None for a model object.
    """

    def __init__(
        self, net: nn.Module, width_groups: dict[str, list[Member]], report: ConvertReport, example_input: Any = None
    ) -> None:
        super().__init__(net)
        self.width_groups = width_groups
        self.report = report
        self.example_input = example_input

    def extract(self, arch: Mapping[str, Any] | None = None) -> nn.Module:
        """A plain copy of subnet ``arch`` (see `SuperModule.extract`); weights the model ties stay tied."""
        out = super().extract(arch)
        _retie(self.net, out)
        return out


def _retie(src: nn.Module, dst: nn.Module) -> None:
    where: dict[int, list[tuple[str, str]]] = {}
    for mpath, m in src.named_modules(remove_duplicate=False):
        for pname, p in m._parameters.items():
            if p is not None:
                where.setdefault(id(p), []).append((mpath, pname))
    for locs in where.values():
        if len(locs) < 2:
            continue
        first = None
        for mpath, pname in locs:
            try:
                dm = dst.get_submodule(mpath)
            except AttributeError:
                continue
            dp = dm._parameters.get(pname)
            if dp is None:
                continue
            if first is None:
                first = dp
            elif dp.shape == first.shape and torch.equal(dp, first):
                dm._parameters[pname] = first


def _is_leaf(m: nn.Module, path: str) -> bool:
    if isinstance(m, Searchable) or is_known_leaf(m):
        return True
    if type(m) in TRACED:
        return False  # torch's transformer layers: their linears, norms and attention convert
    return type(m).__module__.startswith("torch.nn") and not isinstance(m, CONTAINERS)


def _check_widths(widths: Any, what: str, fractions_only: bool) -> tuple[float | int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise ValueError(f"{what} must be a non-empty sequence of width fractions in (0, 1], got {widths!r}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise ValueError(f"{what}: widths must be numbers, got {w!r}")
        if fractions_only or isinstance(w, float):
            if not 0 < w <= 1:
                raise ValueError(f"{what}: a width fraction must lie in (0, 1], got {w!r}")
        elif w < 1:
            raise ValueError(f"{what}: a channel count must be at least 1, got {w!r}")
    return tuple(widths)


def _options(size: int, widths: Sequence[float | int], fractions_only: bool, divisor: int) -> tuple[int, ...]:
    out = {size}
    for w in widths:
        if fractions_only or isinstance(w, float):
            n = round(w * size / divisor) * divisor
            out.add(min(size, max(divisor, n)) if size >= divisor else size)
        else:
            if w > size:
                raise ValueError(f"width {w} exceeds the {size} channels of the group")
            out.add(int(w))
    return tuple(sorted(out))


def _group_name(members: list[Member]) -> str:
    prod = [m for m in members if m.role == "out"] or members
    return f"{prod[0].path}.heads" if prod[0].role == "heads" else f"{prod[0].path}.width"


def _is_heads(members: list[Member]) -> bool:
    """Whether a group counts attention heads (it is then never rounded to the channel ``divisor``)."""
    return any(m.role == "heads" for m in members)


def _apply_pins(an: Analysis, pins: list[tuple[str, str, str]]) -> None:
    for path, role, reason in pins:
        root = an.group_of(path, role)
        if root is not None:
            an.groups.pin(root, reason)


def _names(an: Analysis) -> dict[int, str]:
    names: dict[int, str] = {}
    used: set[str] = set()
    for root in an.groups.roots():
        base = name = _group_name(an.groups.members[root])
        i = 1
        while name in used:
            i += 1
            name = f"{base}{i}"
        used.add(name)
        names[root] = name
    return names


def _predicted(an: Analysis, tag: Any, shape: torch.Size, widths: Mapping[int, int]) -> list[int]:
    out = list(shape)
    if isinstance(tag, Tag):
        root = an.groups.find(tag.gid)
        if root in widths:
            out[tag.dim] = tag.offset + tag.mult * widths[root]
    return out


def _groups_near(an: Analysis, tr: Trace, node: fx.Node) -> set[int]:
    """Every group that touches ``node``: its tag, its inputs' tags, widths its int arguments were read from."""
    found: set[int] = set()
    args: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: args.append(n) or n)
    for n in [node, *args]:
        t = an.tags.get(n)
        for x in t if isinstance(t, list) else [t]:
            if isinstance(x, Tag):
                found.add(an.groups.find(x.gid))
        for x, d in an.deps.get(n, set()):
            tx = an.tags.get(x)
            if isinstance(tx, Tag) and (d is None or d == tx.dim):
                found.add(an.groups.find(tx.gid))
    return found


def _shape_mismatch(
    net: nn.Module, tr: Trace, an: Analysis, inputs: Mapping[str, Any], choices: Mapping[int, Choice],
    widths: Mapping[int, int],
) -> tuple[set[int], str] | None:
    """Run the converted model's graph with ``widths``; the groups to pin if a shape is not the predicted one."""
    for root, c in choices.items():
        c.current = widths[root]
    try:
        tr2 = trace(net, inputs, tr.leaves, _is_leaf)
    except TraceFailure as fail:
        if fail.node_index is None or fail.node_index >= len(tr.nodes):
            near = {an.groups.find(m_root) for m_root, ms in an.groups.members.items()
                    if any(m.path.startswith(fail.module) for m in ms)} if fail.module else set()
            return near, f"a subnet fails in {fail.module or 'the model'}: {fail.reason}"
        node = tr.nodes[fail.node_index]
        return _groups_near(an, tr, node), f"a subnet fails at {node.name}: {fail.reason}"
    finally:
        for c in choices.values():
            c.current = c.largest()
    nodes, nodes2 = _live(tr.nodes), _live(tr2.nodes)
    for a, b in zip(nodes, nodes2, strict=False):
        if (a.op, _target(a)) != (b.op, _target(b)):
            return _groups_near(an, tr, a), f"a subnet runs different code at {a.name}"
        va, vb = tr.values.get(a), tr2.values.get(b)
        both_seq = isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple))
        pairs = list(zip(va, vb, strict=False)) if both_seq else [(va, vb)]
        tags = an.tags.get(a)
        tag_list = tags if isinstance(tags, list) else [tags] * len(pairs)
        for (x, y), t in zip(pairs, tag_list, strict=False):
            if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
                if list(y.shape) != _predicted(an, t, x.shape, widths):
                    return _groups_near(an, tr, a), f"a subnet changes the shape of {a.name} unexpectedly"
    if len(nodes) != len(nodes2):
        return set(choices), "a subnet runs different code"
    return None


def _target(node: fx.Node) -> str:
    """What a node runs; fx numbers the tensor constants it stores on the model anew in each trace of it (an
    eager attention mask's ``torch.finfo(dtype).min``, say), so those compare by kind."""
    target = str(node.target)
    return "_tensor_constant" if node.op == "get_attr" and re.fullmatch(r"_tensor_constant\d+", target) else target


def _live(nodes: list[fx.Node]) -> list[fx.Node]:
    """The nodes that compute something: a parameter read that nothing uses is dropped (torch's fast-path checks
    collect weights that a converted layer no longer lets them reach)."""
    return [n for n in nodes if n.op != "get_attr" or n.users]


def _outputs_close(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
            torch.allclose(a.float(), b.float(), rtol=1e-5, atol=atol)
        )
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            _outputs_close(x, y, atol) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_outputs_close(a[k], b[k], atol) for k in a)
    return True


def _call(net: nn.Module, inputs: Mapping[str, Any]) -> Any:
    return net(**inputs)


def _resolve_keys(keys: Sequence[str], names: dict[int, str], an: Analysis, what: str) -> dict[str, int]:
    """Map decision names or layer paths to group roots (a layer's path means the group of its outputs)."""
    by_name = {n: r for r, n in names.items()}
    out = {}
    for key in keys:
        if key in by_name:
            out[key] = by_name[key]
            continue
        root = None
        for role in ("out", "dw", "norm", "in"):
            root = an.group_of(key, role)
            if root is not None:
                break
        if root is None:
            raise ValueError(
                f"{what}: {key!r} is neither a width decision nor a converted layer; "
                f"decisions: {', '.join(sorted(by_name)) or '(none)'}"
            )
        out[key] = root
    return out


def convert(
    model: nn.Module | str,
    example_input: Any = None,
    widths: Widths = (0.5, 0.75, 1.0),
    depth: bool = True,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    group_widths: Mapping[str, Widths] | None = None,
    pin: Sequence[str] = (),
    exclude: Sequence[str] = (),
    divisor: int = 1,
    report: bool = False,
    atol: float = 1e-5,
) -> ConvertedSpace:
    """Make ``model`` a search space over its own weights: width choices per width group, depth choices.

    The model is traced (torch.fx, run on ``example_input`` so control flow on sizes follows the example) to
    find *width groups*: channels that must keep one size together (a layer's outputs and every layer that
    reads them, norm layers and depthwise convs on them, residual additions joining several producers,
    concatenations, tied weights). Each group gets a `Choice` of widths; ``nn.Linear``, ``nn.Conv2d`` (incl.
    depthwise), ``nn.BatchNorm2d``, ``nn.LayerNorm``, ``nn.Embedding`` and Hugging Face's ``Conv1D`` (GPT-2's
    transposed linear layer) on a searchable group are replaced by entangled layers holding the model's own
    parameter tensors. An ``nn.MultiheadAttention`` also gets a choice of heads (decision ``<path>.heads``, the
    ``widths`` fractions of its heads; a ``group_widths`` entry and ``pin`` take that name too) and reads and
    writes width groups like a linear layer; torch's ``nn.Transformer*`` modules are traced through (see
    `supernet.converting.transformer`). Hugging Face's ``GPT2Attention`` and ``BertSelfAttention`` get a
    ``<path>.heads`` choice too, keeping the first h heads (see `supernet.converting.hf_attention`). Runs of
    same-shaped residual blocks at the end of an ``nn.Sequential`` or
    ``nn.ModuleList`` (that the model iterates) get a depth choice keeping the first d. The model's own
    ``forward`` code keeps running; the given model itself is not changed (a copy is converted). A
    ``transformers.PreTrainedModel`` is analysed with ``use_cache=False`` (see `supernet.converting.hf`); compare
    its ``ModelOutput`` fields.

    What cannot be converted is left fixed and listed in ``space.report`` (a width that reaches the output,
    is split into attention heads by the model's own code, is read by an unsupported layer or op, or that
    control flow depends on); each candidate subnet's shapes are checked against the analysis, and the largest
    arch must reproduce the model's outputs (within ``atol``), so an unsupported construct is never a silently
    wrong result.

    Args:
        model: the model to convert, or its name ``module:function``: a function (annotated
            ``-> tuple[nn.Module, torch.Tensor]``) that returns ``(model, example_input)``. A space made from a
            name records it in ``space.spec``, so runs trained on it can be searched, exported and loaded by name.
        example_input: one input: a tensor, a tuple of positional arguments, or a dict of keyword arguments
            (None when ``model`` is a name).
        widths: width fractions in (0, 1] offered to every group (the full width is always an option).
        depth: add depth choices.
        group_widths: ``{decision name or layer path: widths}`` for particular groups; fractions (floats)
            or channel counts (ints). A layer's path names the group of its outputs.
        pin: decision names or layer paths whose width groups stay at full width.
        exclude: paths of modules to leave untouched (their inputs' and outputs' widths stay fixed).
        divisor: round every width option to a multiple of this (hardware-friendly channel counts); head counts
            are not rounded.
        report: print the conversion table.
        atol: tolerance of the check that the largest arch reproduces the model.
        model_kwargs: keyword arguments of the model function (only when ``model`` is a name).

    Returns:
        A `ConvertedSpace` (a `SuperModule`); its ``report`` lists groups, depth choices and what stayed fixed.

    Raises:
        ValueError: bad arguments (naming the argument).
        ConversionError: the model cannot be traced at all, or a converted model failed the checks.
    """
    model_name = None
    if isinstance(model, str):
        if example_input is not None:
            raise ValueError("a model given by name returns its own example input: pass example_input=None")
        model_name = model
        model, example_input = load_model(model_name, model_kwargs)
    elif model_kwargs is not None:
        raise ValueError("model_kwargs are the keyword arguments of a model given by name ('module:function')")
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert needs an nn.Module (or a 'module:function' name), got {type(model).__name__}")
    if example_input is None:
        raise ValueError("convert needs an example_input for the model")
    if isinstance(model, SuperModule) or any(isinstance(m, Searchable) for m in model.modules()):
        raise ValueError("the model already contains searchable layers; convert a plain PyTorch model")
    widths = _check_widths(widths, "widths", fractions_only=True)
    for key, ws in (group_widths or {}).items():
        _check_widths(ws, f"group_widths[{key!r}]", fractions_only=False)
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"divisor must be a positive int, got {divisor!r}")
    for name, seq in (("pin", pin), ("exclude", exclude)):
        if isinstance(seq, str) or not all(isinstance(s, str) for s in seq):
            raise ValueError(f"{name} must be a list of names, got {seq!r}")
    for path in exclude:
        try:
            model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"exclude: the model has no module {path!r}") from None
    try:
        inputs = analysis_inputs(model, bind_inputs(model, example_input))
    except TypeError as err:
        raise ValueError(f"example_input does not fit {type(model).__name__}.forward: {err}") from None

    was_training = model.training
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = _call(reference, inputs)

    opaque = {p: "excluded by the caller" for p in exclude}
    pins: list[tuple[str, str, str]] = []
    for _attempt in range(50):
        net = copy.deepcopy(reference)
        try:
            tr = trace(net, inputs, set(opaque), _is_leaf)
        except TraceFailure as fail:
            if not fail.module or fail.module in opaque:
                raise ConversionError(f"cannot trace the model: {fail}") from fail
            opaque[fail.module] = f"cannot be traced ({fail.reason})"
            continue
        an = analyse(tr, net, opaque)
        if an.data_guards:
            bad = an.data_guards[0]
            if not bad:
                raise ConversionError(
                    "the model's own forward branches on tensor values (data-dependent control flow); "
                    "move that code into a submodule (it is then left fixed) or exclude it"
                )
            opaque[bad] = "branches on tensor values (data-dependent control flow)" + fastpath_hint(
                net.get_submodule(bad)
            )
            continue
        _apply_pins(an, pins)
        names = _names(an)
        for key, root in _resolve_keys(list(pin), names, an, "pin").items():
            an.groups.pin(root, f"pinned by the caller ({key})")
        per_group = {root: (group_widths or {})[key] for key, root in
                     _resolve_keys(list(group_widths or {}), names, an, "group_widths").items()}
        choices: dict[int, Choice] = {}
        for root in an.groups.roots():
            if an.groups.pinned(root):
                continue
            size = an.groups.size[root]
            ws = per_group.get(root, widths)
            opts = _options(size, ws, root not in per_group, 1 if _is_heads(an.groups.members[root]) else divisor)
            if len(opts) > 1:
                choices[root] = Choice(opts, name=names[root])
        replace_layers(net, an, choices)
        problem = None
        rng = random.Random(0)
        trials = [{r: c.smallest() for r, c in choices.items()}]
        trials += [{r: rng.choice(c.options) for r, c in choices.items()} for _ in range(2)]
        for w in trials if choices else []:
            problem = _shape_mismatch(net, tr, an, inputs, choices, w)
            if problem:
                break
        if problem:
            roots, reason = problem
            roots = {r for r in roots if r in choices}
            if not roots:
                raise ConversionError(f"a converted subnet fails and the cause cannot be located: {reason}")
            for r in roots:
                m = an.groups.members[r][0]
                pins.append((m.path, m.role, reason))
            continue
        break
    else:  # pragma: no cover - each attempt fixes at least one group or layer
        raise ConversionError("conversion did not settle after 50 attempts")

    fastpaths = disable_fastpaths(net)
    net.eval()
    with torch.no_grad():
        got = _call(net, inputs)
    if not _outputs_close(expected, got, atol):
        raise ConversionError("the converted model's largest arch does not reproduce the model's outputs")

    depth_choices: list[Choice] = []
    no_depth: dict[str, str] = {}
    if depth:
        runs, no_depth = find_runs(tr, an, net, set(opaque))
        net, depth_choices = apply_runs(net, runs)
        net, depth_choices = _verify_depth(net, inputs, depth_choices, no_depth, expected, atol)

    rows, groups = [], {}
    for root in an.groups.roots():
        members = an.groups.members[root]
        c = choices.get(root)
        layers = list(dict.fromkeys(m.path for m in members))
        rows.append(GroupRow(names[root], an.groups.size[root], c.options if c else (), layers,
                             list(an.groups.pins[root])))
        if c is not None:
            groups[names[root]] = list(members)
    rep = ConvertReport(rows, {str(c.name): c.options for c in depth_choices}, dict(an.fixed), no_depth,
                        _attention_rows(an, choices), fastpaths)
    space = ConvertedSpace(net, groups, rep, example_input)
    if model_name is not None:
        space.spec = {
            "space": SPEC_NAME,
            "kwargs": {
                "model": model_name,
                "widths": list(widths),
                "depth": bool(depth),
                "group_widths": {k: list(v) for k, v in group_widths.items()} if group_widths else None,
                "pin": list(pin),
                "exclude": list(exclude),
                "divisor": divisor,
                "sort": None,
                "model_kwargs": dict(model_kwargs) if model_kwargs else None,
            },
        }
    space.train(was_training)
    if report:
        print(rep.table())
    return space


def _attention_rows(an: Analysis, choices: Mapping[int, Choice]) -> list[AttentionRow]:
    """One row per converted attention layer (``nn.MultiheadAttention``, Hugging Face's ``GPT2Attention`` and
    ``BertSelfAttention``): its head options and whether its widths are searched."""
    rows = []
    for path, slot in an.slots.items():
        if slot.kind not in ("mha", *HF_ATTENTION) or slot.heads is None:
            continue
        m = slot.module
        heads = an.groups.find(slot.heads)
        c = choices.get(heads)
        inp = an.groups.find(slot.inp.gid) if slot.inp is not None else None
        # BERT's attention has no output projection: its output width is its heads'.
        out = an.groups.find(slot.out) if slot.out is not None else heads
        n_heads, head_dim = (m.num_heads, m.head_dim) if slot.kind == "mha" else attention_heads(m)
        rows.append(AttentionRow(
            path, n_heads, head_dim, m.embed_dim if slot.kind == "mha" else n_heads * head_dim,
            c.options if c else (), inp in choices, out in choices, list(an.groups.pins[heads]),
        ))
    return rows


def _verify_depth(
    net: nn.Module, inputs: Mapping[str, Any], made: dict[str, list[Choice]], no_depth: dict[str, str],
    expected: Any, atol: float,
) -> tuple[nn.Module, list[Choice]]:
    """Keep only the depth choices the model's forward honours: with the smallest depths, the dropped blocks
    must not run; with the largest, the outputs must stay the model's."""
    for path, choices in list(made.items()):
        container = net.get_submodule(path) if path else net
        called: list[str] = []
        handles = [
            m.register_forward_pre_hook(lambda mod, args, name=name, called=called: called.append(name))
            for name, m in container._modules.items()
        ]
        for c in choices:
            c.current = c.smallest()
        ok = True
        try:
            dropped = set(container._modules) - set(container.active_names())
            with torch.no_grad():
                _call(net, inputs)
        except Exception:
            ok = False
        finally:
            for c in choices:
                c.current = c.largest()
            for h in handles:
                h.remove()
        if not ok or any(name in called for name in dropped):
            net = restore(net, path)
            no_depth[path] = "the model's forward does not iterate this container (blocks are indexed)"
            del made[path]
    with torch.no_grad():
        if not _outputs_close(expected, _call(net, inputs), atol):
            raise ConversionError("the depth choices changed the model's outputs at full depth")
    return net, [c for cs in made.values() for c in cs]
