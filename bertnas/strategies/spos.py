"""SPOS (single-path one-shot, Guo et al. 2020): the shared weights trained on uniformly
sampled paths (a uniform sampler of its own), then an evolutionary search with the shared
weights (`bertnas/search/api.py`'s "evolution" method: population x (generations + 1) archs
scored by the task's held-out `Evaluator`).

    bertnas search --space bert --strategy spos --max-steps 200 --output-dir runs/bert-spos
"""

from __future__ import annotations


from bertnas.strategies.rsws import RandomSearchStrategy


class SposStrategy(RandomSearchStrategy):
    method = "evolution"
    defaults = {"population": 16, "generations": 8, "parents": 4, "mutation_k": 1}

    def search_options(self) -> dict:
        return {key: int(self.options[key]) for key in self.defaults}


__all__ = ["SposStrategy"]
