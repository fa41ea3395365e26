"""Biases of a supernet's ranking: towards big subnets, and towards some operators.

- `params_correlation(scores, params)`: rank correlation between how good the supernet finds an
  arch and its parameter count. Strongly positive: the supernet mostly rewards size, and a
  parameter count would rank the archs about as well for free (compare its correlation with the
  truth: `ranking_metrics(params, truth, higher_is_better_scores=True)`).
- `score_by_operator(scores)`: for every layer and op, the mean score and mean rank percentile
  (0 = the best arch, 1 = the worst) of the archs that use that op there, and the same over all
  layers. An op whose archs all sit at the top is one the supernet favours; whether the truth
  favours it too is the question (the "How does supernet help" study found NB201 supernets
  favouring conv3x3 where the real best archs used skips).
Archs are keyed as in `bertnas.analysis.ranking.arch_key` (tuples of ops in layer order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from bertnas.core.errors import UserError

from bertnas.analysis.ranking import _best_first, _check_not_constant, paired_values


def params_correlation(scores: Mapping, params: Mapping, higher_is_better_scores: bool = False) -> dict:
    """Kendall tau and Spearman rho between the scores' goodness and the parameter count (> 0:
    bigger archs score better)."""
    from scipy import stats

    keys, s, p, _ = paired_values(scores, params)
    _check_not_constant(s, "score")
    _check_not_constant(p, "parameter count")
    good = s if higher_is_better_scores else -s
    return {"n": len(keys), "kendall_tau": float(stats.kendalltau(good, p).statistic),
            "spearman_rho": float(stats.spearmanr(good, p).statistic)}


def score_by_operator(scores: Mapping, higher_is_better: bool = False) -> dict:
    """{"by_layer": {layer: {op: {"n", "mean_score", "mean_percentile"}}}, "by_op": {op: {...}}};
    a percentile of 0 is the best arch, 1 the worst, 0.5 what a neutral op gets."""
    keys, s, _, _ = paired_values(scores, scores)
    if not all(isinstance(k, tuple) for k in keys):
        raise UserError("score by operator needs archs as lists of ops", "give results.json archs, not names")
    order = _best_first(s, keys, higher_is_better)
    percentile = np.empty(len(keys))
    percentile[order] = np.arange(len(keys)) / max(len(keys) - 1, 1)
    by_layer: dict = defaultdict(lambda: defaultdict(list))
    by_op: dict = defaultdict(list)
    for i, key in enumerate(keys):
        for layer, op in enumerate(key):
            by_layer[layer][op].append(i)
            by_op[op].append(i)

    def stats_of(indices):
        return {"n": len(indices), "mean_score": float(s[indices].mean()),
                "mean_percentile": float(percentile[indices].mean())}

    return {"by_layer": {str(layer): {op: stats_of(ix) for op, ix in sorted(ops.items())}
                         for layer, ops in sorted(by_layer.items())},
            "by_op": {op: stats_of(ix) for op, ix in sorted(by_op.items(), key=lambda kv: percentile[kv[1]].mean())}}
