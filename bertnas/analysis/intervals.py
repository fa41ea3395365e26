"""Bootstrap confidence intervals of a ranking's correlation with a truth.

The archs are resampled with replacement (`n_boot` times, seeded) and Kendall tau-b / Spearman
rho recomputed on each resample; the interval is the percentile interval at `level`. It answers
"how much would tau move with another sample of archs of this size", the uncertainty that
matters when two variants are compared on the same archs."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bertnas.analysis.ranking import paired_values


def bootstrap_intervals(scores: Mapping, truth: Mapping, *, higher_is_better_scores: bool,
                        higher_is_better_truth: bool = True, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> dict:
    """{"kendall_tau": [low, high], "spearman_rho": [low, high], "n": archs, "n_boot": n_boot}."""
    from scipy import stats

    _, s, t, _ = paired_values(scores, truth)
    if len(s) < 3:
        raise ValueError(f"a bootstrap interval needs at least 3 archs in both, got {len(s)}")
    s = s if higher_is_better_scores else -s
    t = t if higher_is_better_truth else -t
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(s), len(s))
        taus.append(stats.kendalltau(s[pick], t[pick]).statistic)
        rhos.append(stats.spearmanr(s[pick], t[pick]).statistic)
    tail = 100 * (1 - level) / 2

    def interval(values):
        return [float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))]

    return {"kendall_tau": interval(taus), "spearman_rho": interval(rhos), "n": int(len(s)), "n_boot": n_boot,
            "level": level}


__all__ = ["bootstrap_intervals"]
