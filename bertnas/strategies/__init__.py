"""Search strategies that run inside the supernet trainer: differentiable (DARTS, GDAS, SNAS,
PC-DARTS, GAEA), weight-sharing random / evolution (RS-WS, SPOS) and RL controllers
(REINFORCE, PPO). One interface (`base.Strategy`), one small registry here.

    strategy = build_strategy("darts", space, seed=0, arch_lr=3e-4)
    run_strategy({"space": "nb201", "strategy": "gaea-darts", ...})   # bertnas/strategies/run.py

Strategy modules are imported lazily from `_MODULES`, so a module that is missing or broken
only fails when its name is asked for.
"""

from __future__ import annotations

import importlib

from bertnas.strategies.base import MixedArch, Strategy

# strategy name -> module of this package that registers it
_MODULES = {
    "darts": "darts", "gdas": "gdas", "snas": "snas", "pcdarts": "pcdarts",
    "gaea-darts": "gaea", "gaea-gdas": "gaea", "gaea-pcdarts": "gaea",
    "rsws": "rsws", "spos": "spos", "reinforce": "reinforce", "ppo": "ppo",
}

STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str):
    """Class decorator: `@register_strategy("darts")` makes `build_strategy("darts", ...)` build it."""

    def wrap(cls):
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {STRATEGIES[name].__qualname__}")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return wrap


def strategy_names() -> list[str]:
    return sorted(set(_MODULES) | set(STRATEGIES))


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES and name in _MODULES:
        importlib.import_module(f"{__name__}.{_MODULES[name]}")
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(strategy_names())}")
    return STRATEGIES[name]


def build_strategy(name: str, space, seed: int = 0, **options) -> Strategy:
    """The strategy registered under `name` for `space`; `options` are its keyword options
    (a clear error names the unknown ones and the accepted ones)."""
    return strategy_class(name)(space, seed, **options)


def run_strategy(config, **overrides) -> dict:
    from bertnas.strategies.run import run_strategy as run

    return run(config, **overrides)


__all__ = ["MixedArch", "STRATEGIES", "Strategy", "build_strategy", "register_strategy", "run_strategy",
           "strategy_class", "strategy_names"]
