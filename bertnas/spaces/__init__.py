"""Search spaces: generic `Arch` / `SearchSpace` (layer and input choices) and the spaces built on them."""

from .base import Arch, InputChoice, SearchSpace, as_rng
from .bert import BertSpace
from .nb201 import Nb201Benchmark, Nb201Space

__all__ = ["Arch", "InputChoice", "SearchSpace", "BertSpace", "Nb201Space", "Nb201Benchmark", "as_rng"]
