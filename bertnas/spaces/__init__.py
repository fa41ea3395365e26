"""Search spaces: generic `Arch` / `SearchSpace` (layer and input choices) and the spaces built on them."""

from .base import Arch, InputChoice, SearchSpace, as_rng
from .bert import BertSpace
from .cnn import CnnSpace
from .darts import GENOTYPES, DartsSpace, Genotype
from .nb201 import Nb201Benchmark, Nb201Space

__all__ = ["Arch", "InputChoice", "SearchSpace", "BertSpace", "DartsSpace", "Genotype", "GENOTYPES", "CnnSpace", "Nb201Space", "Nb201Benchmark", "as_rng"]
