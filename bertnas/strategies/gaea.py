"""GAEA (Li et al. 2021, "Geometry-aware gradient algorithms for NAS"): the same search as
DARTS / GDAS / PC-DARTS, but the architecture parameters are theta itself on each simplex (no
softmax), updated by exponentiated gradient `theta <- theta * exp(-eta * grad_theta L)` and then
renormalised per simplex. `arch_lr` is eta. `bilevel: true` takes L on the held-out half of the
training rows, `bilevel: false` is single-level ERM (weights and theta on the same training loss)."""

from __future__ import annotations


from bertnas.strategies.darts import Darts
from bertnas.strategies.gdas import Gdas
from bertnas.strategies.pcdarts import PcDarts

GAEA_DEFAULTS = {"arch_lr": 0.1, "arch_weight_decay": 0.0}


class GaeaDarts(Darts):
    simplex = True
    defaults = {**Darts.defaults, **GAEA_DEFAULTS}


class GaeaGdas(Gdas):
    simplex = True
    defaults = {**Gdas.defaults, **GAEA_DEFAULTS}


class GaeaPcDarts(PcDarts):
    simplex = True
    defaults = {**PcDarts.defaults, **GAEA_DEFAULTS}


__all__ = ["GaeaDarts", "GaeaGdas", "GaeaPcDarts"]
