"""Which subnet trains at each step: uniform (SPOS), a random walk (MAGIC-T), strict fairness
(FairNAS), one fixed arch, or any sampler registered with `@register_sampler`.

Samplers are arch policies (`policy.py`: `choose(step)` is `next()`). Their own protocol:
- `next() -> Arch`: the arch for the next step;
- `feedback(arch, reward)`: the reward (higher is better, e.g. minus a validation loss) of an
  arch it drew. A no-op for samplers that do not learn; a learning controller (REINFORCE,
  PPO) sets `learns = True` and updates itself there;
- `state_dict()` / `load_state_dict()`: JSON-serialisable; restoring continues the stream.

Every rank builds its sampler with the same seed (and gives it the same feedback), so all
ranks draw the same arch each step without communication; `assert_same_arch` checks that
cheaply.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random

import torch

from bertnas.core.serialization import rng_state_from_json, rng_state_to_json
from bertnas.spaces.base import Arch, SearchSpace
from bertnas.supernet.policy import ArchPolicy
from bertnas.supernet.registry import SAMPLERS


class Sampler(ArchPolicy):
    """Base class: seeded `random.Random`, the last arch, JSON-serialisable state.

    A subclass implements `_draw()`; its keyword options are the `__init__` parameters after
    `(space, seed)` (`build_sampler` reads them from the signature)."""

    name = "base"
    learns = False  # True: feedback() changes what it draws next (the trainer must compute rewards)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = SAMPLERS.name_of(cls) or cls.name  # a built-in knows its registry name

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

    def choose(self, step: int) -> Arch:
        return self.next()

    def _draw(self) -> Arch:
        raise NotImplementedError

    def feedback(self, arch: Arch, reward: float) -> None:
        """Reward of an arch this sampler drew (higher is better). Non-learning samplers ignore it."""

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "steps": self.steps,
            "arch": self.arch.to_list() if self.arch is not None else None,
            "rng": rng_state_to_json(self.rng.getstate()),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(
                f"Sampler state is for {state.get('name')!r}, not {self.name!r}: resume with the same --sampler"
            )
        self.seed = state["seed"]
        self.steps = state["steps"]
        self.arch = self.space.arch(state["arch"]) if state["arch"] is not None else None
        self.rng.setstate(rng_state_from_json(state["rng"]))


def register_sampler(name: str):
    """Class decorator: make a `Sampler` subclass buildable as `build_sampler(name, ...)`."""
    return SAMPLERS.register(name)


def sampler_options(cls: type[Sampler]) -> tuple[str, ...]:
    """The keyword options a sampler class takes: its `__init__` parameters after `(space, seed)`."""
    params = list(inspect.signature(cls.__init__).parameters.values())[3:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds)


def build_sampler(name: str, space: SearchSpace, seed: int, **options) -> Sampler:
    """The registered sampler `name` with the options it takes.

    A caller may pass the options of every sampler it supports (the trainer passes `k=walk_k`
    whatever the sampler): an option that another registered sampler takes is dropped, so
    `build_sampler("uniform", space, seed, k=2)` is the uniform sampler. An option that no
    registered sampler takes (a typo) and an unknown sampler name raise ValueError."""
    cls = SAMPLERS.get(name)
    takes = sampler_options(cls)
    known = {option for _, other in SAMPLERS.items() for option in sampler_options(other)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"No sampler takes the option(s) {unknown}; {name!r} takes {list(takes)}, "
            f"the registered samplers together take {sorted(known)}"
        )
    return cls(space, seed, **{key: value for key, value in options.items() if key in takes})


class UniformSampler(Sampler):
    """SPOS: every layer's op drawn uniformly and independently each step."""

    def _draw(self) -> Arch:
        return self.space.sample(self.rng)


class WalkSampler(Sampler):
    """MAGIC-T: the previous arch with exactly `k` choices changed (`space.neighbour`: a layer
    to a different op drawn uniformly, an input choice by swapping one chosen input). The first
    arch is `start` (or a uniform sample).

    With k = 1 the walk mixes towards uniform sampling (docs/training.md) as long as some layer has
    3 or more candidates (the BERT spaces have 7-8). If every layer has exactly 2, each step
    changes the parity of the arch by k, so the walk alternates between two halves of the space
    (k odd) or never leaves one (k even): use the uniform sampler for such spaces."""

    def __init__(self, space: SearchSpace, seed: int, k: int = 1, start=None):
        super().__init__(space, seed)
        mutable = len(space.mutable_choices())
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


class FairSampler(Sampler):
    """FairNAS strict fairness: steps come in rounds of m = the largest candidate count of any
    layer choice; within a round every layer choice runs each of its candidates exactly once
    (an independent random permutation per choice), so after every round all candidates of a
    choice have been trained equally often. A choice with fewer than m candidates fills its
    round with a second shuffled pass cut short (fair up to one step). Input choices, which
    pick subsets, are drawn uniformly each step."""

    def __init__(self, space: SearchSpace, seed: int):
        super().__init__(space, seed)
        self.round_length = max((len(c) for n, c in space.choices.items() if n not in space.input_choices),
                                default=1)
        self.plan: dict[str, list[str]] = {}  # choice -> its candidates for the steps of this round
        self.position = 0

    def _new_round(self) -> None:
        self.plan = {}
        for name, cands in self.space.choices.items():
            if name in self.space.input_choices:
                continue
            order: list[str] = []
            while len(order) < self.round_length:
                order += self.rng.sample(cands, len(cands))
            self.plan[name] = order[:self.round_length]
        self.position = 0

    def _draw(self) -> Arch:
        if not self.plan or self.position >= self.round_length:
            self._new_round()
        sampled = self.space.sample(self.rng) if self.space.input_choices else None
        values = [(name, self.plan[name][self.position] if name in self.plan else sampled[name])
                  for name in self.space.choices]
        self.position += 1
        return Arch(values)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "plan": self.plan, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.plan = {name: list(order) for name, order in state.get("plan", {}).items()}
        self.position = state.get("position", 0)


class DeisoSampler(Sampler):
    """De-isomorphic sampling: archs that compute the same function form a class (the space's
    `representatives()`, NB201: 5,545 classes of 15,625 archs); each step draws a class uniformly
    and trains its representative, so no class is trained more often for having more members,
    and the weights a class is scored with are the ones it was trained on."""

    def __init__(self, space: SearchSpace, seed: int):
        super().__init__(space, seed)
        if not hasattr(space, "representatives"):
            raise ValueError(f"the deiso sampler needs a space that knows its isomorphism classes "
                             f"(representatives()); {type(space).__name__} does not: use uniform or fair")
        self.pool = space.representatives()

    def _draw(self) -> Arch:
        return self.rng.choice(self.pool)


class ConstantSampler(Sampler):
    """Always `arch`: stand-alone training of one fixed arch through the supernet trainer."""

    def __init__(self, space: SearchSpace, seed: int, arch=None):
        super().__init__(space, seed)
        if arch is None:
            raise ValueError(
                "The constant sampler trains one fixed arch: pass arch= (candidates in choice order, "
                "a mapping choice -> candidate, or its JSON)"
            )
        try:
            self.fixed = space.arch(arch)
        except ValueError as error:
            raise ValueError(f"constant sampler: invalid arch: {error}") from None

    def _draw(self) -> Arch:
        return self.fixed

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fixed": self.fixed.to_list()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fixed") is not None and self.space.arch(state["fixed"]) != self.fixed:
            raise ValueError(
                f"Sampler state trains the fixed arch {state['fixed']}, this run {self.fixed.to_list()}: "
                "resume with the same arch"
            )
        super().load_state_dict(state)


def arch_hash(arch) -> int:
    """A stable 63-bit hash of an arch's values (python's hash() differs between processes)."""
    ops = arch.ops if hasattr(arch, "ops") else tuple(arch)
    text = "|".join(op if isinstance(op, str) else json.dumps(list(op)) for op in ops)
    digest = hashlib.sha1(text.encode()).digest()
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
