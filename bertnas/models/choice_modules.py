"""The layer-choice module every space's model shares (the protocol of `bertnas/spaces/choices.py`).

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


def sampled_index(weights: torch.Tensor):
    """The candidate a one-path mix runs (`weights.one_path`, set by GDAS on its hard sample), or
    None for an ordinary mix (and for a mix that wants no gradient: that one skips zeros anyway)."""
    index = getattr(weights, "one_path", None)
    return index if index is not None and weights.requires_grad and torch.is_grad_enabled() else None


def one_path_mix(weights: torch.Tensor, index: int, output: torch.Tensor) -> torch.Tensor:
    """GDAS' one-path forward (Dong & Yang 2019, as in its released code): `weights[index] * output`
    plus the other weights as they are. Those are exactly 0 in the forward (a straight-through
    one-hot), so the value is the sampled op's output, and each of them still gets a gradient (the
    sum of the upstream gradient) without its op running: one op per choice, forward and backward."""
    rest = torch.cat([weights[:index], weights[index + 1:]]).sum()
    return weights[index] * output + rest


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
        ops = list(self.ops.values())
        index = sampled_index(weights)
        if index is not None:
            return one_path_mix(weights, index, ops[index](*args, **kwargs))
        if not weights.requires_grad:
            # A constant mix needs no output of a candidate weighted 0 (GDAS' sampled path in the
            # weight step): skip those, as the single path does (their parameters keep grad=None).
            # Strategies pass constant mixes as host tensors: reading them costs no device sync.
            keep = [i for i, w in enumerate(weights.tolist()) if w != 0.0]
            if keep:
                return weighted_sum([weights[i] for i in keep], (ops[i](*args, **kwargs) for i in keep))
        return weighted_sum(weights, (op(*args, **kwargs) for op in ops))

    def candidate_parameters(self, prefix: str = "") -> dict:
        """{candidate: [(qualified name, Parameter), ...]}; with `prefix` (the module's path plus
        "."), names match `model.named_parameters()`."""
        return {name: list(op.named_parameters(prefix=f"{prefix}ops.{name}", remove_duplicate=False))
                for name, op in self.ops.items()}

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` channel groups (ShuffleNet), so the next edge sees a different share."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PartialChannelChoice(LayerChoice):
    """PC-DARTS' edge: the candidates see the first 1/k of the channels (they are built k times
    narrower), the other channels bypass them (through `bypass`, e.g. a stride-2 max-pool on a
    reduction edge, else unchanged), then the channels are concatenated and shuffled in k groups.
    Single path and mixed mode both do this, so a one-hot mix is still the path exactly."""

    def __init__(self, candidates: Mapping[str, nn.Module], label: str, k: int, bypass: nn.Module | None = None):
        super().__init__(candidates, label)
        self.k = k
        self.bypass = bypass if bypass is not None else nn.Identity()

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        part = x.shape[1] // self.k
        return x[:, :part], x[:, part:]

    def _merge(self, y: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([y, self.bypass(rest)], dim=1), self.k)

    def forward(self, x, op: str):
        part, rest = self._split(x)
        return self._merge(super().forward(part, op=op), rest)

    def forward_mixed(self, x, weights: torch.Tensor) -> torch.Tensor:
        part, rest = self._split(x)
        return self._merge(super().forward_mixed(part, weights=weights), rest)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, k={self.k}"


def partial_channel_width(channels: int, k: int, where: str) -> int:
    """channels // k, with a clear error when k does not divide them."""
    if not isinstance(k, int) or k < 1 or channels % k:
        raise ValueError(f"{where}: partial_channels={k!r} must be a positive integer dividing the {channels} "
                         "channels of every cell (PC-DARTS: 1/k of them go through the ops)")
    return channels // k


__all__ = ["LayerChoice", "PartialChannelChoice", "channel_shuffle", "check_weights", "one_path_mix",
           "partial_channel_width", "sampled_index", "weighted_sum"]
