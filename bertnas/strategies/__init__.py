"""Search strategies that run inside the supernet trainer: differentiable (DARTS, GDAS, SNAS,
PC-DARTS, GAEA), weight-sharing random / evolution (RS-WS, SPOS) and RL controllers
(REINFORCE, PPO). One interface (`base.Strategy`), one small registry here.

    strategy = build_strategy("darts", space, seed=0, arch_lr=3e-4)
    run_strategy({"space": "nb201", "strategy": "gaea-darts", ...})   # bertnas/pipelines/strategy.py
"""

from __future__ import annotations

from bertnas.core.lazy import lazy_attributes
from bertnas.core.moved import moved_attributes
from bertnas.strategies.registry import STRATEGIES

# The base classes import torch: loaded on first use, so listing strategies stays light.
_lazy_getattr, __dir__ = lazy_attributes(__name__, {"MixedArch": "bertnas.strategies.base",
                                                    "Strategy": "bertnas.strategies.base"})
# run_strategy composes a whole run: it lives in bertnas.pipelines.strategy now.
_moved_getattr = moved_attributes(__name__, {"run_strategy": "bertnas.pipelines.strategy:run_strategy"})


def __getattr__(name):
    return _moved_getattr(name) if name == "run_strategy" else _lazy_getattr(name)


def register_strategy(name: str):
    """Class decorator: `@register_strategy("darts")` makes `build_strategy("darts", ...)` build it."""
    return STRATEGIES.register(name)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


def strategy_class(name: str) -> type:
    return STRATEGIES.get(name)


def build_strategy(name: str, space, seed: int = 0, **options):
    """The strategy registered under `name` for `space`; `options` are its keyword options
    (a clear error names the unknown ones and the accepted ones)."""
    return strategy_class(name)(space, seed, **options)


__all__ = ["MixedArch", "STRATEGIES", "Strategy", "build_strategy", "register_strategy", "strategy_class",
           "strategy_names"]
