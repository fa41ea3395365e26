"""The strategy registry: name -> strategy class (see `bertnas/core/registry.py`)."""

from __future__ import annotations

from bertnas.core.registry import Registry

# name -> "module:class"; a strategy module is imported when its name is first asked for, so a
# missing or broken module only fails then. A new strategy: one module here and one line below.
STRATEGIES = Registry("strategy", lazy={
    "darts": "bertnas.strategies.darts:Darts",
    "gdas": "bertnas.strategies.gdas:Gdas",
    "snas": "bertnas.strategies.snas:Snas",
    "pcdarts": "bertnas.strategies.pcdarts:PcDarts",
    "gaea-darts": "bertnas.strategies.gaea:GaeaDarts",
    "gaea-gdas": "bertnas.strategies.gaea:GaeaGdas",
    "gaea-pcdarts": "bertnas.strategies.gaea:GaeaPcDarts",
    "rsws": "bertnas.strategies.rsws:RandomSearchStrategy",
    "spos": "bertnas.strategies.spos:SposStrategy",
    "reinforce": "bertnas.strategies.reinforce:ReinforceStrategy",
    "ppo": "bertnas.strategies.ppo:PpoStrategy",
})

__all__ = ["STRATEGIES"]
