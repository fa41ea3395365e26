"""Which subnet trains at each step: uniform (SPOS) or a random walk (MAGIC-T).

Every rank builds its sampler with the same seed, so all ranks draw the same arch each step
without communication; `assert_same_arch` checks that cheaply.
"""

from __future__ import annotations

import hashlib
import random

import torch

from .spaces.base import Arch, SearchSpace


def _rng_state_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from_json(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


class Sampler:
    """Base class: seeded `random.Random`, the last arch, JSON-serialisable state."""

    name = "base"

    def __init__(self, space: SearchSpace, seed: int):
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.arch: Arch | None = None
        self.steps = 0

    def next(self) -> Arch:
        self.arch = self._draw()
        self.steps += 1
        return self.arch

    def _draw(self) -> Arch:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "steps": self.steps,
            "arch": list(self.arch.ops) if self.arch is not None else None,
            "rng": _rng_state_to_json(self.rng.getstate()),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(
                f"Sampler state is for {state.get('name')!r}, not {self.name!r}: resume with the same --sampler"
            )
        self.seed = state["seed"]
        self.steps = state["steps"]
        self.arch = self.space.arch(state["arch"]) if state["arch"] is not None else None
        self.rng.setstate(_rng_state_from_json(state["rng"]))


class UniformSampler(Sampler):
    """SPOS: every layer's op drawn uniformly and independently each step."""

    name = "uniform"

    def _draw(self) -> Arch:
        return self.space.sample(self.rng)


class WalkSampler(Sampler):
    """MAGIC-T: the previous arch with exactly `k` layers changed, each to a different op drawn
    uniformly. The first arch is `start` (or a uniform sample).

    With k = 1 the walk mixes towards uniform sampling (METHODS §3) as long as some layer has
    3 or more candidates (the BERT spaces have 7-8). If every layer has exactly 2, each step
    changes the parity of the arch by k, so the walk alternates between two halves of the space
    (k odd) or never leaves one (k even): use the uniform sampler for such spaces."""

    name = "walk"

    def __init__(self, space: SearchSpace, seed: int, k: int = 1, start=None):
        super().__init__(space, seed)
        mutable = sum(len(c) > 1 for c in space.choices.values())
        if not 1 <= k <= mutable:
            raise ValueError(f"walk k={k} must be between 1 and the number of searchable layers ({mutable})")
        self.k = k
        self.start = space.arch(start) if start is not None else None

    def _draw(self) -> Arch:
        if self.arch is None:
            return self.start if self.start is not None else self.space.sample(self.rng)
        return self.space.neighbour(self.arch, self.k, self.rng)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        if state.get("k", self.k) != self.k:
            raise ValueError(f"Sampler state walks k={state['k']} layers, this run k={self.k}: resume with the same --walk-k")
        super().load_state_dict(state)


SAMPLERS = {"uniform": UniformSampler, "walk": WalkSampler}


def build_sampler(name: str, space: SearchSpace, seed: int, k: int = 1, start=None) -> Sampler:
    if name == "uniform":
        return UniformSampler(space, seed)
    if name == "walk":
        return WalkSampler(space, seed, k=k, start=start)
    raise ValueError(f"Unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")


def arch_hash(arch) -> int:
    """A stable 63-bit hash of an arch's op names (python's hash() differs between processes)."""
    ops = arch.ops if hasattr(arch, "ops") else tuple(arch)
    digest = hashlib.sha1("|".join(ops).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def assert_same_arch(arch, accelerator) -> None:
    """Raise if the ranks are about to train different subnets (a desynchronised sampler)."""
    if accelerator.num_processes == 1:
        return
    mine = torch.tensor([arch_hash(arch)], dtype=torch.long, device=accelerator.device)
    every = accelerator.gather(mine).tolist()
    if len(set(every)) > 1:
        groups = {}
        for rank, value in enumerate(every):
            groups.setdefault(value, []).append(rank)
        raise RuntimeError(
            f"Ranks sample different subnets (groups of ranks agreeing: {list(groups.values())}); "
            "every rank must build its sampler with the same seed and restore the same sampler state"
        )
