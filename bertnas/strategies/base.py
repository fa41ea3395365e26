"""The strategy interface: a search strategy is an arch policy (`bertnas/supernet/policy.py`).

The trainer (bertnas/train/trainer.py) is given a `Strategy` as its policy and keeps doing the
weight steps, checkpoints, logging and resume. Per training step it calls

    arch = strategy.choose(step)                  # an `Arch` (one path) or a `MixedArch` (a mix)
    ... one weight step of task.compute(batch, arch, generator) ...
    fields = strategy.after_weight_step(ctx, step, arch)   # the architecture update
    log line = {..., **fields, **strategy.log_fields()}

where `ctx` is the run's `StepContext` (device, autocast, ranks, an all-reduce, the held-out
scorer, a way to split the training rows), and saves `strategy.state_dict()` in every
checkpoint. After training, `derive()` is the discretised arch and `candidates(ctx, n)` the
archs `run_strategy` scores. Adding a strategy: one module in this package and one line in
`STRATEGIES` (strategies/__init__.py); nothing in train/.

A `MixedArch` is `{choice label: 1-D weight tensor over that choice's candidates}` in the
space's choice order; every task's `compute()` and every supernet accept it (the layer output
is `sum_o w_o * o(x)`; a one-hot weight runs exactly the path). An input choice's weights (a
DARTS node's incoming edges) scale the inputs that are summed. `MixedArch.discrete` is the
`Arch` it rounds to (argmax per choice, top-n per input choice): what the progress bar and
`log.jsonl`'s "arch" show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from bertnas.spaces.base import Arch, SearchSpace
from bertnas.supernet.policy import ArchPolicy, StepContext
from bertnas.supernet.sampling import UniformSampler
from bertnas.strategies.registry import STRATEGIES


def discretise(space: SearchSpace, weights: Mapping[str, Any]) -> Arch:
    """The `Arch` of per-choice weights: argmax per layer choice; an input choice keeps its
    `n_chosen` largest weights (a DARTS node's top-2 inputs). Ties go to the first candidate."""
    values = []
    for label, candidates in space.choices.items():
        given = weights[label]
        w = [float(x) for x in (given.tolist() if isinstance(given, torch.Tensor) else given)]
        if len(w) != len(candidates):
            raise ValueError(f"weights of {label!r} have {len(w)} entries, the choice has {len(candidates)} candidates")
        order = sorted(range(len(w)), key=lambda i: (-w[i], i))
        if label in space.input_choices:
            keep = sorted(order[:space.n_chosen[label]])
            values.append((label, tuple(candidates[i] for i in keep)))
        else:
            values.append((label, candidates[order[0]]))
    return Arch(values)


class MixedArch(dict):
    """What a mixed-op step runs: choice label -> 1-D weight tensor over the candidates.

    `discrete` is the `Arch` the weights round to (`discretise`); `ops` is its ops, so code
    that logs an arch (`log.jsonl`, the progress bar) shows the current discretisation."""

    def __init__(self, weights: Mapping[str, torch.Tensor], discrete: Arch):
        super().__init__(weights)
        self.discrete = discrete

    @property
    def ops(self) -> tuple:
        return self.discrete.ops

    def to_list(self) -> list:
        return self.discrete.to_list()

    def weights_in_order(self, space: SearchSpace) -> list[torch.Tensor]:
        """The weight tensors in the space's choice order (the older list form of `arch_weights`;
        every model now takes the mapping itself)."""
        return [self[label] for label in space.choices]

    def __repr__(self) -> str:
        return f"MixedArch({self.discrete.to_list()!r})"


def entropy(probs: torch.Tensor) -> float:
    """Entropy in nats of one simplex (0 * log 0 = 0)."""
    p = probs.detach().double().clamp_min(0)
    p = p / p.sum()
    return float(-(p * torch.log(p.clamp_min(1e-300))).sum())


def weights_log(space: SearchSpace, probs: Mapping[str, torch.Tensor]) -> dict:
    """log_fields() of a strategy with weights: {"arch_weights": {label: {candidate: w}},
    "entropy": mean entropy (nats) over the simplices}."""
    table = {label: {c: round(float(w), 6) for c, w in zip(space.choices[label], probs[label].detach().tolist())}
             for label in space.choices}
    mean = sum(entropy(probs[label]) for label in space.choices) / max(1, len(space.choices))
    return {"arch_weights": table, "entropy": mean}


class Strategy(ArchPolicy):
    """Base class of every search strategy (see the module docstring for the call order).

    Options: a subclass lists its keyword options and their defaults in `defaults`;
    `__init__` merges the given ones into `self.options` and rejects unknown names.
    `chooses_archs = False` (RS-WS, SPOS): the strategy has no per-step decision; its paths come
    from a uniform sampler of its own (seeded like the run's), and it searches after training."""

    name: ClassVar[str] = "base"
    defaults: ClassVar[dict] = {}
    chooses_archs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = STRATEGIES.name_of(cls) or cls.name  # a built-in knows its registry name

    def __init__(self, space: SearchSpace, seed: int = 0, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"strategy {self.name!r} has no option(s) {', '.join(unknown)}; its options: {accepted}")
        self.space = space
        self.seed = int(seed)
        self.options = {**self.defaults, **options}
        self.sampler = None if self.chooses_archs else UniformSampler(space, self.seed)

    # -- the hooks the trainer calls ----------------------------------------------------------
    def setup(self, ctx: StepContext) -> None:
        """After the trainer built task, model and optimizer: move architecture parameters /
        a controller to the device, split the training rows (bilevel)."""

    def choose(self, step: int) -> Arch | MixedArch:
        """What this step's weight step runs (strategies without a per-step decision: a uniform path)."""
        if self.sampler is not None:
            return self.sampler.next()
        raise NotImplementedError

    def after_weight_step(self, ctx: StepContext, step: int, arch) -> dict:
        """The architecture update after the weight step of `step`; returns extra log fields."""
        return {}

    def log_fields(self) -> dict:
        """{"arch_weights": {label: {candidate: w}}, "entropy": mean nats} ({} without weights)."""
        return {}

    # -- results ---------------------------------------------------------------------------
    def derive(self) -> Arch:
        """The discretised architecture."""
        raise NotImplementedError

    def candidates(self, ctx: StepContext, n: int) -> list[Arch]:
        """The archs `run_strategy` scores with the held-out evaluator (default: [derive()])."""
        return [self.derive()]

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-able state (floats as lists); saved in every checkpoint, restores exactly."""
        return {"name": self.name, "seed": self.seed, "options": dict(self.options)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"the checkpoint's strategy state is for {state.get('name')!r}, not {self.name!r}: "
                             f"resume with the same strategy")

    def checkpoint_state(self) -> dict:
        return {"sampler": self.sampler.state_dict() if self.sampler is not None else None,
                "strategy": self.state_dict()}

    def load_checkpoint_state(self, state: dict, where: str) -> None:
        if state.get("strategy") is None:
            raise ValueError(f"checkpoint {where} was trained without a strategy; resume it without --strategy")
        self.load_state_dict(state["strategy"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])


__all__ = ["MixedArch", "Strategy", "discretise", "entropy", "weights_log"]
