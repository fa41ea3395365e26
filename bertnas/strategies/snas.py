"""SNAS (Xie et al. 2019): each forward uses a soft Gumbel-softmax sample per choice (a
relaxed one-hot), the temperature annealed exponentially from `tau_max` to `tau_min`; weights
and architecture are trained on the same training loss (single level, `bilevel: false`).
SNAS' resource constraint is not included."""

from __future__ import annotations


from bertnas.strategies.gdas import Gdas


class Snas(Gdas):
    hard = False
    defaults = {**Gdas.defaults, "bilevel": False, "tau_max": 1.0, "tau_min": 0.03}

    def temperature(self, step: int) -> float:
        hi, lo = float(self.options["tau_max"]), float(self.options["tau_min"])
        frac = min(step, self.max_steps - 1) / max(1, self.max_steps - 1)
        return hi * (lo / hi) ** frac


__all__ = ["Snas"]
