"""Depth choices: a run of same-shaped residual blocks at the end of an ``nn.Sequential`` / ``nn.ModuleList``
may stop early (keep the first d blocks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import fx, nn

from ..space import Choice
from .groups import Analysis, Tag
from .layers import DepthModuleList, DepthSequential
from .trace import ModuleCall, Trace


@dataclass
class DepthRun:
    """Blocks ``start..end-1`` of the container at ``path`` may be dropped from the end of the stage
    ``first..end-1`` (``first`` is the block before the run, e.g. a downsampling block, if there is one)."""

    path: str
    first: int
    start: int
    end: int

    def options(self) -> tuple[int, ...]:
        """How many blocks of the stage may run (at least one)."""
        return tuple(range(max(self.start - self.first, 1), self.end - self.first + 1))


def _same_tag(an: Analysis, a: object, b: object) -> bool:
    ta, tb = an.tags.get(a), an.tags.get(b)  # type: ignore[call-overload]
    if not isinstance(ta, Tag) or not isinstance(tb, Tag):
        return not isinstance(ta, Tag) and not isinstance(tb, Tag)
    g = an.groups
    return (g.find(ta.gid), ta.dim, ta.offset, ta.mult) == (g.find(tb.gid), tb.dim, tb.offset, tb.mult)


def _side_inputs_ok(tr: Trace, call: ModuleCall, begin: int) -> bool:
    """A block reads its stream (first argument) and, besides, only tensors made before its container runs
    (masks, positions: the same for every block, so dropping blocks leaves them alone)."""
    if call.stream is None or call.inputs.count(call.stream) != 1:
        return False
    return all(tr.index(n) < begin for n in call.inputs if n is not call.stream)


def _stream_output(call: ModuleCall | None) -> fx.Node | None:
    """The new stream a block returns: its output, or the first item of a returned tuple whose other tensors
    are not used (``(hidden_states, None)`` of a transformers block)."""
    out = call.output if call is not None else None
    if isinstance(out, fx.Node):
        return out
    if isinstance(out, tuple) and out and isinstance(out[0], fx.Node):
        if all(not isinstance(o, fx.Node) or not o.users for o in out[1:]):
            return out[0]
    return None


def find_runs(tr: Trace, an: Analysis, net: nn.Module, skip: set[str]) -> tuple[list[DepthRun], dict[str, str]]:
    """Containers whose trailing blocks keep shape and width (residual blocks), and why others were not used.

    A block takes its stream as its first argument and returns the new stream; other tensor arguments (an
    attention mask, position ids) must be made before the container runs."""
    calls = {c.path: c for c in tr.calls}
    counts = Counter(c.path for c in tr.calls)
    runs, why = [], {}
    for path, m in net.named_modules():
        if type(m) not in (nn.Sequential, nn.ModuleList) or len(m) < 2:
            continue
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        names = list(m._modules)
        children = [f"{path}.{n}" if path else n for n in names]
        ok: list[bool] = []
        begin = min((calls[c].start for c in children if c in calls), default=0)
        for i, cp in enumerate(children):
            call = calls.get(cp)
            good = (
                call is not None
                and counts[cp] == 1
                and _side_inputs_ok(tr, call, begin)
                and _stream_output(call) is not None
                and any(s == cp or s.startswith(cp + ".") for s in an.slots)
            )
            if good:
                assert call is not None and call.stream is not None
                x, y = call.stream, _stream_output(call)
                assert y is not None
                vx, vy = tr.values.get(x), tr.values.get(y)
                good = (
                    isinstance(vx, torch.Tensor)
                    and isinstance(vy, torch.Tensor)
                    and vx.shape == vy.shape
                    and _same_tag(an, x, y)
                )
                if good and i > 0:
                    prev = calls.get(children[i - 1])
                    good = prev is not None and _stream_output(prev) is x
                if good and i + 1 < len(children):
                    nxt = calls.get(children[i + 1])
                    good = nxt is not None and all(nxt.start <= tr.index(u) < nxt.end for u in y.users)
            ok.append(bool(good))
        found = False
        i = 0
        while i < len(ok):
            if not ok[i]:
                i += 1
                continue
            j = i
            while j < len(ok) and ok[j]:
                j += 1
            run = DepthRun(path, i - 1 if i > 0 else i, i, j)
            if len(run.options()) > 1:
                runs.append(run)
                found = True
            i = j
        if not found and any(c in calls for c in children):
            why[path] = "no run of blocks that keep the shape and width of their input (residual blocks)"
    return runs, why


def apply_runs(net: nn.Module, runs: list[DepthRun]) -> tuple[nn.Module, dict[str, list[Choice]]]:
    """Replace each container with runs by a depth container; returns the (possibly new) root and the choices
    by container path."""
    by_path: dict[str, list[DepthRun]] = {}
    for run in runs:
        by_path.setdefault(run.path, []).append(run)
    made: dict[str, list[Choice]] = {}
    for path, rs in by_path.items():
        stages, choices = [], []
        for run in rs:
            base = f"{path}.depth" if path else "depth"
            name = base if len(rs) == 1 else f"{path + '.' if path else ''}{run.first}-{run.end - 1}.depth"
            choice = Choice(run.options(), name=name)
            stages.append((run.first, run.start, run.end, choice))
            choices.append(choice)
        old = net.get_submodule(path) if path else net
        new = DepthSequential(old, stages) if isinstance(old, nn.Sequential) else DepthModuleList(old, stages)
        if path:
            parent_path, _, attr = path.rpartition(".")
            setattr(net.get_submodule(parent_path) if parent_path else net, attr, new)
        else:
            net = new
        made[path] = choices
    return net, made


def restore(net: nn.Module, path: str) -> nn.Module:
    """Put back a plain container where a depth container is (when the model does not iterate it)."""
    m = net.get_submodule(path) if path else net
    plain: nn.Module = nn.Sequential() if isinstance(m, nn.Sequential) else nn.ModuleList()
    for k, v in m._modules.items():
        plain.add_module(k, v)
    plain.train(m.training)
    if not path:
        return plain
    parent_path, _, attr = path.rpartition(".")
    setattr(net.get_submodule(parent_path) if parent_path else net, attr, plain)
    return net
