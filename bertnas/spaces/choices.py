"""Choice modules: how a space is written as an ordinary torch module.

Every searchable layer of every space (the BERT chain layer in `models/modeling_bertnas.py`,
and `LayerChoice` / `InputChoice` here for new spaces) follows one protocol:

- `label: str` - the choice's name in the `SearchSpace` and in an `Arch`. Modules that share
  a label share one decision (e.g. every normal cell of a DARTS network).
- `candidates: tuple[str, ...]` - the candidate names, in the space's order.
- `n_chosen: int` - input choices only: how many distinct candidates an arch picks.
- single path: `LayerChoice.forward(*args, op=name, **kw)` runs one candidate;
  `InputChoice.forward(inputs, chosen=names)` sums the chosen inputs. `op` / `chosen` is the
  choice's value in the arch: `arch[module.label]`.
- mixed: `forward_mixed(..., weights=w)` with `w` a 1-D tensor over `candidates` returns
  `sum_o w[o] * out_o`. With a one-hot (n-hot) `w` the result equals the single path exactly,
  so DARTS / GDAS / SNAS and weight-sharing training run the same weights. Every candidate
  runs (the gradient of each weight needs its output), so an unselected candidate that
  returns inf / nan spoils the sum; only a constant (no-grad) mix skips the candidates
  weighted exactly 0 (GDAS' sampled path costs one path); straight-through weights (`hard - soft.detach() + soft`)
  are one-hot only up to rounding.
- `candidate_parameters(prefix="") -> {candidate: [(qualified name, Parameter), ...]}` -
  the parameters each candidate owns (for per-candidate optimisers, active-path gradients,
  counting); with `prefix` the module's qualified name plus ".", names match
  `model.named_parameters()`. A model class mixes in `models.supernet_mixin.SupernetMixin`
  for the same over the whole model, keyed `(label, candidate)`.

`choice_modules(model)` finds the choice modules of a model by that protocol and
`space_from_model(model)` turns them into a `SearchSpace`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bertnas.spaces.base import InputChoice as InputChoiceSpec
from bertnas.models.choice_modules import LayerChoice
from bertnas.models.choice_modules import check_weights as _check_weights
from bertnas.models.choice_modules import weighted_sum as _weighted_sum
from bertnas.models.supernet_mixin import is_choice_module
from bertnas.spaces.base import SearchSpace


class InputChoice(nn.Module):
    """`n_chosen` of several inputs, summed (a DARTS cell node keeps 2 of its predecessors).

    `candidates` is a count (names "0" .. "n-1") or a sequence of names. It owns no parameters."""

    def __init__(self, candidates: int | Sequence[str], n_chosen: int, label: str):
        super().__init__()
        names = tuple(str(i) for i in range(candidates)) if isinstance(candidates, int) else tuple(candidates)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"InputChoice {label!r}: candidates must be distinct and non-empty, got {list(names)}")
        if not 1 <= n_chosen <= len(names):
            raise ValueError(f"InputChoice {label!r}: n_chosen={n_chosen} must be between 1 and {len(names)}")
        self.label = label
        self._candidates = names
        self.n_chosen = n_chosen

    @property
    def candidates(self) -> tuple[str, ...]:
        return self._candidates

    def _indices(self, chosen: Sequence[str | int]) -> list[int]:
        if isinstance(chosen, (str, int)):
            chosen = [chosen]
        indices = []
        for pick in chosen:
            if isinstance(pick, int) and 0 <= pick < len(self._candidates):
                indices.append(pick)
            elif isinstance(pick, str) and pick in self._candidates:
                indices.append(self._candidates.index(pick))
            else:
                raise ValueError(
                    f"InputChoice {self.label!r} has no candidate {pick!r}; candidates: {', '.join(self._candidates)}"
                )
        if len(set(indices)) != len(indices) or len(indices) != self.n_chosen:
            raise ValueError(f"InputChoice {self.label!r} picks {self.n_chosen} distinct inputs, got {list(chosen)}")
        return sorted(indices)  # candidate order: the same sum as the mixed form

    def _check_inputs(self, inputs: Sequence[torch.Tensor]) -> None:
        if len(inputs) != len(self._candidates):
            raise ValueError(f"InputChoice {self.label!r} takes {len(self._candidates)} inputs, got {len(inputs)}")

    def forward(self, inputs: Sequence[torch.Tensor], chosen: Sequence[str | int]) -> torch.Tensor:
        self._check_inputs(inputs)
        total = None
        for i in self._indices(chosen):
            total = inputs[i] if total is None else total + inputs[i]
        return total

    def forward_mixed(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        self._check_inputs(inputs)
        _check_weights(weights, self._candidates, f"InputChoice {self.label!r}")
        return _weighted_sum(weights, inputs)

    def candidate_parameters(self, prefix: str = "") -> dict[str, list[tuple[str, nn.Parameter]]]:
        return {name: [] for name in self._candidates}

    def extra_repr(self) -> str:
        return f"label={self.label!r}, candidates={list(self._candidates)}, n_chosen={self.n_chosen}"


_is_choice = is_choice_module  # the protocol check (one definition, in the models layer)


def choice_modules(model: nn.Module) -> dict[str, nn.Module]:
    """label -> the first module with that label, in `model.modules()` order. Modules sharing
    a label must agree on candidates (and n_chosen): they share one decision."""
    found: dict[str, nn.Module] = {}
    for module in model.modules():
        if not is_choice_module(module):
            continue
        first = found.setdefault(module.label, module)
        signature = (tuple(module.candidates), getattr(module, "n_chosen", None))
        if signature != (tuple(first.candidates), getattr(first, "n_chosen", None)):
            raise ValueError(
                f"Choice modules labelled {module.label!r} disagree: candidates {list(first.candidates)} "
                f"(n_chosen {getattr(first, 'n_chosen', None)}) vs {list(module.candidates)} "
                f"(n_chosen {getattr(module, 'n_chosen', None)}); give different choices different labels"
            )
    return found


def space_from_model(model: nn.Module) -> SearchSpace:
    """The `SearchSpace` of a model's choice modules (modules with `n_chosen` are input choices)."""
    modules = choice_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no choice modules (LayerChoice / InputChoice)")
    return SearchSpace({
        label: InputChoiceSpec(m.candidates, m.n_chosen) if hasattr(m, "n_chosen") else tuple(m.candidates)
        for label, m in modules.items()
    })
