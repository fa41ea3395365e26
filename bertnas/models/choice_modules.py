"""The layer-choice module every space's model shares (the protocol of `bertnas/choices.py`).

Copied next to exported weights with the modeling files (they import it relatively), so it
imports only torch.
"""

from collections.abc import Mapping

import torch
from torch import nn


def check_weights(weights, candidates, label: str) -> None:
    """A clear error unless `weights` is a 1-D tensor with one entry per candidate."""
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1 or weights.shape[0] != len(candidates):
        got = f"shape {tuple(weights.shape)}" if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"{label}: weights must be a 1-D tensor with one entry per candidate "
                         f"({len(candidates)}: {', '.join(candidates)}), got {got}")


def weighted_sum(weights: torch.Tensor, outputs) -> torch.Tensor:
    """sum_i weights[i] * outputs[i], accumulated in candidate order (a one-hot weight gives the
    chosen output exactly: 1 * y + 0 * z = y)."""
    total = None
    for weight, out in zip(weights, outputs):
        term = weight * out
        total = term if total is None else total + term
    return total


class LayerChoice(nn.Module):
    """One of several candidate modules, picked by name. The candidates live in `self.ops`
    (an `nn.ModuleDict`), so their parameters are named `<path>.ops.<candidate>.<param>` and a
    fixed-arch model holding one candidate under the same key loads a subset of the state dict."""

    def __init__(self, candidates: Mapping[str, nn.Module], label: str):
        super().__init__()
        if not candidates:
            raise ValueError(f"{type(self).__name__} {label!r} needs at least one candidate")
        self.label = label
        self.ops = nn.ModuleDict(dict(candidates))

    @property
    def candidates(self) -> tuple:
        return tuple(self.ops)

    def forward(self, *args, op: str, **kwargs):
        if op not in self.ops:
            raise ValueError(f"{type(self).__name__} {self.label!r} has no candidate {op!r}; "
                             f"candidates: {', '.join(self.ops)}")
        return self.ops[op](*args, **kwargs)

    def forward_mixed(self, *args, weights: torch.Tensor, **kwargs) -> torch.Tensor:
        check_weights(weights, self.candidates, f"{type(self).__name__} {self.label!r}")
        return weighted_sum(weights, (op(*args, **kwargs) for op in self.ops.values()))

    def candidate_parameters(self, prefix: str = "") -> dict:
        """{candidate: [(qualified name, Parameter), ...]}; with `prefix` (the module's path plus
        "."), names match `model.named_parameters()`."""
        return {name: list(op.named_parameters(prefix=f"{prefix}ops.{name}", remove_duplicate=False))
                for name, op in self.ops.items()}

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


__all__ = ["LayerChoice", "check_weights", "weighted_sum"]
