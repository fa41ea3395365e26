"""Budgets a searched subnet must meet (params, FLOPs, latency) and human sizes ("10M").

Every search method asks the same `Constraints` object whether an arch is allowed, so no
method can return an arch over budget. `check_feasible` fails early, before any scoring,
when even the cheapest arch of the space is over a budget.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_SIZE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(value: str | int | float | None) -> int | None:
    """'10M' -> 10_000_000, '1.5G' -> 1_500_000_000, '250k', '2e6', 1234 -> itself; None stays None.

    Units are decimal (k = 1e3, M = 1e6, G = 1e9, T = 1e12), case-insensitive."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"Expected a size like 10M, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"Cannot read the size {value!r}: write a number with an optional k/M/G/T suffix, "
                             "e.g. 10M or 1.5G")
        number, unit = float(match.group(1)), match.group(2).lower()
    if number <= 0 or not math.isfinite(number):
        raise ValueError(f"Sizes must be positive, got {value!r}")
    return int(round(number * _UNITS[unit]))


def human(n: float | None) -> str:
    """12_345_678 -> '12.3M' (for messages, model cards and plots)."""
    if n is None:
        return "n/a"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


class InfeasibleBudget(ValueError):
    """No arch of the space meets the budget."""


@dataclass
class Constraints:
    """Upper bounds on the backbone's parameters, FLOPs per sequence of `seq_len` tokens and
    predicted latency (ms, `latency_table.predict`: the table's fitted predictor when it has one,
    else its plain per-op sum). A bound left None is not checked."""

    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    seq_len: int = 128
    latency_table: Any = None  # a bertnas.search.latency.LatencyTable

    def __post_init__(self):
        self.max_params = parse_size(self.max_params)
        self.max_flops = parse_size(self.max_flops)
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise ValueError(f"max_latency_ms must be positive, got {self.max_latency_ms}")
        if self.max_latency_ms is not None and self.latency_table is None:
            raise ValueError("A latency budget needs a latency table: build one with "
                             "`bertnas search --build-latency-table OUT.json` and pass --latency-table OUT.json")

    # -- costs ----------------------------------------------------------------------------
    def costs(self, space, arch) -> dict:
        """{"params", "flops", "latency_ms"} of `arch` (latency None without a table)."""
        latency = self.latency_table.predict(arch, self.seq_len) if self.latency_table is not None else None
        return {"params": int(space.params(arch)), "flops": int(space.flops(arch, self.seq_len)), "latency_ms": latency}

    def violations(self, space, arch, costs: dict | None = None) -> list[str]:
        """Human-readable reasons `arch` is over budget (empty when it is allowed)."""
        costs = costs or self.costs(space, arch)
        out = []
        if self.max_params is not None and costs["params"] > self.max_params:
            out.append(f"params {human(costs['params'])} > {human(self.max_params)}")
        if self.max_flops is not None and costs["flops"] > self.max_flops:
            out.append(f"FLOPs {human(costs['flops'])} > {human(self.max_flops)}")
        if self.max_latency_ms is not None and costs["latency_ms"] > self.max_latency_ms:
            out.append(f"latency {costs['latency_ms']:.3f} ms > {self.max_latency_ms} ms")
        return out

    def allows(self, space, arch) -> bool:
        return not self.violations(space, arch)

    def describe(self) -> dict:
        return {"max_params": self.max_params, "max_flops": self.max_flops,
                "max_latency_ms": self.max_latency_ms, "seq_len": self.seq_len}

    # -- feasibility ------------------------------------------------------------------------
    def check_feasible(self, space) -> None:
        """Raise InfeasibleBudget when no arch of `space` meets every bound.

        Chain spaces with per-op costs (`BertSpace`) are checked exactly (the costs add up
        over layers, so each bound's minimum is the sum of per-layer minima); other spaces by
        sampling."""
        if self.max_params is None and self.max_flops is None and self.max_latency_ms is None:
            return
        if hasattr(space, "op_params") and hasattr(space, "op_flops"):
            self._check_additive(space)
            return
        import random

        rng = random.Random(0)
        for _ in range(5000):
            if self.allows(space, space.sample(rng)):
                return
        raise InfeasibleBudget(f"No sampled arch of {space} meets the budget {self.describe()}; raise the budget")

    def _check_additive(self, space) -> None:
        layers = list(space.choices.values())

        def per_layer_min(op_cost):
            return lambda: space.arch([min(ops, key=op_cost) for ops in layers])

        checks = []  # (label, the cheapest arch by this bound, bound, cost of an arch)
        if self.max_params is not None:
            checks.append(("params", per_layer_min(space.op_params), self.max_params, lambda a: space.params(a)))
        if self.max_flops is not None:
            checks.append(("FLOPs", per_layer_min(lambda op: space.op_flops(op, self.seq_len)), self.max_flops,
                           lambda a: space.flops(a, self.seq_len)))
        if self.max_latency_ms is not None:
            table = self.latency_table
            # the predictor's own minimum (exact also when it has costs of adjacent layer pairs)
            checks.append(("latency (ms)", lambda: space.arch(table.cheapest(layers, self.seq_len)),
                           self.max_latency_ms, lambda a: table.predict(a, self.seq_len)))
        for label, cheapest, bound, total in checks:
            smallest = cheapest()
            least = total(smallest)
            if least > bound:
                shown = f"{least:.3f}" if isinstance(least, float) else human(least)
                raise InfeasibleBudget(
                    f"No arch meets the {label} budget {human(bound) if label != 'latency (ms)' else bound}: the "
                    f"cheapest arch of the space, {list(smallest.ops)}, already has {shown}. Raise the budget "
                    f"(or search a supernet with cheaper candidates)"
                )
        # Each bound alone can be met. Together: try the cheapest arch of each bound, then
        # random archs (costs grow together in practice, so this ends at once).
        for _, cheapest, _, _ in checks:
            if self.allows(space, cheapest()):
                return
        import random

        rng = random.Random(0)
        for _ in range(5000):
            if self.allows(space, space.sample(rng)):
                return
        raise InfeasibleBudget(
            f"Each bound of {self.describe()} can be met alone but no sampled arch meets them together; "
            "loosen one of them"
        )


def sample_allowed(space, constraints: Constraints, rng, accept=None, max_tries: int = 10_000):
    """Rejection sampling: a uniform arch of `space` that meets `constraints` (and `accept`, if
    given). Raises InfeasibleBudget after `max_tries` misses."""
    for _ in range(max_tries):
        arch = space.sample(rng)
        if constraints.allows(space, arch) and (accept is None or accept(arch)):
            return arch
    raise InfeasibleBudget(
        f"{max_tries} uniform samples of {space} found no arch within {constraints.describe()}"
        f"{' and the requested region' if accept is not None else ''}; the budget leaves almost nothing of the space"
    )


__all__ = ["Constraints", "InfeasibleBudget", "parse_size", "human", "sample_allowed"]
