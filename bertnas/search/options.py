"""Each search method's options object.

`search()` keeps its flat keyword API (the CLI flags); it hands a method only the options
object of that method's class (`register_search_method(name, options=...)`), built from the
keywords that class names. Every class carries the common `seed`, `top_k` and `progress`.
For a method written against the older options mapping, `options["name"]` reads a field too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class SearchOptions:
    """What every method gets: the seed of its random choices, how many archs the search
    reports (`top_k`, None: all) and whether progress bars are shown."""

    seed: int = 0
    top_k: int | None = 10
    progress: bool = True

    @classmethod
    def from_values(cls, values: Mapping):
        """The options of this class among `values` (the search's keywords); others are ignored,
        a missing one keeps its default."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def __getitem__(self, name: str):
        """`options["bins"]`: the older mapping access of search methods."""
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class ShrinkingOptions(SearchOptions):
    """Progressive shrinking: archs binned by size (`bin_by`), the survivors of each bin mutated
    (`mutation_k` choices) round after round; `blockwise`: MAGIC's block-wise variant, scored
    per block of `block_size` choices against a teacher path (`base_arch`)."""

    bins: int = 3
    candidates_per_bin: int = 16
    survivors_per_bin: int = 2
    bin_by: str = "params"
    mutation_k: int = 1
    blockwise: bool = False
    block_size: int = 2
    base_arch: object = None  # a list of ops, "op,op,..." or None: the run's MAGIC-A base, else BERT's path
    candidates_per_block: int = 64


@dataclass(frozen=True)
class EvolutionOptions(SearchOptions):
    """Evolution: a population, `parents` of it mutated (`mutation_k` choices) and crossed per generation."""

    population: int = 16
    generations: int = 8
    parents: int = 4
    mutation_k: int = 1


@dataclass(frozen=True)
class RandomOptions(SearchOptions):
    """Random search: `num_samples` archs drawn uniformly."""

    num_samples: int = 64


__all__ = ["SearchOptions", "ShrinkingOptions", "EvolutionOptions", "RandomOptions"]
