"""How well a supernet ranks architectures: its scores against a ground truth, arch by arch.

`ranking_metrics(scores, truth)` takes two mappings arch -> value (an arch is a list / tuple of
op names or an arch string such as an NB201 `|op~0|+|...|`; see `arch_key`) and returns, over
the archs present in both:

- `kendall_tau`, `spearman_rho` (scipy; tau-b, so ties are handled) and their p-values;
- `top_k[str(k)]`: of the supernet's k best archs, the best ground truth (`best_truth`, in the
  truth's own units, and its rank in the truth, 1 = best) and `precision` (the share of the
  supernet's k best that are among the truth's k best), each beside the exact value a random
  ranking gets (`random_best_truth_mean` / `_std`, `random_precision_mean` / `_std`) and
  `p_random_as_good`, the chance that a random ranking's k best contain a truth at least as good;
- `ndcg[str(k)]`: NDCG@k with the truth min-max scaled to [0, 1] as relevance, beside a random
  ranking's exact mean and spread;
- `random_baseline`: what a random ranking scores on tau and rho (mean 0, exact spread for n).

Directions are explicit: `higher_is_better_scores` / `higher_is_better_truth` (a loss: False;
an accuracy: True). Every value is reported in its own units; only the ordering is flipped.
Ties in the scores are broken by the arch key, so the result is deterministic.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import numpy as np

from bertnas.core.errors import UserError

logger = logging.getLogger("bertnas.analysis")
MIN_ARCHS = 3  # below this a rank correlation is +-1 or undefined whatever the supernet learned

DEFAULT_KS = (1, 5, 10)


def arch_key(arch):
    """One hashable key per arch, so the same arch written two ways matches: a list / tuple of
    ops -> tuple of str; a string holding a JSON list, comma-separated ops ("mha12,ffn") or an
    NB201 arch string ("|op~0|+|op~0|op~1|+...") -> the tuple of its ops in order; any other
    string -> itself, stripped."""
    if isinstance(arch, str):
        text = arch.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                return text
            if isinstance(parsed, list):
                return tuple(str(op) for op in parsed)
        if text.startswith("|") and "~" in text:  # NB201: ops in edge order, input index dropped
            return tuple(part.split("~")[0] for part in text.replace("+", "").split("|") if part)
        if "," in text:
            return tuple(op.strip() for op in text.split(","))
        return text
    if hasattr(arch, "ops"):  # a bertnas Arch
        arch = arch.ops
    if isinstance(arch, (list, tuple)):
        return tuple(str(op) for op in arch)
    raise UserError(f"cannot use {arch!r} as an arch", "give a list of op names or an arch string")


def key_text(key) -> str:
    """A key as text for reports and plots: ops joined by ',' or the arch string."""
    return ",".join(key) if isinstance(key, tuple) else str(key)


def _checked_mapping(values: Mapping, name: str) -> dict:
    if not isinstance(values, Mapping):
        raise UserError(f"{name} must map arch -> value, got {type(values).__name__}",
                        "pass a dict (see bertnas.analysis.io.load_scores)")
    out = {}
    for arch, value in values.items():
        key = arch_key(arch)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{name}: the value for arch {key_text(key)} is {value!r}, not a number",
                            "give one number per arch") from None
        if not math.isfinite(number):
            raise UserError(f"{name}: the value for arch {key_text(key)} is {number}",
                            "drop archs whose score is not a finite number")
        if key in out and out[key] != number:
            raise UserError(f"{name}: arch {key_text(key)} appears twice with different values",
                            "give each arch once")
        out[key] = number
    return out


def paired_values(scores: Mapping, truth: Mapping):
    """(keys, score array, truth array) over the archs in both, in a fixed order, plus counts of
    the archs only one side has. Raises a clear error when fewer than 2 archs are shared."""
    scores = _checked_mapping(scores, "scores")
    truth = _checked_mapping(truth, "truth")
    keys = sorted(set(scores) & set(truth), key=key_text)
    if not keys:
        sample_s = key_text(next(iter(scores))) if scores else "(none)"
        sample_t = key_text(next(iter(truth))) if truth else "(none)"
        raise UserError(f"no arch is in both the scores ({len(scores)} archs, e.g. {sample_s}) and the "
                        f"truth ({len(truth)} archs, e.g. {sample_t})",
                        "score the archs that the truth has, in the same arch format")
    if len(keys) < 2:
        raise UserError(f"only {len(keys)} arch is in both the scores and the truth; a ranking needs at "
                        "least 2", "score more of the archs that the truth has")
    s = np.array([scores[k] for k in keys], dtype=float)
    t = np.array([truth[k] for k in keys], dtype=float)
    dropped = {"only_in_scores": len(scores) - len(keys), "only_in_truth": len(truth) - len(keys)}
    return keys, s, t, dropped


def _check_not_constant(values: np.ndarray, name: str):
    if np.all(values == values[0]):
        raise UserError(f"every {name} value is {values[0]:g} over the {len(values)} shared archs, so "
                        "rank correlation is undefined",
                        f"check the {name} file (a supernet that was not trained, or a truth column "
                        "that is the same for every arch)")


def _best_first(values: np.ndarray, keys: list, higher_is_better: bool) -> list[int]:
    """Indices best first; ties by arch key (deterministic)."""
    sign = -1.0 if higher_is_better else 1.0
    return sorted(range(len(values)), key=lambda i: (sign * values[i], key_text(keys[i])))


def _random_best_of_k(sorted_best_first: np.ndarray, k: int):
    """Exact mean, std and tail of the best value among a uniformly random k-subset of n values.

    With values sorted best first, the best of the subset is the i-th (1-based) exactly when the
    subset holds item i and k-1 items from the n-i after it: P = C(n-i, k-1) / C(n, k)."""
    n = len(sorted_best_first)
    # P_1 = k / n and P_{i+1} / P_i = (n - i - k + 1) / (n - i): floats, fast for n in the 10^4s.
    i = np.arange(1, n)
    ratios = np.clip((n - i - k + 1) / (n - i), 0.0, None)
    probs = (k / n) * np.concatenate(([1.0], np.cumprod(ratios)))
    mean = float(np.dot(probs, sorted_best_first))
    var = float(np.dot(probs, (sorted_best_first - mean) ** 2))
    return mean, math.sqrt(max(var, 0.0)), probs


def _random_weighted_sum(values: np.ndarray, weights: np.ndarray):
    """Exact mean and std of sum_i w_i * X_i, X the first len(w) values of a random permutation
    (draws without replacement: Var X = s2, Cov(X_i, X_j) = -s2 / (n - 1))."""
    n = len(values)
    mean = float(values.mean() * weights.sum())
    s2 = float(values.var())  # population variance
    sum_w, sum_w2 = float(weights.sum()), float((weights ** 2).sum())
    var = s2 * sum_w2 - (s2 / (n - 1)) * (sum_w ** 2 - sum_w2) if n > 1 else 0.0
    return mean, math.sqrt(max(var, 0.0))


def top_k_metrics(keys, s, t, k: int, higher_is_better_scores: bool, higher_is_better_truth: bool) -> dict:
    """Best truth and precision among the supernet's k best, with a random ranking's exact values."""
    n = len(keys)
    by_score = _best_first(s, keys, higher_is_better_scores)
    truth_sign = 1.0 if higher_is_better_truth else -1.0
    oriented = truth_sign * t  # higher = better from here on
    chosen = by_score[:k]
    best_index = max(chosen, key=lambda i: oriented[i])
    best_truth = float(t[best_index])
    rank_of_best = int(np.sum(oriented > oriented[best_index])) + 1  # 1 = the truth's best; ties share
    # The truth's k best: every arch at least as good as the k-th best (ties may make it larger).
    kth = np.sort(oriented)[::-1][k - 1]
    in_truth_top = oriented >= kth
    truth_top_size = int(in_truth_top.sum())
    hits = int(sum(in_truth_top[i] for i in chosen))
    precision = min(hits / k, 1.0)
    # A random ranking's k best are a uniform k-subset: best-of-k exactly, hits hypergeometric.
    sorted_oriented = np.sort(oriented)[::-1]
    mean_o, std_o, probs = _random_best_of_k(sorted_oriented, k)
    p_as_good = float(probs[sorted_oriented >= oriented[best_index]].sum())
    hyper_mean = k * truth_top_size / n
    hyper_var = (k * (truth_top_size / n) * (1 - truth_top_size / n) * (n - k) / (n - 1)) if n > 1 else 0.0
    return {
        "k": k,
        "best_truth": best_truth,
        "best_truth_rank": rank_of_best,
        "precision": precision,
        "random_best_truth_mean": truth_sign * mean_o,
        "random_best_truth_std": std_o,
        "random_precision_mean": min(hyper_mean / k, 1.0),
        "random_precision_std": math.sqrt(max(hyper_var, 0.0)) / k,
        "p_random_as_good": p_as_good,
        "archs": [key_text(keys[i]) for i in chosen],
    }


def ndcg_metrics(keys, s, t, k: int, higher_is_better_scores: bool, higher_is_better_truth: bool) -> dict:
    """NDCG@k, relevance = the truth min-max scaled to [0, 1] (best = 1), and a random ranking's."""
    oriented = t if higher_is_better_truth else -t
    relevance = (oriented - oriented.min()) / (oriented.max() - oriented.min())
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    by_score = _best_first(s, keys, higher_is_better_scores)
    dcg = float(np.dot(relevance[by_score[:k]], discounts))
    ideal = float(np.dot(np.sort(relevance)[::-1][:k], discounts))
    mean, std = _random_weighted_sum(relevance, discounts)
    return {"k": k, "ndcg": dcg / ideal, "random_mean": mean / ideal, "random_std": std / ideal}


def ranking_metrics(scores: Mapping, truth: Mapping, ks=DEFAULT_KS, higher_is_better_scores: bool = False,
                    higher_is_better_truth: bool = True) -> dict:
    """Kendall tau, Spearman rho, top-k and NDCG@k of `scores` against `truth` (see the module doc).

    Defaults: scores are a supernet's validation loss (lower is better), truth an accuracy
    (higher is better). A k larger than the number of shared archs is clipped to it."""
    from scipy import stats

    keys, s, t, dropped = paired_values(scores, truth)
    _check_not_constant(s, "score")
    _check_not_constant(t, "truth")
    n = len(keys)
    # Correlate "goodness": flip whichever side is lower-is-better.
    s_good = s if higher_is_better_scores else -s
    t_good = t if higher_is_better_truth else -t
    tau = stats.kendalltau(s_good, t_good)
    rho = stats.spearmanr(s_good, t_good)
    used_ks = sorted({min(int(k), n) for k in ks if int(k) >= 1})
    if not used_ks:
        raise UserError(f"no usable k in {list(ks)}", "give positive integers, e.g. 1 5 10")
    truth_best_index = int(np.argmax(t_good))
    notes = []
    if n < MIN_ARCHS:
        note = (f"only {n} archs are in both the scores and the truth: Kendall tau and Spearman rho of {n} archs "
                "can only be +-1, and their p-values say nothing; score at least 10 archs for a meaningful ranking")
        logger.warning("%s", note)
        notes.append(note)
    values = {"kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
              "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue)}
    undefined = [name for name, value in values.items() if not math.isfinite(value)]
    if undefined:  # written as null (strict JSON), said here instead of a bare NaN
        note = f"{', '.join(undefined)} undefined for {n} archs (written as null)"
        logger.warning("%s", note)
        notes.append(note)
        values = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    return {
        "n": n,
        **values,
        "notes": notes,
        "higher_is_better_scores": bool(higher_is_better_scores),
        "higher_is_better_truth": bool(higher_is_better_truth),
        "truth_best": float(t[truth_best_index]),
        "truth_best_arch": key_text(keys[truth_best_index]),
        "top_k": {str(k): top_k_metrics(keys, s, t, k, higher_is_better_scores, higher_is_better_truth)
                  for k in used_ks},
        "ndcg": {str(k): ndcg_metrics(keys, s, t, k, higher_is_better_scores, higher_is_better_truth)
                 for k in used_ks},
        # A random ranking (no ties): both correlations have mean 0 and these exact spreads.
        "random_baseline": {
            "kendall_tau_mean": 0.0,
            "kendall_tau_std": math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))),
            "spearman_rho_mean": 0.0,
            "spearman_rho_std": 1 / math.sqrt(n - 1),
        },
        "dropped": dropped,
    }
