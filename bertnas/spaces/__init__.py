"""Search spaces: generic `Arch` / `SearchSpace` (layer and input choices) and the spaces built on them."""

from bertnas.spaces.base import Arch, InputChoice, SearchSpace, as_rng
from bertnas.spaces.bert import BertSpace
from bertnas.spaces.cnn import CnnSpace
from bertnas.spaces.darts import GENOTYPES, DartsSpace, Genotype
from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space

__all__ = ["Arch", "InputChoice", "SearchSpace", "BertSpace", "DartsSpace", "Genotype", "GENOTYPES", "CnnSpace", "Nb201Space", "Nb201Benchmark", "as_rng"]
