"""Search a trained supernet: score subnets with inherited weights, search under budgets,
rank and plot the results (progressive shrinking, evolution, random search)."""

from .cli import build_table, search
from .constraints import Constraints, InfeasibleBudget, parse_size
from .evaluator import Evaluator, load_supernet, recalibrate
from .evolution import evolution_search, random_search
from .latency import LatencyTable, build_latency_table
from .results import Candidate, load_results, pareto_front
from .shrinking import BlockwiseScorer, blockwise_search, progressive_shrinking

__all__ = [
    "search",
    "build_table",
    "Constraints",
    "InfeasibleBudget",
    "parse_size",
    "Evaluator",
    "load_supernet",
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
