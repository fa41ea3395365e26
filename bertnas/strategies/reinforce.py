"""ENAS-style REINFORCE (Williams 1992; Pham et al. 2018): a controller p_phi(a) (per-choice logits,
`controller.py`) draws the path of every weight step; every `every` weight steps it draws
`archs_per_step` archs, scores each with the shared weights on one held-out batch (the task's
`Evaluator`: held-out accuracy for vision, so reward = accuracy; minus the held-out loss for
language models) and takes one step on -mean((R - b) log p(a)), b a moving-average baseline.

    bertnas search --space nb201 --strategy reinforce --max-steps 200 --output-dir runs/nb201-reinforce

The held-out batches rotate (update i uses batch i mod eval_batches), so the controller never
fits one batch. The derived arch is the controller's mode.
"""

from __future__ import annotations

import random


from bertnas.strategies.base import Strategy, weights_log
from bertnas.strategies.controller import Controller, MovingBaseline, reinforce_update


class ReinforceStrategy(Strategy):
    defaults = {
        "controller_lr": 0.05,  # Adam on the logits
        "every": 1,  # weight steps between controller steps
        "archs_per_step": 4,  # rollouts scored per controller step
        "warmup_steps": 0,  # weight steps (uniform paths) before the controller learns
        "baseline_decay": 0.9,
        "entropy_weight": 0.0,  # bonus on the mean entropy (exploration)
    }

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        for key in ("every", "archs_per_step"):
            if int(self.options[key]) < 1:
                raise ValueError(f"strategy {self.name!r}: {key} must be >= 1, got {self.options[key]}")
        self.controller = Controller(space, seed, lr=float(self.options["controller_lr"]))
        self.baseline = MovingBaseline(float(self.options["baseline_decay"]))
        self.updates = 0  # controller steps taken
        self._evaluators: dict[int, object] = {}  # held-out batch index -> its one-batch Evaluator
        self._batches = None

    # -- hooks ---------------------------------------------------------------------------------
    def choose(self, step: int):
        # Paths before the controller learns are uniform anyway (all logits zero).
        return self.controller.sample()

    def _reward_evaluator(self, ctx):
        """A one-batch Evaluator (the task's scorer, uncached: the weights move) for this update."""
        if self._batches is None:
            self._batches, _ = ctx.task.heldout(eval_batches=ctx.eval_batches)
        index = self.updates % len(self._batches)
        if index not in self._evaluators:
            evaluator = ctx.task.evaluator([self._batches[index]], cache=False)
            self._evaluators[index] = evaluator
        return self._evaluators[index]

    def rewards(self, ctx, archs) -> list[float]:
        """Held-out score of each arch with the shared weights; higher is better (minus a loss)."""
        evaluator = self._reward_evaluator(ctx)
        with ctx.scoring():
            scores = [evaluator(arch) for arch in archs]
        return [s if evaluator.higher_is_better else -s for s in scores]

    def update(self, archs, rewards) -> dict:
        return reinforce_update(self.controller, archs, rewards, self.baseline,
                                entropy_weight=float(self.options["entropy_weight"]))

    def after_weight_step(self, ctx, step: int, arch) -> dict:
        done = step + 1  # weight steps done, this one included
        if done <= int(self.options["warmup_steps"]) or done % int(self.options["every"]):
            return {}
        archs = [self.controller.sample() for _ in range(int(self.options["archs_per_step"]))]
        rewards = self.rewards(ctx, archs)
        fields = self.update(archs, rewards)
        self.updates += 1
        fields = {**fields, "reward_max": max(rewards), "updates": self.updates}
        if ctx.world_size > 1:
            fields = self._take_rank0_update(fields)
        return {"controller": fields}

    def _take_rank0_update(self, fields: dict) -> dict:
        """Every rank takes rank 0's controller, baseline and log fields (as MAGIC-A's base
        decisions are taken): rewards scored per rank can differ in the last bits on GPUs, and
        controllers updated from them would draw different paths on different ranks."""
        import torch.distributed as dist

        state = [{"controller": self.controller.state_dict(), "baseline": self.baseline.value, "fields": fields}]
        dist.broadcast_object_list(state, src=0)
        self.controller.load_state_dict(state[0]["controller"])
        self.baseline.value = state[0]["baseline"]
        return state[0]["fields"]

    def log_fields(self) -> dict:
        return weights_log(self.space, self.controller.all_probs())

    # -- results -------------------------------------------------------------------------------
    def derive(self):
        return self.controller.mode()

    def candidates(self, ctx, n: int) -> list:
        """The mode first, then the most probable other archs among draws of the final policy
        (a generator of its own: the controller's stream is untouched)."""
        found = [self.derive()]
        rng = random.Random(self.seed + 1)
        saved = self.controller.rng
        self.controller.rng = rng
        try:
            draws = {self.controller.sample() for _ in range(max(0, 8 * (n - 1)))}
        finally:
            self.controller.rng = saved
        draws.discard(found[0])
        ranked = sorted(draws, key=lambda a: (-float(self.controller.log_prob(a).detach()), a.to_list()))
        return found + ranked[: max(0, n - 1)]

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "controller": self.controller.state_dict(),
                "baseline": self.baseline.value, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.baseline.value = state["baseline"]
        self.updates = state["updates"]


__all__ = ["ReinforceStrategy"]
