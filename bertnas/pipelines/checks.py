"""Checks a run makes before it imports torch or touches its folder: the config's registered
names exist (task, sampler, strategy, space) and the files it names are there."""

from __future__ import annotations

from bertnas.train.config import PretrainConfig, check_names, check_sources


def preflight(cfg: PretrainConfig) -> None:
    """Names and sources (paths, Hub ids) of a run, before anything is built."""
    check_names(cfg)
    check_sources(cfg)


__all__ = ["check_names", "preflight"]
