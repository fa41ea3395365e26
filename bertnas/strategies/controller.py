"""A policy over the archs of a `SearchSpace`: independent per-choice logits (the ENAS /
REINFORCE / PPO controller; Pham et al. 2018).

Layer choice: a categorical over its candidates, p = softmax(logits). Input choice
(`n_chosen = k` of n): the k inputs are drawn one after another without replacement
(Plackett-Luce), each from the softmax over the candidates not yet drawn; an `Arch` stores the
set, so `log_prob` sums the probability of every order that gives it (k! orders, k = 2 in DARTS
cells). Choices are decided in the space's order; where a choice depends on earlier ones (a
DARTS cell edge carries a real op exactly when its node keeps that input) the softmax runs over
the allowed candidates only. The mode is the greedy argmax in the same order.

Everything is a pure function of the logits and a seeded `random.Random`; the controller's
Adam optimizer steps the logits. `state_dict()` is JSON (floats as lists): float32 values
survive the float round trip, so a resumed controller draws and updates exactly as the
uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import torch

from bertnas.core.serialization import rng_state_from_json, rng_state_to_json
from bertnas.spaces.base import Arch, SearchSpace


def _draw_index(probs: Sequence[float], rng: random.Random) -> int:
    """Index drawn from `probs` (floats summing to ~1) by inverse CDF with one `rng.random()`."""
    u = rng.random() * sum(probs)
    total = 0.0
    for i, p in enumerate(probs):
        total += p
        if u < total:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # u landed on the rounding slack


class Controller:
    """Per-choice logits over `space` (all zero at the start: the uniform policy) and their Adam.

    Args:
        space: the `SearchSpace` whose archs the policy draws.
        seed: seeds the draws (a `random.Random`, saved in the state).
        lr: Adam learning rate of the logits.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, lr: float = 0.05):
        self.space = space
        self.seed = seed
        self.lr = lr
        self.rng = random.Random(seed)
        self.logits: dict[str, torch.Tensor] = {
            label: torch.zeros(len(cands), dtype=torch.float32, requires_grad=True)
            for label, cands in space.choices.items()
        }
        self.optimizer = torch.optim.Adam(list(self.logits.values()), lr=lr)
        self._darts_cells = type(space).__name__ == "DartsSpace"  # coupled choices (see `allowed`)

    # -- the distribution ----------------------------------------------------------------------
    def probs(self, label: str) -> torch.Tensor:
        return torch.softmax(self.logits[label].detach(), dim=0)

    def allowed(self, label: str, chosen: dict) -> list[int]:
        """Indices of the candidates of `label` that fit the choices made before it (`chosen`,
        in the space's order). Every candidate, except in DARTS cells: an edge into a node
        carries a real op when the node keeps its input and `none` when it does not."""
        cands = self.space.choices[label]
        if self._darts_cells and "_edge_" in label:
            cell, _, edge = label.partition("_edge_")
            source, target = edge.split("_")
            keeps = source in chosen[f"{cell}_node_{target}"]
            return [i for i, c in enumerate(cands) if (c != "none") == keeps]
        return list(range(len(cands)))

    def _decide(self, pick) -> Arch:
        """An arch choice by choice in the space's order; `pick(label, allowed, k)` returns the
        indices chosen among `allowed` (k of them for an input choice)."""
        chosen: dict = {}
        for label, cands in self.space.choices.items():
            allowed = self.allowed(label, chosen)
            picks = pick(label, allowed, self.space.n_chosen[label])
            chosen[label] = (tuple(cands[i] for i in sorted(picks)) if label in self.space.input_choices
                             else cands[picks[0]])
        return Arch(list(chosen.items()))

    def sample(self) -> Arch:
        """One arch drawn from the policy (uses and advances the controller's rng)."""

        def draw(label, allowed, k):
            probs = self.probs(label).tolist()
            picked: list[int] = []
            for _ in range(k):  # without replacement: drawn (and disallowed) ones get probability 0
                remaining = [p if i in allowed and i not in picked else 0.0 for i, p in enumerate(probs)]
                picked.append(_draw_index(remaining, self.rng))
            return picked

        return self._decide(draw)

    def log_prob(self, arch) -> torch.Tensor:
        """log p(arch), differentiable in the logits (a 0-dim tensor)."""
        arch = self.space.arch(arch)
        total = torch.zeros((), dtype=torch.float32)
        for label, cands in self.space.choices.items():
            allowed = self.allowed(label, arch)
            if len(allowed) == self.space.n_chosen[label]:
                continue  # forced: probability 1
            logits = self.logits[label]
            if len(allowed) < len(cands):
                mask = torch.ones(len(cands), dtype=torch.bool)
                mask[allowed] = False
                logits = logits.masked_fill(mask, -math.inf)
            if label not in self.space.input_choices:
                total = total + torch.log_softmax(logits, dim=0)[cands.index(arch[label])]
            else:
                total = total + self._set_log_prob(logits, [cands.index(c) for c in arch[label]])
        return total

    @staticmethod
    def _set_log_prob(logits: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        """log P(the set `chosen`) under sequential draws without replacement: logsumexp over
        the orders of the per-order log-probabilities."""
        per_order = []
        for order in itertools.permutations(chosen):
            mask = torch.zeros_like(logits, dtype=torch.bool)
            logp = torch.zeros((), dtype=logits.dtype)
            for i in order:
                logp = logp + torch.log_softmax(logits.masked_fill(mask, -math.inf), dim=0)[i]
                mask = mask.clone()
                mask[i] = True
            per_order.append(logp)
        return torch.logsumexp(torch.stack(per_order), dim=0)

    def mode(self) -> Arch:
        """Greedy in the space's order: the most likely allowed candidate per layer choice, the
        `n_chosen` largest logits per input choice (ties: the first candidate)."""

        def best(label, allowed, k):
            logits = self.logits[label].detach().tolist()
            return sorted(allowed, key=lambda i: (-logits[i], i))[:k]

        return self._decide(best)

    def all_probs(self) -> dict[str, torch.Tensor]:
        """{choice: softmax(logits)}: the simplices `weights_log` reports (arch weights, entropy)."""
        return {label: self.probs(label) for label in self.logits}

    def entropy_tensor(self) -> torch.Tensor:
        """Mean entropy over the choices, differentiable (an optional exploration bonus)."""
        terms = []
        for logits in self.logits.values():
            logp = torch.log_softmax(logits, dim=0)
            terms.append(-(logp.exp() * logp).sum())
        return torch.stack(terms).mean()

    def step(self, loss: torch.Tensor) -> None:
        """One Adam step of the logits on `loss`."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        adam = {}
        for i, p in enumerate(self.logits.values()):
            s = self.optimizer.state.get(p)
            if s:
                adam[str(i)] = {"step": float(s["step"]), "exp_avg": s["exp_avg"].tolist(),
                                "exp_avg_sq": s["exp_avg_sq"].tolist()}
        return {
            "seed": self.seed,
            "lr": self.lr,
            "logits": {label: t.detach().tolist() for label, t in self.logits.items()},
            "adam": adam,
            "rng": rng_state_to_json(self.rng.getstate()),
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["logits"]) != list(self.logits) or any(
                len(v) != len(self.logits[k]) for k, v in state["logits"].items()):
            raise ValueError("controller state is for another space (its choices or candidates differ): "
                             "resume with the same --space and space options")
        with torch.no_grad():
            for label, values in state["logits"].items():
                self.logits[label].copy_(torch.tensor(values, dtype=torch.float32))
        self.seed, self.lr = state["seed"], state["lr"]
        params = list(self.logits.values())
        self.optimizer = torch.optim.Adam(params, lr=self.lr)
        for i, s in state["adam"].items():
            self.optimizer.state[params[int(i)]] = {
                "step": torch.tensor(s["step"], dtype=torch.float32),
                "exp_avg": torch.tensor(s["exp_avg"], dtype=torch.float32),
                "exp_avg_sq": torch.tensor(s["exp_avg_sq"], dtype=torch.float32),
            }
        self.rng.setstate(rng_state_from_json(state["rng"]))


class MovingBaseline:
    """b <- decay * b + (1 - decay) * mean(rewards); the first batch's mean starts it."""

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"baseline decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.value: float | None = None

    def update(self, rewards: Sequence[float]) -> float:
        mean = sum(rewards) / len(rewards)
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return self.value


def reinforce_update(controller: Controller, archs: Sequence[Arch], rewards: Sequence[float],
                     baseline: MovingBaseline, entropy_weight: float = 0.0) -> dict:
    """One REINFORCE step: loss = -mean((R - b) log p(a)) - entropy_weight * H, with b the
    moving-average baseline before this batch (the first batch's own mean starts it)."""
    b = baseline.value if baseline.value is not None else sum(rewards) / len(rewards)
    advantages = [r - b for r in rewards]
    logps = torch.stack([controller.log_prob(a) for a in archs])
    loss = -(torch.tensor(advantages, dtype=torch.float32) * logps).mean()
    if entropy_weight:
        loss = loss - entropy_weight * controller.entropy_tensor()
    controller.step(loss)
    baseline.update(rewards)
    return {"baseline": b, "reward_mean": sum(rewards) / len(rewards), "policy_loss": float(loss.detach())}


def ppo_update(controller: Controller, archs: Sequence[Arch], rewards: Sequence[float], baseline: MovingBaseline,
               clip: float = 0.2, epochs: int = 4, entropy_weight: float = 0.0) -> dict:
    """PPO on one batch of rollouts from the current policy: `epochs` Adam steps on
    -mean(min(ratio A, clip(ratio, 1 - clip, 1 + clip) A)), ratio = p_new(a) / p_old(a),
    A = R - b (moving-average baseline, as REINFORCE), then the baseline takes the batch."""
    b = baseline.value if baseline.value is not None else sum(rewards) / len(rewards)
    advantages = torch.tensor([r - b for r in rewards], dtype=torch.float32)
    with torch.no_grad():
        old = torch.stack([controller.log_prob(a) for a in archs])
    clipped_fraction = 0.0
    for _ in range(epochs):
        ratio = torch.exp(torch.stack([controller.log_prob(a) for a in archs]) - old)
        surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
        loss = -surrogate.mean()
        if entropy_weight:
            loss = loss - entropy_weight * controller.entropy_tensor()
        clipped_fraction = float(((ratio - 1).abs() > clip).float().mean())
        controller.step(loss)
    baseline.update(rewards)
    return {"baseline": b, "reward_mean": sum(rewards) / len(rewards), "policy_loss": float(loss.detach()),
            "clipped_fraction": clipped_fraction}


__all__ = ["Controller", "MovingBaseline", "reinforce_update", "ppo_update"]
