"""Search spaces: generic `Arch` / `SearchSpace` (layer and input choices) and the spaces built on them."""

from .base import Arch, InputChoice, SearchSpace, as_rng
from .bert import BertSpace

__all__ = ["Arch", "InputChoice", "SearchSpace", "BertSpace", "as_rng"]
