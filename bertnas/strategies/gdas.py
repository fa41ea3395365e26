"""GDAS (Dong & Yang 2019): each forward uses one hard Gumbel-softmax sample per choice,
`one_hot(argmax((log theta + g) / tau)) - soft.detach() + soft` (straight-through: the forward
runs exactly the sampled op's output, the gradient reaches alpha through the soft sample); the
temperature falls linearly from `tau_max` to `tau_min` over the run.

`one_path` (default, as GDAS' released code does): a layer runs only its sampled op, forward and
backward, and the other candidates' weights (0 in the forward) are added as they are, so each
still gets a gradient (the sum of the upstream gradient) without its op running: a step costs one
path per choice. `one_path: false` runs every op on the architecture step and gives alpha the
exact gradient of the relaxation `sum_o h_o * o(x)` (DARTS' cost)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


from bertnas.strategies.mixed import DifferentiableStrategy, gumbel_like, linear_schedule


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator, hard: bool) -> torch.Tensor:
    """A Gumbel-softmax sample of `logits` at temperature `tau` (noise from `generator`);
    `hard`: the straight-through one-hot."""
    soft = F.softmax((logits + gumbel_like(logits, generator)) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.detach().argmax(), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


class Gdas(DifferentiableStrategy):
    hard = True
    defaults = {**DifferentiableStrategy.defaults, "tau_max": 10.0, "tau_min": 0.1, "one_path": True}

    def temperature(self, step: int) -> float:
        return linear_schedule(float(self.options["tau_max"]), float(self.options["tau_min"]), step, self.max_steps)

    def forward_weights(self, step: int) -> dict[str, torch.Tensor]:
        tau = self.temperature(step)
        weights = {}
        for label in self.labels:
            # an input choice that keeps several inputs cannot be one-hot: it gets the soft sample
            hard = self.hard and label not in self.space.input_choices
            weights[label] = gumbel_softmax(self.logits(label), tau, self.generator, hard)
        return weights

    def mixed(self, weights, constant: bool = False):
        arch = super().mixed(weights, constant)
        if self.hard and self.options["one_path"] and not constant:
            # the hard samples' candidate (their argmax, read from the host copy) tells the
            # supernet's layers to run that op alone (models/choice_modules.py `one_path_mix`)
            for label, w in arch.items():
                if label not in self.space.input_choices:
                    w.one_path = self.space.choices[label].index(arch.discrete[label])
        return arch


__all__ = ["Gdas", "gumbel_softmax"]
