"""Objectives (what a search minimises or maximises) and hard constraints (``params <= 1e6``)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
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
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*([kKmMgGxX%]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
# Suffixes of a relative bound: a fraction of the largest arch's value ("params <= 50%", "flops <= 0.6x").
_RELATIVE = {"%": 0.01, "x": 1.0}
# Metrics a relative bound can refer to: those the cost model measures for the largest arch.
RELATIVE_METRICS = CHEAP_METRICS


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
    """A hard constraint ``metric op bound``, e.g. ``params <= 1e6``, or relative to the space's largest arch.

    A relative constraint (``params <= 50%``, ``flops <= 0.6x``) has ``fraction`` set: its bound is ``fraction``
    times ``reference``, the metric of the space's largest arch (for a space made by `supernet.convert`: the
    original model). Until the search sets the reference (`resolve`), ``bound`` holds the fraction itself and
    the constraint cannot be checked.

    Attributes:
        metric / op / bound: the constraint (``bound`` absolute once resolved).
        fraction: the relative bound as a fraction (0.5 for ``50%``), or None for an absolute constraint.
        reference: the largest arch's value of ``metric`` that ``fraction`` refers to (None until resolved).
    """

    metric: str
    op: str
    bound: float
    fraction: float | None = None
    reference: float | None = None

    @property
    def cheap(self) -> bool:
        """Whether it can be checked without evaluating the subnet on data."""
        return self.metric in CHEAP_METRICS

    @property
    def relative(self) -> bool:
        """Whether the bound is a fraction of the largest arch's value."""
        return self.fraction is not None

    @property
    def resolved(self) -> bool:
        """Whether the bound is known (absolute, or relative with its reference set)."""
        return self.fraction is None or self.reference is not None

    def resolve(self, reference: float) -> Constraint:
        """This relative constraint with its reference value (the largest arch's metric) and absolute bound."""
        if self.fraction is None:
            return self
        if not math.isfinite(reference) or reference <= 0:
            raise ValueError(f"constraint '{self}': the reference {self.metric} must be a positive number, "
                             f"got {reference!r}")
        return replace(self, bound=self.fraction * float(reference), reference=float(reference))

    def violation(self, value: float) -> float:
        """0 when satisfied, else a positive amount of violation (for NSGA-II's constrained domination).

        Raises:
            ValueError: a relative constraint whose reference is not known yet.
        """
        if not self.resolved:
            raise ValueError(
                f"constraint '{self}' is relative to the largest arch's {self.metric}, which is not known here: "
                "relative constraints are resolved by a search (sn.search / supernet search); elsewhere give an "
                "absolute bound"
            )
        if _OPS[self.op](value, self.bound):
            return 0.0
        gap = abs(value - self.bound)
        return gap if gap > 0 else 1e-12

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` meets the constraint."""
        return self.violation(value) == 0.0

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.metric} {self.op} {self.fraction * 100:g}%"
        return f"{self.metric} {self.op} {self.bound:g}"

    def describe(self) -> str:
        """`str` with the absolute bound of a resolved relative constraint (``params <= 50% (= 61,234)``)."""
        if self.fraction is not None and self.reference is not None:
            return f"{self} (= {self.bound:,.6g})"
        return str(self)


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

    Numbers may end in k/M/G (thousands, millions, billions). A bound ending in ``%`` or ``x`` is relative to the
    largest arch of the space searched (for a space made by `supernet.convert`: the original model):
    ``params <= 50%``, ``flops <= 0.6x`` (``{"params": "50%"}`` in the mapping form); a search resolves it
    (`Constraint.resolve`). Only params, FLOPs and latency take a relative bound.

    Raises:
        ValueError: a constraint that is not ``metric op number`` with op one of <=, >=, <, >, or a relative
            bound on a metric that has no reference value (loss, accuracy, ...).
    """
    if constraints is None:
        return []
    if isinstance(constraints, Mapping):
        out = []
        for k, v in constraints.items():
            if isinstance(v, str):
                out += parse_constraints([f"{k} <= {v}"])
                continue
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
        name = ALIASES.get(name, name)
        suffix = suffix.lower()
        try:
            value = float(number.replace("_", ""))
        except ValueError:
            raise ValueError(f"constraint {text!r}: {number!r} is not a number") from None
        if suffix in _RELATIVE:
            if name not in RELATIVE_METRICS:
                raise ValueError(
                    f"constraint {text!r}: a relative bound ({number}{suffix}) is a fraction of the largest arch's "
                    f"{' / '.join(RELATIVE_METRICS)}; {name} has no reference value: give an absolute bound"
                )
            fraction = value * _RELATIVE[suffix]
            if not math.isfinite(fraction) or fraction < 0:
                raise ValueError(f"constraint {text!r}: a relative bound must be a finite fraction >= 0")
            out.append(Constraint(name, op, fraction, fraction=fraction))
            continue
        bound = value * _SUFFIX[suffix]
        if not math.isfinite(bound):
            raise ValueError(f"constraint {text!r}: the bound must be finite")
        out.append(Constraint(name, op, bound))
    return out


def resolve_constraints(
    constraints: Sequence[Constraint], reference: Callable[[list[str]], Mapping[str, float]]
) -> list[Constraint]:
    """``constraints`` with every unresolved relative one resolved against ``reference(metrics)``: the values of
    those metrics for the space's largest arch (`Constraint.resolve`)."""
    todo = sorted({c.metric for c in constraints if not c.resolved})
    if not todo:
        return list(constraints)
    values = reference(todo)
    return [c.resolve(float(values[c.metric])) if not c.resolved else c for c in constraints]


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
