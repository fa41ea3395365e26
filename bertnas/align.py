"""MAGIC-A: align the sampled subnet to a best-so-far base subnet, block by block.

Each step the base subnet runs on the same batch without gradient; the loss adds
`weight * sum_b MSE(H_b(sampled), H_b(base))` over the hidden states at block ends
(a block = `block_size` consecutive chain layers; aligning every layer over-regularises).
The base is replaced when a better subnet shows up on held-out data (METHODS §4):
- "beat": every `every` steps, the candidates (e.g. the current subnet) are scored with the
  base; a candidate that validates better becomes the base.
- "population": every `every` steps a population is scored with the base; the base stays
  while it ranks inside the top `top_p + tolerance` of them, else the best one replaces it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from .spaces.base import Arch, SearchSpace

REPLACEMENTS = ("none", "beat", "population")


class Aligner:
    def __init__(self, space: SearchSpace, base_arch, block_size: int = 2, weight: float = 1.0,
                 replacement: str = "beat", every: int = 100, top_p: float = 0.3, tolerance: float = 0.1,
                 population: int = 8):
        if replacement not in REPLACEMENTS:
            raise ValueError(f"Unknown base replacement {replacement!r}; choose one of {REPLACEMENTS}")
        if block_size < 1 or every < 1:
            raise ValueError(f"block_size ({block_size}) and every ({every}) must be >= 1")
        if not 0 < top_p <= 1 or tolerance < 0:
            raise ValueError(f"top_p must be in (0, 1] and tolerance >= 0, got {top_p}, {tolerance}")
        if population < 1:
            raise ValueError(f"population must be >= 1 subnets, got {population}")
        self.space = space
        self.base_arch: Arch = space.arch(base_arch)
        self.base_score: float | None = None
        self.block_size = block_size
        self.weight = weight
        self.replacement = replacement
        self.every = every
        self.top_p = top_p
        self.tolerance = tolerance
        self.population = population
        self.replacements = 0

    def block_ends(self, num_layers: int) -> list[int]:
        """Indices into `hidden_states` (0 = embeddings) of the block boundaries; the last layer
        always ends a block."""
        ends = list(range(self.block_size, num_layers + 1, self.block_size))
        if not ends or ends[-1] != num_layers:
            ends.append(num_layers)
        return ends

    def align_loss(self, model, batch: dict, student_hidden_states, arch=None) -> torch.Tensor:
        """Block-wise MSE between the sampled subnet's hidden states and the base's on `batch`.

        `model` is the backbone (or any bertnas model) the student ran on; the base runs in eval
        mode (no dropout, so its targets are clean) and without gradient."""
        if arch is not None and tuple(getattr(arch, "ops", arch)) == self.base_arch.ops:
            return student_hidden_states[-1].new_zeros(())
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                base = model(
                    batch["input_ids"], attention_mask=batch.get("attention_mask"),
                    token_type_ids=batch.get("token_type_ids"), arch=self.base_arch, output_hidden_states=True,
                ).hidden_states
        finally:
            model.train(was_training)
        mask = batch.get("attention_mask")
        keep = None if mask is None or bool(mask.all()) else mask.bool()
        loss = student_hidden_states[-1].new_zeros(())
        for end in self.block_ends(len(student_hidden_states) - 1):
            student, target = student_hidden_states[end], base[end].to(student_hidden_states[end].dtype)
            if keep is not None:  # padding positions carry no signal
                student, target = student[keep], target[keep]
            loss = loss + F.mse_loss(student, target)
        return loss

    def due(self, step: int) -> bool:
        return self.replacement != "none" and step > 0 and step % self.every == 0

    def maybe_replace(self, step: int, evaluate: Callable[[Arch], float], candidates) -> bool:
        """Score the base and `candidates` with `evaluate` (lower is better) when a check is due;
        returns True when the base changed."""
        if not self.due(step):
            return False
        candidates = [self.space.arch(c) for c in candidates]
        base_score = float(evaluate(self.base_arch))  # weights moved since the last check
        scores = {}
        for arch in candidates:
            if arch not in scores and arch != self.base_arch:
                scores[arch] = float(evaluate(arch))
        self.base_score = base_score
        if not scores:
            return False
        best = min(scores, key=scores.get)
        if self.replacement == "beat":
            replace = scores[best] < base_score
        else:
            # Fraction of the population strictly better than the base.
            better = sum(score < base_score for score in scores.values())
            replace = better / len(scores) > self.top_p + self.tolerance
        if replace:
            self.base_arch, self.base_score = best, scores[best]
            self.replacements += 1
        return replace

    def state_dict(self) -> dict:
        return {
            "base_arch": list(self.base_arch.ops),
            "base_score": self.base_score,
            "replacements": self.replacements,
            "replacement": self.replacement,
            "block_size": self.block_size,
        }

    def load_state_dict(self, state: dict) -> None:
        self.base_arch = self.space.arch(state["base_arch"])
        self.base_score = state["base_score"]
        self.replacements = state.get("replacements", 0)
