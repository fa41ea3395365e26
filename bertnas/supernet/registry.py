"""The sampler registry: name -> `Sampler` class (`sampling.py`). Listing the names (CLI
choices, config checks) imports no torch."""

from __future__ import annotations

from bertnas.core.registry import Registry

SAMPLERS = Registry("sampler", lazy={
    "uniform": "bertnas.supernet.sampling:UniformSampler",  # SPOS
    "walk": "bertnas.supernet.sampling:WalkSampler",  # MAGIC-T
    "fair": "bertnas.supernet.sampling:FairSampler",  # FairNAS strict fairness
    "deiso": "bertnas.supernet.sampling:DeisoSampler",  # one arch per isomorphism class (NB201)
    "constant": "bertnas.supernet.sampling:ConstantSampler",  # one fixed arch (stand-alone training)
})

__all__ = ["SAMPLERS"]
