"""Cost model: parameters, FLOPs and measured latency of a network or of a supernet's active subnet.

On a supernet (or any module containing searchable layers) every function measures the active subnet
by extracting it first, so the figures agree with the extracted network by construction.

`CostTable` is an additive model of any cost over a space's decisions, fitted to measurements of sampled archs;
`latency_table` fits one to measured latencies (a lookup table: an arch's latency predicted without running it).
"""

from __future__ import annotations

import copy
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .files import FileModel, read_json, write_json
from .space import SuperModule, contains_searchable, extract_module
from .space.activity import decision_gates, gates_match, interacting_decisions, is_active
from .space.kinds import decision_kinds


def active_network(module: nn.Module) -> nn.Module:
    """``module`` itself if it is plain, else a plain copy of its active subnet."""
    if isinstance(module, SuperModule):
        return module.extract()
    return extract_module(module) if contains_searchable(module) else module


def params(module: nn.Module) -> int:
    """Number of parameters of the (active sub)network; a parameter shared by two layers counts once."""
    return sum(p.numel() for p in active_network(module).parameters())


def _as_args(example_input: Any) -> tuple[Any, ...]:
    return example_input if isinstance(example_input, tuple) else (example_input,)


def flops(module: nn.Module, example_input: Any) -> int:
    """FLOPs of one forward pass on ``example_input`` (a tensor or a tuple of arguments).

    Counted by ``torch.utils.flop_counter`` (matrix multiplies, convolutions, attention), which counts a
    multiply-add as 2 FLOPs; element-wise ops are not counted.
    """
    net = active_network(module)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*_as_args(example_input))
    return int(counter.get_total_flops())


def latency(
    module: nn.Module,
    example_input: Any,
    device: str | torch.device = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    clock: str = "wall",
) -> float:
    """Median time in seconds of one forward pass (inference mode) after ``warmup`` runs.

    Measures the extracted (deployable) subnet in eval mode on ``device``.

    Args:
        clock: ``"wall"`` (default): elapsed time, what a user of the model waits. ``"cpu"``: this process's CPU
            time, which for single-threaded CPU inference is the same quantity minus the time the process waited
            for the core: use it to time on a shared, busy machine (other processes' load then does not enter
            the figure; cache sharing still may). Only valid on CPU with one torch thread.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    timer = _timer(clock, device)
    device = torch.device(device)
    net = active_network(module)
    if net is module:
        net = copy.deepcopy(module)
    net = net.to(device).eval()
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in _as_args(example_input))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = timer()
            net(*args)
            sync()
            if i >= warmup:
                times.append(timer() - start)
    return statistics.median(times)


CLOCKS = ("wall", "cpu")
# At most this many joint cells (options of a pair's first decision x its second, summed over pairs) are fitted:
# each costs one measured arch (mobilenet: 16 pairs, 144 cells; gpt: 8 pairs, 60; darts' in/op pairs: thousands).
MAX_PAIR_CELLS = 256
# Joins the two decision names of a pair term's key ("stage1.block0.expand*stage1.block0.kernel").
PAIR_SEPARATOR = "*"


def pair_names(key: str) -> tuple[str, str]:
    """The two decisions of a pair term's key."""
    a, sep, b = key.partition(PAIR_SEPARATOR)
    if not sep or not a or not b:
        raise ValueError(f"cost table pair key {key!r} is not 'decision{PAIR_SEPARATOR}decision'")
    return a, b


def _timer(clock: str, device: str | torch.device) -> Callable[[], float]:
    """The clock `latency` reads: wall time, or process CPU time (single-threaded CPU inference only)."""
    if clock == "wall":
        return time.perf_counter
    if clock != "cpu":
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if torch.device(device).type != "cpu":
        raise ValueError(f"clock='cpu' times CPU inference; the device is {torch.device(device).type}: use 'wall'")
    if torch.get_num_threads() != 1:
        raise ValueError(
            f"clock='cpu' equals latency only for single-threaded inference, but torch uses "
            f"{torch.get_num_threads()} threads (CPU time adds up over threads): torch.set_num_threads(1) or 'wall'"
        )
    return time.process_time


class CostTableFile(FileModel):
    """A saved `CostTable` (JSON)."""

    format: Literal["supernet-cost-table"]
    version: int
    unit: str
    bias: float
    tables: dict[str, list[float]]
    options: dict[str, list[Any]]
    r2: float
    gates: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    pairs: dict[str, list[float]] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class CostTable:
    """An additive cost model ``c(a) = c0 + sum_d [d active in a] T_d[a_d]`` over a space's decisions (those with
    2+ options), as a per-layer lookup table: a decision counts only where it is *active* (a block's kernel size
    only when the depth keeps the block; `supernet.space.activity`), so depth and the blocks' own choices do not
    have to share one additive term. ``pairs`` add a joint term ``T_{d,e}[a_d, a_e]`` for two decisions that one
    layer reads together (a depthwise conv's kernel size and its expanded channel count: its cost is their product,
    which no sum of separate terms can express; `interacting_decisions`), keyed ``"d*e"``, its table over the cross
    product of their options (``d``'s option major); a pair counts where both decisions are active.

    Fitted by least squares to measured costs of sampled archs (`fit`): exact for additive costs (NB201 FLOPs),
    an approximation otherwise (``r2`` on the fitted archs says how good). ``options`` gives each decision's option
    order and ``gates`` when each decision is active (``{decision: {gate: [options]}}``, `decision_gates`), so a
    saved table predicts archs on its own. ``meta``: how it was measured (device, validation; ``gates_exact``:
    whether the gates gave the true active decisions of every fitted arch).
    """

    def __init__(
        self,
        bias: float,
        tables: dict[str, list[float]],
        r2: float,
        options: Mapping[str, Sequence[Any]],
        unit: str = "",
        meta: Mapping[str, Any] | None = None,
        gates: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
        pairs: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.bias, self.tables, self.r2, self.unit = bias, tables, r2, unit
        self.pairs = {k: list(v) for k, v in (pairs or {}).items()}
        names = set(tables) | {n for k in self.pairs for n in pair_names(k)}
        missing = sorted(names - set(options))
        if missing:
            raise ValueError(f"cost table: no options given for decisions {missing}")
        self.options = {n: list(options[n]) for n in sorted(names)}
        for key, t in self.pairs.items():
            a, b = pair_names(key)
            if len(t) != len(self.options[a]) * len(self.options[b]):
                raise ValueError(f"cost table pair {key!r} has {len(t)} entries; expected "
                                 f"{len(self.options[a])} x {len(self.options[b])}")
        self.meta = dict(meta or {})
        self.gates = {n: {g: list(v) for g, v in gate.items()} for n, gate in (gates or {}).items() if n in names}

    @property
    def decisions(self) -> list[str]:
        """Every decision the table reads (in single terms or in pairs)."""
        return list(self.options)

    @classmethod
    def fit(
        cls,
        space: SuperModule,
        measure: Callable[[], float],
        samples: int,
        seed: int,
        unit: str = "",
        archs: Sequence[Mapping[str, Any]] | None = None,
        interactions: bool = True,
        method: str = "monotone",
    ) -> CostTable:
        """Fit to ``measure()`` of the active subnet for the largest and smallest archs, one random arch per
        decision and option with that option forced (so no option is only ever seen beside the same others), and
        ``samples`` more random archs (all seeded); or for ``archs`` when given. Decisions with one option are left
        out (their cost is part of the bias). With ``interactions``, pairs of decisions that one layer reads together
        get a joint term, and one random arch per combination of each pair is measured too, unless the pairs have
        more than `MAX_PAIR_CELLS` combinations in all (then none is used; ``meta["interactions"]`` says so).
        ``method``: ``"nnls"`` fits by non-negative least squares: every entry and the bias is a cost of its own,
        never below zero. ``"lstsq"`` (plain least squares) is free to give an option a negative share
        where measurements are noisy or options collinear (a block's options against the depth that keeps it), which
        a search minimising the expected cost then exploits: a negative entry makes a block "cheaper than absent".
        ``"monotone"`` (the default) is non-negative and, for a *size* decision (kind kernel, depth or width,
        `supernet.space.kinds.decision_kinds`: a kernel size, an expand ratio, a width, a depth), non-decreasing in
        the option's value (a pair's cells in both): each entry is a sum of non-negative increments, one per step up
        the sorted options, so timing noise cannot make a larger option cheaper than a smaller one. Other decisions
        (operations, input indices, anything a layer does not declare as a size) are only non-negative.
        ``meta["design_rank"]`` below ``meta["free_parameters"]`` means the
        archs did not determine every option's share."""
        if method not in FIT_METHODS:  # before any (slow) measurement
            raise ValueError(f"cost table fit method must be one of {', '.join(FIT_METHODS)}; got {method!r}")
        decisions = [(n, c) for n, c in space.decisions.items() if len(c.options) > 1]
        gates = decision_gates(space)
        pairs = interacting_decisions(space) if interactions else []
        cells = sum(len(space.decisions[a].options) * len(space.decisions[b].options) for a, b in pairs)
        note = f"{len(pairs)} pairs, {cells} cells" if pairs else "none"
        if cells > MAX_PAIR_CELLS:
            pairs, note = [], f"dropped: {cells} pair cells > {MAX_PAIR_CELLS}"
        if archs is None:
            rng = random.Random(seed)
            archs = [space.max_arch(), space.min_arch()]
            for name, c in decisions:
                archs += [{**space.sample(rng=rng), name: o} for o in c.options]
            for a, b in pairs:  # every combination of a pair seen at least once, beside random others
                archs += [{**space.sample(rng=rng), a: oa, b: ob}
                          for oa in space.decisions[a].options for ob in space.decisions[b].options]
            archs += [space.sample(rng=rng) for _ in range(samples)]
        previous = space.arch
        rows, costs = [], []
        try:
            for arch in archs:
                space.set_arch(arch)
                costs.append(float(measure()))
                row = [1.0] + [float(arch[n] == o and is_active(n, arch, gates)) for n, c in decisions
                               for o in c.options]
                for a, b in pairs:
                    on = is_active(a, arch, gates) and is_active(b, arch, gates)
                    row += [float(on and arch[a] == oa and arch[b] == ob)
                            for oa in space.decisions[a].options for ob in space.decisions[b].options]
                rows.append(row)
        finally:
            space.set_arch(previous)
        x, y = torch.tensor(rows, dtype=torch.float64), torch.tensor(costs, dtype=torch.float64)
        if method == "nnls":
            coef = _nonnegative_lstsq(x, y)
        elif method == "monotone":  # entries = steps @ increments, increments >= 0
            sizes = {n for n, k in decision_kinds(space).items() if k != "other"}

            def steps_of(name: str) -> torch.Tensor:
                return _steps(space.decisions[name].options, name in sizes)

            steps = torch.block_diag(
                torch.ones(1, 1, dtype=torch.float64),
                *[steps_of(n) for n, _ in decisions],
                *[torch.kron(steps_of(a), steps_of(b)) for a, b in pairs],
            )
            coef = steps @ _nonnegative_lstsq(x @ steps, y)
        else:
            coef = torch.linalg.lstsq(x, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        tables, i = {}, 1
        for name, c in decisions:
            tables[name] = coef[i : i + len(c.options)].tolist()
            i += len(c.options)
        pair_tables = {}
        for a, b in pairs:
            n = len(space.decisions[a].options) * len(space.decisions[b].options)
            pair_tables[f"{a}{PAIR_SEPARATOR}{b}"] = coef[i : i + n].tolist()
            i += n
        meta = {"archs": len(archs), "design_rank": int(torch.linalg.matrix_rank(x)),
                "free_parameters": 1 + sum(len(c.options) - 1 for _, c in decisions)
                + sum((len(space.decisions[a].options) - 1) * (len(space.decisions[b].options) - 1) for a, b in pairs),
                "gates_exact": gates_match(space, gates, list(archs)), "interactions": note,
                "fit": method}
        return cls(float(coef[0]), tables, _r2(y, x @ coef), {n: c.options for n, c in decisions}, unit, meta, gates,
                   pair_tables)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], options: Mapping[str, Sequence[Any]] | None = None) -> CostTable:
        """A table from `state` output (``options`` for states saved before tables recorded them)."""
        opts = state.get("options") or options
        if opts is None:
            raise ValueError("this cost table state records no options: pass the space's options")
        if set(state["tables"]) != set(opts):
            raise ValueError(f"cost table decisions {sorted(state['tables'])} differ from {sorted(opts)}")
        return cls(float(state["bias"]), {k: list(v) for k, v in state["tables"].items()}, float(state["r2"]),
                   opts, str(state.get("unit", "")), state.get("meta"), state.get("gates"), state.get("pairs"))

    def moments(self, probs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the cost of archs drawn with independent per-decision option ``probs`` (one row
        per distribution, columns in option order); differentiable in ``probs``.

        A gated decision's term is ``B_d * T_d[a_d]`` with ``B_d`` its activity (probability
        ``q_d = prod_g P(a_g in allowed_g)``): its mean ``q_d E[T_d]`` is exact (a pair's too, with the two
        decisions' gates merged: a gate they share counts once); the
        variance adds each term's own variance ``q_d E[T_d^2] - (q_d E[T_d])^2`` and leaves out the covariance of
        terms sharing a decision or a gate.
        """
        mean: Any = self.bias
        var: Any = 0.0
        for name in self.tables:
            if name not in probs:
                raise KeyError(f"cost table: probs lack decision {name!r}")
            p = probs[name]
            t = torch.tensor(self.tables[name], dtype=p.dtype, device=p.device)
            q = self._activity(name, probs, p)
            m = q * (p @ t)
            mean = mean + m
            var = var + q * (p @ t.square()) - m.square()
        for key, values in self.pairs.items():
            a, b = pair_names(key)
            p = (probs[a].unsqueeze(-1) * probs[b].unsqueeze(-2)).flatten(-2)  # independent: the outer product
            t = torch.tensor(values, dtype=p.dtype, device=p.device)
            q = self._activity((a, b), probs, p)
            m = q * (p @ t)
            mean = mean + m
            var = var + q * (p @ t.square()) - m.square()
        return mean, var

    def _activity(self, names: str | tuple[str, ...], probs: Mapping[str, torch.Tensor], like: torch.Tensor) -> Any:
        """Probability that every decision of ``names`` is active under independent per-decision ``probs``: the
        gates of all of them merged (a gate shared by both decisions of a pair counts once)."""
        merged: dict[str, set[Any]] = {}
        for name in (names,) if isinstance(names, str) else names:
            for gate, allowed in self.gates.get(name, {}).items():
                merged[gate] = merged[gate] & set(map(repr, allowed)) if gate in merged else set(map(repr, allowed))
        q: Any = 1.0
        for gate, allowed in merged.items():
            if gate not in probs:
                raise KeyError(f"cost table: decisions {names!r} are gated by {gate!r}, which probs lack")
            mask = torch.tensor([float(repr(o) in allowed) for o in self.options[gate]], dtype=like.dtype,
                                device=like.device)
            q = q * (probs[gate] @ mask)
        return q

    def arch_cost(self, arch: Mapping[str, Any]) -> float:
        """The predicted cost of ``arch`` (its active decisions' and pairs' entries plus the bias)."""
        total = self.bias + sum(
            self.tables[n][_option_index(self.options[n], arch[n], n)]
            for n in self.tables
            if is_active(n, arch, self.gates)
        )
        for key, t in self.pairs.items():
            a, b = pair_names(key)
            if is_active(a, arch, self.gates) and is_active(b, arch, self.gates):
                ia, ib = _option_index(self.options[a], arch[a], a), _option_index(self.options[b], arch[b], b)
                total += t[ia * len(self.options[b]) + ib]
        return total

    def extremes(self) -> tuple[float, float]:
        """Bounds of the predicted cost over all archs (exact without gates; with gates, a gated decision's entries
        are bounded together with 0, its cost while inactive)."""
        terms = [(t, n in self.gates) for n, t in self.tables.items()]
        terms += [(t, any(n in self.gates for n in pair_names(k))) for k, t in self.pairs.items()]
        low = [min(0.0, *t) if gated else min(t) for t, gated in terms]
        high = [max(0.0, *t) if gated else max(t) for t, gated in terms]
        return self.bias + sum(low), self.bias + sum(high)

    def state(self) -> dict[str, Any]:
        """JSON-able state (`from_state` reads it back)."""
        return {"bias": self.bias, "tables": self.tables, "r2": self.r2, "options": self.options, "unit": self.unit,
                "gates": self.gates, "pairs": self.pairs, "meta": self.meta}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON, atomically."""
        path = Path(path)
        write_json(path, {"format": "supernet-cost-table", "version": 1, **self.state()})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CostTable:
        """Read a table written by `save`."""
        return cls.from_state(read_json(Path(path), CostTableFile, "supernet cost table"))


def _option_index(options: list[Any], option: Any, name: str) -> int:
    for i, o in enumerate(options):
        if o == option:
            return i
    raise ValueError(f"decision {name!r} has no option {option!r} in this cost table (options: {options})")


FIT_METHODS = ("nnls", "monotone", "lstsq")
"""`CostTable.fit` methods."""


def _steps(options: Sequence[Any], size: bool) -> torch.Tensor:
    """``M`` with ``entries = M @ increments``: for a ``size`` decision with numeric options, ``M[o, r] = 1`` when
    option ``o`` is at least the ``r``-th smallest (so entries grow with the option's value); else the identity."""
    n = len(options)
    if not size or not all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in options):
        return torch.eye(n, dtype=torch.float64)
    rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: options[i]))}
    return torch.tensor([[float(rank[i] >= r) for r in range(n)] for i in range(n)], dtype=torch.float64)


def _nonnegative_lstsq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``argmin |x c - y|`` over ``c >= 0`` (scipy's active-set NNLS), on ``y`` scaled to unit size for the solver's
    tolerances (latencies are milliseconds)."""
    from scipy.optimize import nnls

    scale = float(y.abs().max()) or 1.0
    coef, _ = nnls(x.numpy(), (y / scale).numpy(), maxiter=50 * x.shape[1])
    return torch.from_numpy(coef).to(torch.float64) * scale


def _r2(y: torch.Tensor, fitted: torch.Tensor) -> float:
    return 1.0 - float((y - fitted).square().sum() / (y - y.mean()).square().sum().clamp_min(1e-12))


def device_description(device: str | torch.device) -> dict[str, Any]:
    """What a measurement ran on: the device (GPU name or CPU model), threads, torch version, platform."""
    device = torch.device(device)
    out: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "platform": platform.platform()}
    if device.type == "cuda":
        out["name"] = torch.cuda.get_device_name(device)
    else:
        out["name"] = platform.processor() or platform.machine()
        out["threads"] = torch.get_num_threads()
    return out


def latency_table(
    space: SuperModule,
    example_input: Any,
    device: str | torch.device = "cpu",
    samples: int = 48,
    holdout: int = 16,
    warmup: int = 3,
    repeats: int = 15,
    seed: int = 0,
    progress: bool = True,
    clock: str = "wall",
    method: str = "monotone",
) -> CostTable:
    """A latency lookup table of ``space`` on ``device``: per decision and option, its additive share of the
    measured latency (seconds) of whole extracted subnets, so an arch's latency is predicted as a sum.

    Each option is measured in context: ``samples`` random archs (plus the largest, the smallest and one random
    arch per option with that option forced, see `CostTable.fit`) are extracted and timed end to end (`latency`:
    ``warmup`` runs, then the median of ``repeats``), and the table is fitted to them (``method``, below);
    ``holdout`` further random archs are timed to validate it (``meta["holdout"]``: R^2, mean and max absolute
    relative error of the predictions). ``clock`` is `latency`'s (``"cpu"`` on a shared machine, one thread);
    ``method`` is `CostTable.fit`'s (``"monotone"``, ``"nnls"`` or ``"lstsq"``; measured side by side on the same
    timings by ``benchmarks/latency_table.py``: monotone ranked fresh archs best on both ready spaces it was run on).
    Deliberate difference from per-layer lookup tables
    (ProxylessNAS, FBNet): whole-net timings include what per-layer timers miss (memory traffic between layers,
    framework overhead), and need no hook into every layer of a user's network.
    """
    if samples < 1 or holdout < 0:
        raise ValueError(f"need samples >= 1 and holdout >= 0, got {samples} and {holdout}")
    _timer(clock, device)  # a bad clock fails before any timing
    bar = None
    if progress:
        from tqdm.auto import tqdm

        options = sum(len(c.options) for c in space.decisions.values() if len(c.options) > 1)
        bar = tqdm(total=samples + 2 + options + holdout, desc="latency table", unit="arch")

    def measure() -> float:
        value = latency(space, example_input, device=device, warmup=warmup, repeats=repeats, clock=clock)
        if bar is not None:
            bar.update()
        return value

    try:
        table = CostTable.fit(space, measure, samples, seed, unit="s", method=method)
        rng = random.Random(seed + 1)
        previous = space.arch
        checks = []
        try:
            for _ in range(holdout):
                arch = space.sample(rng=rng)
                space.set_arch(arch)
                checks.append((table.arch_cost(arch), measure()))
        finally:
            space.set_arch(previous)
    finally:
        if bar is not None:
            bar.close()
    table.meta.update(device_description(device), warmup=warmup, repeats=repeats, clock=clock)
    if checks:
        pred = torch.tensor([p for p, _ in checks], dtype=torch.float64)
        real = torch.tensor([m for _, m in checks], dtype=torch.float64)
        rel = ((pred - real).abs() / real.clamp_min(1e-12)).tolist()
        table.meta["holdout"] = {"archs": len(checks), "r2": _r2(real, pred), "mean_rel_error": statistics.fmean(rel),
                                 "max_rel_error": max(rel)}
    if not math.isfinite(table.bias):
        raise ValueError("the latency fit failed (non-finite coefficients)")
    return table
