"""PPO controller (Schulman et al. 2017, the clipped-ratio variant of REINFORCE): the same loop as
`reinforce.py` (paths drawn by the controller, `archs_per_step` rollouts scored on one held-out
batch with the shared weights every `every` weight steps), but each batch of rollouts is used
for `epochs` Adam steps of the clipped surrogate -mean(min(r A, clip(r, 1-eps, 1+eps) A)),
r = p_new(a) / p_old(a), A = R - b.

    bertnas search --space nb201 --strategy ppo --max-steps 200 --output-dir runs/nb201-ppo
"""

from __future__ import annotations


from bertnas.strategies.controller import ppo_update
from bertnas.strategies.reinforce import ReinforceStrategy


class PpoStrategy(ReinforceStrategy):
    defaults = {**ReinforceStrategy.defaults, "archs_per_step": 8, "clip": 0.2, "epochs": 4}

    def update(self, archs, rewards) -> dict:
        return ppo_update(self.controller, archs, rewards, self.baseline, clip=float(self.options["clip"]),
                          epochs=int(self.options["epochs"]), entropy_weight=float(self.options["entropy_weight"]))


__all__ = ["PpoStrategy"]
