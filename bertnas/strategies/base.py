"""The strategy interface (issue 13): how a search strategy drives the supernet trainer.

A `Strategy` runs INSIDE `SupernetTrainer` (bertnas/train/trainer.py), which keeps doing the
weight steps, checkpoints, logging and resume. Per training step the trainer calls

    arch = strategy.choose(step)                  # an `Arch` (one path) or a `MixedArch` (a mix)
    ... one weight step of task.compute(batch, arch, generator) ...
    fields = strategy.after_weight_step(trainer, step, arch)   # the architecture update
    log line = {..., **fields, **strategy.log_fields()}

and saves `strategy.state_dict()` in every checkpoint. After training, `derive()` is the
discretised arch and `candidates(trainer, n)` the archs `run_strategy` scores.

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
        """The weight tensors in the space's choice order (models that take a list)."""
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


class Strategy:
    """Base class of every search strategy (see the module docstring for the call order).

    Options: a subclass lists its keyword options and their defaults in `defaults`;
    `__init__` merges the given ones into `self.options` and rejects unknown names."""

    name: ClassVar[str] = "base"
    defaults: ClassVar[dict] = {}
    learns_weights: ClassVar[bool] = True  # False: the trainer draws paths with its own sampler (rsws, spos)

    def __init__(self, space: SearchSpace, seed: int = 0, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"strategy {self.name!r} has no option(s) {', '.join(unknown)}; its options: {accepted}")
        self.space = space
        self.seed = int(seed)
        self.options = {**self.defaults, **options}

    # -- the hooks the trainer calls ----------------------------------------------------------
    def setup(self, trainer) -> None:
        """After the trainer built task, model and optimizer: build architecture parameters /
        a controller and its optimizer."""

    def choose(self, step: int) -> Arch | MixedArch:
        """What this step's weight step runs."""
        raise NotImplementedError

    def after_weight_step(self, trainer, step: int, arch) -> dict:
        """The architecture update after the weight step of `step`; returns extra log fields."""
        return {}

    def log_fields(self) -> dict:
        """{"arch_weights": {label: {candidate: w}}, "entropy": mean nats} ({} without weights)."""
        return {}

    # -- results ---------------------------------------------------------------------------
    def derive(self) -> Arch:
        """The discretised architecture."""
        raise NotImplementedError

    def candidates(self, trainer, n: int) -> list[Arch]:
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


def tensor_to_json(t: torch.Tensor) -> dict:
    """A float tensor as JSON that restores it bit for bit (float32 -> Python float -> float32 is exact)."""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "data": t.detach().cpu().flatten().tolist()}


def tensor_from_json(d: dict) -> torch.Tensor:
    return torch.tensor(d["data"], dtype=getattr(torch, d["dtype"])).reshape(d["shape"])


__all__ = ["MixedArch", "Strategy", "discretise", "entropy", "tensor_from_json", "tensor_to_json",
           "weights_log"]
