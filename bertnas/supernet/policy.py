"""The arch-policy protocol: what decides each training step's subnet.

Samplers (uniform, walk, fair, constant: `bertnas/supernet/sampling.py`) and search strategies
(DARTS, GDAS, REINFORCE, ...: `bertnas/strategies/`) are both `ArchPolicy`s. The trainer is given
one and calls, per optimizer step,

    arch = policy.choose(step)                      # an Arch, or a MixedArch of mixed-op weights
    ... the weight step on `arch` ...
    fields = policy.after_weight_step(ctx, step, arch)   # e.g. an architecture update
    log line = {..., **fields, **policy.log_fields()}

`policy.setup(ctx)` runs once, after the trainer has built its optimizer and generators. `ctx`
is a `StepContext`: the narrow view of the run a policy may use (never the trainer itself).
`checkpoint_state()` / `load_checkpoint_state()` are the policy's entries in a checkpoint's
`state.json` (`"sampler"`, `"strategy"`), so checkpoints written before this protocol load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class StepContext:
    """What a policy may use of a training run."""

    task: Any  # the run's Task: compute(), train_data, collate, model, heldout(), evaluator()
    device: torch.device
    rank: int
    world_size: int
    seed: int
    data_seed: int
    batch_size: int
    max_steps: int
    eval_batches: int
    progress: bool
    autocast: Callable[[], contextlib.AbstractContextManager]  # the weight step's precision context
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]  # in place over ranks; identity on one process
    set_weight_rows: Callable[[Any], None]  # train the weights on these rows only (bilevel splits)
    modules: nn.Module  # every trained module: scoring() puts them back in train mode
    search: Callable[..., list] | None = None  # (method, options) -> ranked archs; set by a search run

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """Score on held-out data inside this block; the modules are in train mode after it."""
        with restore_train_mode(self.modules):
            yield


@contextlib.contextmanager
def restore_train_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Scorers put a model in eval mode; this puts every submodule back as it was."""
    modes = {m: m.training for m in module.modules()}
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


class ArchPolicy:
    """Base class of samplers and strategies (see the module docstring for the call order)."""

    name: ClassVar[str] = "base"

    def setup(self, ctx: StepContext) -> None:
        """Once, after the trainer built the model, optimizer and generators."""

    def choose(self, step: int):
        """What the weight step of `step` runs: an Arch or a MixedArch."""
        raise NotImplementedError

    def after_weight_step(self, ctx: StepContext, step: int, arch) -> dict:
        """After the weight step (an architecture update, a controller update); extra log fields."""
        return {}

    def log_fields(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    # -- the policy's entries of state.json ---------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"sampler": self.state_dict(), "strategy": None}

    def load_checkpoint_state(self, state: dict, where: str) -> None:
        if state.get("strategy") is not None:
            raise ValueError(f"checkpoint {where} was trained with strategy {state['strategy'].get('name')!r}; "
                             f"resume it with --strategy {state['strategy'].get('name')}")
        self.load_state_dict(state["sampler"])


__all__ = ["ArchPolicy", "StepContext", "restore_train_mode"]
