"""Search a trained supernet: score subnets with inherited weights, search under budgets,
rank and plot the results (progressive shrinking, evolution, random search)."""

from bertnas.core.lazy import lazy_attributes

# Imported on first use, so `bertnas search --help` loads no torch.
_LAZY = {
    "SEARCH_METHODS": ".api", "build_table": ".api", "register_search_method": ".api", "search": ".api",
    "SearchOptions": ".options", "ShrinkingOptions": ".options", "EvolutionOptions": ".options",
    "RandomOptions": ".options",
    "Constraints": ".constraints", "InfeasibleBudget": ".constraints", "parse_size": ".constraints",
    "Evaluator": "bertnas.supernet.scoring", "recalibrate": "bertnas.supernet.scoring",
    "evolution_search": ".evolution", "random_search": ".evolution",
    "LatencyTable": ".latency", "build_latency_table": ".latency",
    "Candidate": "bertnas.storage.results", "load_results": "bertnas.storage.results",
    "pareto_front": "bertnas.storage.results",
    "BlockwiseScorer": ".shrinking", "blockwise_search": ".shrinking", "progressive_shrinking": ".shrinking",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "search",
    "SEARCH_METHODS",
    "register_search_method",
    "SearchOptions",
    "ShrinkingOptions",
    "EvolutionOptions",
    "RandomOptions",
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
