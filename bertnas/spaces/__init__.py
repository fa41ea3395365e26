"""Search spaces: generic `Arch` / `SearchSpace` and the spaces built on them."""

from .base import Arch, SearchSpace, as_rng
from .bert import BertSpace

__all__ = ["Arch", "SearchSpace", "BertSpace", "as_rng"]
