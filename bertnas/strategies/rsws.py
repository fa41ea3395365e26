"""RS-WS (METHODS §6, random search with weight sharing): the trainer's own uniform sampler
trains the shared weights (`learns_weights = False`: no architecture parameters); at the end
`num_samples` random archs are scored with the shared weights by the task's held-out
`Evaluator` (`bertnas/search/api.py`'s "random" method, the one `bertnas search --method random`
runs) and the best are returned.

    bertnas search --space nb201 --strategy rsws --max-steps 200 --output-dir runs/nb201-rsws
"""

from __future__ import annotations

from bertnas.strategies import register_strategy
from bertnas.strategies.base import Strategy


@register_strategy("rsws")
class RandomSearchStrategy(Strategy):
    learns_weights = False
    method = "random"  # the search method of bertnas/search/api.py run on the trained weights
    defaults = {"num_samples": 64}

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        self.found: list = []  # the ranked archs of the final search

    def search_options(self) -> dict:
        return {"num_samples": int(self.options["num_samples"])}

    def candidates(self, trainer, n: int) -> list:
        """Search the trained supernet with the shared weights; the best `n` archs, best first."""
        from bertnas.search.api import SEARCH_METHODS
        from bertnas.search.constraints import Constraints

        batches, _ = trainer.task.heldout(eval_batches=trainer.cfg.eval_batches)
        evaluator = trainer.task.evaluator(batches)  # cached: the weights no longer move
        options = {**self.search_options(), "seed": self.seed, "progress": bool(trainer.cfg.progress)}
        try:
            outcome, _ = SEARCH_METHODS[self.method](trainer.task, self.space, evaluator, Constraints(), options)
        finally:
            trainer.trainable.train()
        self.found = [candidate.arch for candidate in outcome.results]
        return self.found[:n]

    def derive(self):
        if not self.found:
            raise ValueError(f"strategy {self.name!r} finds its arch by searching the trained weights: "
                             "call candidates(trainer, n) first")
        return self.found[0]


__all__ = ["RandomSearchStrategy"]
