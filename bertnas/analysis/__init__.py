"""Can a supernet be trusted? Ranking against ground truth, interference, sparsity and bias.

`ranking_metrics` (Kendall tau, Spearman rho, top-k, NDCG against a random ranking),
`load_scores` / `load_truth` (results.json, mappings, `nb201:cifar10`), `gradient_interference`,
`entropy_over_training`, `params_bias` / `score_by_operator`, and `write_trust_report`.
The `bertnas analyze` command (bertnas/cli/analyze.py) wraps them.
"""

from bertnas.core.lazy import lazy_attributes

# Imported on first use, so `bertnas analyze --help` loads no torch.
_LAZY = {
    "ranking_metrics": ".ranking", "arch_key": ".ranking",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
