"""Search a trained supernet: score subnets with inherited weights, search under budgets,
rank and plot the results (progressive shrinking, evolution, random search)."""

from .api import SEARCH_METHODS, build_table, register_search_method, search
from .constraints import Constraints, InfeasibleBudget, parse_size
from .evaluator import Evaluator, recalibrate
from .evolution import evolution_search, random_search
from .latency import LatencyTable, build_latency_table
from .results import Candidate, load_results, pareto_front
from .shrinking import BlockwiseScorer, blockwise_search, progressive_shrinking

__all__ = [
    "search",
    "SEARCH_METHODS",
    "register_search_method",
    "build_table",
    "Constraints",
    "InfeasibleBudget",
    "parse_size",
    "Evaluator",
    "recalibrate",
    "evolution_search",
    "random_search",
    "progressive_shrinking",
    "blockwise_search",
    "BlockwiseScorer",
    "LatencyTable",
    "build_latency_table",
    "Candidate",
    "load_results",
    "pareto_front",
]
