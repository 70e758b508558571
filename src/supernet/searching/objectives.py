"""Objectives (what a search minimises or maximises) and hard constraints (``params <= 1e6``)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Metrics computed from the architecture alone (no data): checked before a subnet is evaluated.
CHEAP_METRICS = ("params", "flops", "latency")
# Default direction of well-known metrics; any other metric needs an explicit "name:min" / "name:max".
DIRECTIONS = {
    "loss": "minimize",
    "accuracy": "maximize",
    "params": "minimize",
    "flops": "minimize",
    "latency": "minimize",
    "potential": "maximize",
}
# Metrics measured across rounds of supernet training interleaved with the search (`supernet.searching.potential`):
# naming one in an objective or constraint makes the search an EMARS-style interleaved one.
INTERLEAVED_METRICS = ("potential",)
# Other names of metrics, accepted in objectives and constraints and stored under the metric's own name.
ALIASES = {"acc": "accuracy"}
# What a search of a training run can measure: the default evaluator's val loss/accuracy and the cost model's
# (and, with interleaved training, the potential).
RUN_METRICS = ("loss", "accuracy", *CHEAP_METRICS, *INTERLEAVED_METRICS)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*([kKmMgG]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


@dataclass(frozen=True)
class Objective:
    """One search objective: a metric name and whether to ``minimize`` or ``maximize`` it."""

    metric: str
    direction: str

    @property
    def cheap(self) -> bool:
        """Whether the metric comes from the architecture alone (params, FLOPs, latency)."""
        return self.metric in CHEAP_METRICS

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "minimize" else a > b


@dataclass(frozen=True)
class Constraint:
    """A hard constraint ``metric op bound``, e.g. ``params <= 1e6``."""

    metric: str
    op: str
    bound: float

    @property
    def cheap(self) -> bool:
        """Whether it can be checked without evaluating the subnet on data."""
        return self.metric in CHEAP_METRICS

    def violation(self, value: float) -> float:
        """0 when satisfied, else a positive amount of violation (for NSGA-II's constrained domination)."""
        if _OPS[self.op](value, self.bound):
            return 0.0
        gap = abs(value - self.bound)
        return gap if gap > 0 else 1e-12

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` meets the constraint."""
        return self.violation(value) == 0.0

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_objectives(objectives: str | Iterable[str] | Mapping[str, str]) -> list[Objective]:
    """Objectives from ``"loss"``, ``["loss", "params"]``, ``["accuracy:max"]`` or ``{"loss": "minimize"}``.

    ``acc`` is another name of ``accuracy`` (see `ALIASES`); ``potential`` (maximised) is EMARS' potential, measured
    by a search that interleaves supernet training (`supernet.searching.potential`).

    Raises:
        ValueError: an unknown metric without a direction, a bad direction, a repeated metric or none at all.
    """
    if isinstance(objectives, str):
        objectives = [o for o in objectives.split(",") if o.strip()]
    items: list[tuple[str, str | None]]
    if isinstance(objectives, Mapping):
        items = [(str(k), str(v)) for k, v in objectives.items()]
    else:
        items = []
        for spec in objectives:
            name, _, direction = str(spec).strip().partition(":")
            items.append((name.strip(), direction.strip() or None))
    items = [(ALIASES.get(name, name), direction) for name, direction in items]
    out: list[Objective] = []
    for name, direction in items:
        if direction is None:
            if name not in DIRECTIONS:
                raise ValueError(
                    f"objective {name!r}: unknown metric without a direction; write {name}:min or {name}:max "
                    f"(metrics with a default direction: {', '.join(DIRECTIONS)})"
                )
            direction = DIRECTIONS[name]
        direction = {"min": "minimize", "max": "maximize"}.get(direction, direction)
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"objective {name!r}: direction must be min/minimize or max/maximize, got {direction!r}")
        if any(o.metric == name for o in out):
            raise ValueError(f"objective {name!r} is given twice")
        out.append(Objective(name, direction))
    if not out:
        raise ValueError("at least one objective is needed, e.g. ['loss', 'params']")
    return out


def parse_constraints(constraints: str | Sequence[str] | Mapping[str, float] | None) -> list[Constraint]:
    """Constraints from ``"params <= 1e6"``, ``["params<=1M", "latency<=0.005"]`` or ``{"params": 1e6}`` (``<=``).

    Numbers may end in k/M/G (thousands, millions, billions).

    Raises:
        ValueError: a constraint that is not ``metric op number`` with op one of <=, >=, <, >.
    """
    if constraints is None:
        return []
    if isinstance(constraints, Mapping):
        out = []
        for k, v in constraints.items():
            try:
                out.append(Constraint(ALIASES.get(str(k), str(k)), "<=", float(v)))
            except (TypeError, ValueError):
                raise ValueError(f"constraint {k!r}: expected a number as upper bound, got {v!r}") from None
        return out
    if isinstance(constraints, str):
        constraints = [c for c in constraints.split(",") if c.strip()]
    out = []
    for text in constraints:
        m = _CONSTRAINT_RE.match(str(text))
        if not m:
            raise ValueError(
                f"constraint {text!r}: expected 'metric op number' with op one of <=, >=, <, > "
                "(e.g. 'params <= 1e6', 'latency < 0.005', 'accuracy >= 0.9')"
            )
        name, op, number, suffix = m.groups()
        try:
            bound = float(number.replace("_", "")) * _SUFFIX[suffix.lower()]
        except ValueError:
            raise ValueError(f"constraint {text!r}: {number!r} is not a number") from None
        if not math.isfinite(bound):
            raise ValueError(f"constraint {text!r}: the bound must be finite")
        out.append(Constraint(ALIASES.get(name, name), op, bound))
    return out


def uses_interleaved(objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> bool:
    """Whether an objective or constraint names a metric of `INTERLEAVED_METRICS` (``potential``)."""
    return any(x.metric in INTERLEAVED_METRICS for x in [*objectives, *constraints])


@dataclass(frozen=True)
class Domain:
    """The values a metric can take: an interval with open or closed ends, and why (for error messages)."""

    low: float = -math.inf
    low_closed: bool = False
    high: float = math.inf
    high_closed: bool = False
    why: str = ""

    def meet(self, c: Constraint) -> Domain:
        """The values of this domain that also satisfy ``c``."""
        low, low_closed, high, high_closed = self.low, self.low_closed, self.high, self.high_closed
        if c.op in ("<=", "<"):
            closed = c.op == "<="
            if c.bound < high or (c.bound == high and not closed):
                high, high_closed = c.bound, closed
        else:
            closed = c.op == ">="
            if c.bound > low or (c.bound == low and not closed):
                low, low_closed = c.bound, closed
        return Domain(low, low_closed, high, high_closed, self.why)

    @property
    def empty(self) -> bool:
        """Whether no value lies in the domain."""
        return self.low > self.high or (self.low == self.high and not (self.low_closed and self.high_closed))


# The values the built-in metrics can take. Loss and accuracy are those of the default run evaluator (a
# user's evaluator may return a "loss" of another kind); params/FLOPs/latency come from the cost model.
METRIC_DOMAINS: dict[str, Domain] = {
    "loss": Domain(0.0, False, why="the validation loss is a cross-entropy, which is always > 0"),
    "accuracy": Domain(0.0, True, 1.0, True, why="accuracy is a fraction, always between 0 and 1"),
    "params": Domain(0.0, False, why="every subnet has > 0 parameters"),
    "flops": Domain(0.0, False, why="every subnet has > 0 FLOPs"),
    "latency": Domain(0.0, False, why="a forward pass always takes > 0 seconds"),
}


def check_known_metrics(
    objectives: Sequence[Objective], constraints: Sequence[Constraint], known: Sequence[str], source: str
) -> None:
    """Fail before any evaluation when an objective or constraint names a metric that ``source`` never measures.

    Raises:
        ValueError: naming the unknown metric, where it is used, and the known metrics.
    """
    uses = [(o.metric, f"objective {o.metric!r}") for o in objectives]
    uses += [(c.metric, f"constraint '{c}'") for c in constraints]
    for metric, where in uses:
        if metric not in known:
            raise ValueError(
                f"unknown metric {metric!r} in {where}: {source} measures only {', '.join(known)} "
                "(pass evaluator=fn(arch) -> {name: value} to search other metrics)"
            )


def check_satisfiable(constraints: Sequence[Constraint], domains: Mapping[str, Domain] | None = None) -> None:
    """Fail before any evaluation when no value of a metric can meet its constraints.

    A constraint is impossible on its own when it excludes the metric's whole domain (``loss <= 0``,
    ``accuracy > 1``), or together with others on the same metric (``loss >= 2`` with ``loss <= 1``).

    Raises:
        ValueError: naming the impossible constraint(s) and why.
    """
    domains = domains or {}
    by_metric: dict[str, list[Constraint]] = {}
    for c in constraints:
        by_metric.setdefault(c.metric, []).append(c)
    for metric, cons in by_metric.items():
        domain = domains.get(metric, Domain())
        for c in cons:
            if domain.meet(c).empty:
                raise ValueError(f"no arch can satisfy '{c}': {domain.why or f'{metric} never meets it'}")
        joint = domain
        for i, c in enumerate(cons):
            joint = joint.meet(c)
            if joint.empty:
                clash = " and ".join(f"'{x}'" for x in cons[: i + 1])
                raise ValueError(f"no arch can satisfy {clash} together: no value of {metric} meets them all")


def violations(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> list[float]:
    """Violation of each constraint under ``metrics`` (0 = satisfied).

    Raises:
        KeyError: a constraint names a metric the evaluation did not produce.
    """
    out = []
    for c in constraints:
        if c.metric not in metrics:
            raise KeyError(
                f"constraint '{c}' needs metric {c.metric!r}, which the evaluation did not produce "
                f"(got: {', '.join(sorted(metrics))})"
            )
        out.append(c.violation(float(metrics[c.metric])))
    return out
