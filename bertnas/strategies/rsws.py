"""RS-WS (Li & Talwalkar 2019, random search with weight sharing): uniformly sampled paths train the
shared weights (`chooses_archs = False`: no architecture parameters); at the end `num_samples`
random archs are scored with the shared weights by the task's held-out scorer through the
search method "random" (the one `bertnas search --method random` runs; the run hands it in as
`ctx.search`) and the best are returned.

    bertnas search --space nb201 --strategy rsws --max-steps 200 --output-dir runs/nb201-rsws
"""

from __future__ import annotations


from bertnas.strategies.base import Strategy


class RandomSearchStrategy(Strategy):
    chooses_archs = False
    method = "random"  # the search method run on the trained weights
    defaults = {"num_samples": 64}

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        self.found: list = []  # the ranked archs of the final search

    def search_options(self) -> dict:
        return {"num_samples": int(self.options["num_samples"])}

    def candidates(self, ctx, n: int) -> list:
        """Search the trained supernet with the shared weights; the best `n` archs, best first."""
        if ctx.search is None:
            raise ValueError(f"strategy {self.name!r} searches the trained weights: run it through run_strategy "
                             "(bertnas search --strategy), which provides the search")
        with ctx.scoring():
            self.found = ctx.search(self.method, {**self.search_options(), "seed": self.seed, "progress": ctx.progress})
        return self.found[:n]

    def derive(self):
        if not self.found:
            raise ValueError(f"strategy {self.name!r} finds its arch by searching the trained weights: "
                             "call candidates(ctx, n) first")
        return self.found[0]


__all__ = ["RandomSearchStrategy"]
