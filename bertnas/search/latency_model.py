"""The fitted correction of a latency table: a small linear model of what the plain sum misses.

A latency table predicts `overhead + sum of the ops' latencies`, each op timed alone. In a whole
subnet an op runs with cold weights, after another kind of op, with the encoder's dispatch
around it, so the sum misses by a roughly systematic amount (17% mean on the bench supernet).
The correction is a ridge regression of that miss,

    measured(arch) - plain_sum(arch) ~ sum_j coef_j * term_j(arch)

fitted on whole subnets measured on the same machine. The terms are named (plain JSON, so a
table stays portable: a GPU table is built the same way on the GPU); the models are sets of them:

    scale            const, sum          a + b * plain sum (one factor for every op)
    ops              op:<name>           each op's in-context cost (delta per layer running it)
    ops+transitions  ops, transitions    ... + a cost per adjacent pair of layers of different kinds
    ops+pairs        ops, pair:<A>><B>   ... + a cost per adjacent pair of op kinds A -> B (A != B)

Every model is `fixed + sum_i unary(op_i) + sum_i pair(op_i, op_i+1)`, so the cheapest arch of a
chain under the predictor is found exactly (a shortest path over the layers, `cheapest_chain`).
Fits weight each arch by 1 / measured^2 (errors are relative) and penalise the standardised
coefficients (`alpha`, dimensionless). `select_and_fit` picks the model and alpha with the least
leave-one-out mean absolute % error on the fit archs (closed form, no refits), per machine.

Numbers only (numpy): no torch, no timing; `latency.py` measures and stores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bertnas.models.ops_bertnas import op_kind

MODELS = ("scale", "ops", "ops+transitions", "ops+pairs")
ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def kind_of(op: str) -> str:
    """The op's kind (mha6, mha8, mha12 -> 'mha'; conv3, conv5 -> 'conv'; ffn; ffn_wide; identity)."""
    return op_kind(op).kind


def model_terms(model: str, candidates: Sequence[str]) -> list[str]:
    """The term names of `model` for a table of `candidates`."""
    ops = [f"op:{op}" for op in candidates]
    kinds = list(dict.fromkeys(kind_of(op) for op in candidates))
    if model == "scale":
        return ["const", "sum"]
    if model == "ops":
        return ops
    if model == "ops+transitions":
        return [*ops, "transitions"]
    if model == "ops+pairs":
        return ops + [f"pair:{a}>{b}" for a in kinds for b in kinds if a != b]
    raise ValueError(f"Unknown latency correction model {model!r}; models are {', '.join(MODELS)}")


def term_values(terms: Sequence[str], ops: Sequence[str], plain_ms: float) -> list[float]:
    """The value of each term for the chain `ops` whose plain-sum prediction is `plain_ms`."""
    kinds = [kind_of(op) for op in ops]
    pairs = list(itertools.pairwise(kinds))
    out = []
    for term in terms:
        if term == "const":
            out.append(1.0)
        elif term == "sum":
            out.append(float(plain_ms))
        elif term == "transitions":
            out.append(float(sum(a != b for a, b in pairs)))
        elif term.startswith("op:"):
            out.append(float(sum(op == term[3:] for op in ops)))
        elif term.startswith("pair:"):
            a, _, b = term[5:].partition(">")
            out.append(float(sum(p == (a, b) for p in pairs)))
        else:
            raise ValueError(f"Unknown latency correction term {term!r}")
    return out


def _known_term(term) -> bool:
    if not isinstance(term, str):
        return False
    if term in ("const", "sum", "transitions"):
        return True
    if term.startswith("op:"):
        return len(term) > 3
    if term.startswith("pair:"):
        a, sep, b = term[5:].partition(">")
        return bool(a and sep and b)
    return False


def check_correction(correction) -> None:
    """ValueError saying what is wrong with a table's "correction" object (as stored in JSON)."""
    if not isinstance(correction, Mapping):
        raise ValueError("its 'correction' is not an object")
    terms, coef = correction.get("terms"), correction.get("coef")
    if not isinstance(terms, list) or not isinstance(coef, Mapping) or not coef:
        raise ValueError("its 'correction' needs a list 'terms' and an object 'coef' {seq_len: [numbers]}")
    unknown = [t for t in terms if not _known_term(t)]
    if unknown:
        raise ValueError(f"its correction has terms this bertnas does not know: {unknown}")
    for n, values in coef.items():
        if not str(n).isdigit():
            raise ValueError(f"its correction has coefficients for seq len {n!r} (not an integer)")
        if not isinstance(values, list) or len(values) != len(terms) or not all(_finite(v) for v in values):
            raise ValueError(f"its correction's coefficients at seq len {n} are not {len(terms)} finite numbers")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------------------
# Ridge fit and leave-one-out
# ----------------------------------------------------------------------------------------


def _system(x: np.ndarray, plain: np.ndarray, measured: np.ndarray):
    """Relative-error system: rows scaled by 1 / measured; target is the relative miss."""
    a = x / measured[:, None]
    b = (measured - plain) / measured
    scale = np.sqrt((a**2).mean(axis=0))
    scale[scale == 0] = 1.0
    return a, b, scale


def ridge(x, plain, measured, alpha: float) -> np.ndarray:
    """Coefficients of the correction terms `x` (rows: archs) minimising
    sum_i ((measured_i - plain_i - x_i . w) / measured_i)^2 + alpha * n * sum_j (s_j w_j)^2,
    s_j the RMS of column j of the scaled system. alpha = 0: least squares (minimum norm when
    the terms are not all identifiable from these archs)."""
    x, plain, measured = (np.asarray(v, dtype=np.float64) for v in (x, plain, measured))
    a, b, scale = _system(x, plain, measured)
    if alpha == 0:
        return np.linalg.lstsq(a, b, rcond=None)[0]
    n = len(b)
    lhs = a.T @ a + alpha * n * np.diag(scale**2)
    return np.linalg.solve(lhs, a.T @ b)


def loo_abs_rel_errors(x, plain, measured, alpha: float) -> np.ndarray:
    """Leave-one-out |predicted - measured| / measured of each arch (the exact closed form of a
    linear smoother: residual / (1 - leverage)). inf where an arch cannot be left out (its
    leverage is 1: no other arch determines its terms)."""
    x, plain, measured = (np.asarray(v, dtype=np.float64) for v in (x, plain, measured))
    a, b, scale = _system(x, plain, measured)
    n = len(b)
    if alpha == 0:
        hat = a @ np.linalg.pinv(a)
    else:
        hat = a @ np.linalg.solve(a.T @ a + alpha * n * np.diag(scale**2), a.T)
    resid = b - hat @ b
    lever = 1.0 - np.diag(hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(resid) / lever
    out[lever < 1e-9] = np.inf
    return out


def select_and_fit(samples_by_len: Mapping[int, Sequence[dict]], candidates: Sequence[str],
                   models: Sequence[str] = MODELS, alphas: Sequence[float] = ALPHAS) -> dict:
    """Choose the model and alpha with the least leave-one-out mean absolute % error over the
    fit archs (pooled over seq lens; ties go to the simpler model, then the larger alpha) and fit
    it at every seq len. `samples_by_len`: {seq_len: [{"arch": ops, "plain_ms", "measured_ms"}]}.
    Returns the table's "correction" object."""
    sizes = {len(s) for s in samples_by_len.values()}
    if not samples_by_len or min(sizes) < 2:
        raise ValueError("A latency correction needs at least 2 measured archs per seq len")
    scores = {}
    for model in models:
        terms = model_terms(model, candidates)
        for alpha in alphas:
            errors = []
            for samples in samples_by_len.values():
                x, plain, measured = _arrays(samples, terms)
                errors.append(loo_abs_rel_errors(x, plain, measured, alpha))
            errors = np.concatenate(errors)
            scores[(model, alpha)] = (float(100 * errors.mean()), float(100 * (errors <= 0.10).mean()))
    order = {m: i for i, m in enumerate(models)}
    # errors equal to 1e-6 % are ties: the simpler model, then the stronger shrinkage, wins
    best_model, best_alpha = min(scores, key=lambda k: (round(scores[k][0], 6), order[k[0]], -k[1]))
    terms = model_terms(best_model, candidates)
    coef = {}
    for n, samples in samples_by_len.items():
        x, plain, measured = _arrays(samples, terms)
        coef[str(n)] = [float(c) for c in ridge(x, plain, measured, best_alpha)]
    return {
        "model": best_model,
        "terms": terms,
        "coef": coef,
        "alpha": best_alpha,
        "selection": {
            "criterion": "leave-one-out mean absolute % error on the fit archs",
            # null: some arch could not be left out (no other fit arch determines its terms)
            "loo": [{"model": m, "alpha": a, "mean_abs_pct_error": e if math.isfinite(e) else None,
                     "within_10pct": w} for (m, a), (e, w) in scores.items()],
        },
    }


def _arrays(samples, terms):
    x = np.array([term_values(terms, s["arch"], s["plain_ms"]) for s in samples], dtype=np.float64)
    plain = np.array([s["plain_ms"] for s in samples], dtype=np.float64)
    measured = np.array([s["measured_ms"] for s in samples], dtype=np.float64)
    return x.reshape(len(samples), len(terms)), plain, measured


# ----------------------------------------------------------------------------------------
# The predictor as fixed + unary + pairwise costs, and its cheapest chain
# ----------------------------------------------------------------------------------------


def decompose(terms: Sequence[str], coef: Sequence[float], overhead_ms: float,
              op_ms: Callable[[str], float]) -> tuple[float, Callable[[str], float], Callable[[str, str], float]]:
    """(fixed, unary(op), pair(op_a, op_b)) with predicted(ops) = fixed + sum unary(op_i)
    + sum pair(op_i, op_i+1): the plain sum plus the correction."""
    weights = dict(zip(terms, coef))
    const, factor = weights.get("const", 0.0), 1.0 + weights.get("sum", 0.0)
    transition = weights.get("transitions", 0.0)
    pairs = {tuple(t[5:].partition(">")[::2]): w for t, w in weights.items() if t.startswith("pair:")}

    def unary(op: str) -> float:
        return factor * op_ms(op) + weights.get(f"op:{op}", 0.0)

    def pair(a: str, b: str) -> float:
        ka, kb = kind_of(a), kind_of(b)
        return (transition if ka != kb else 0.0) + pairs.get((ka, kb), 0.0)

    return factor * overhead_ms + const, unary, pair


def cheapest_chain(choices: Sequence[Sequence[str]], unary, pair) -> list[str]:
    """The ops (one per layer from `choices`) with the least sum of unary and adjacent pair
    costs: a shortest path through the layers (exact, O(layers x candidates^2))."""
    if not choices:
        return []
    best = {op: (unary(op), [op]) for op in choices[0]}
    for layer in choices[1:]:
        step = {}
        for op in layer:
            cost, path = min(((c + pair(p[-1], op), p) for c, p in best.values()), key=lambda t: t[0])
            step[op] = (cost + unary(op), [*path, op])
        best = step
    return min(best.values(), key=lambda t: t[0])[1]


def error_summary(samples: Sequence[dict], key: str = "predicted_ms") -> dict:
    """Mean / max absolute % error of `key` against measured_ms and the share within +-10 %."""
    errors = [100.0 * abs(s[key] - s["measured_ms"]) / s["measured_ms"] for s in samples]
    if not errors:
        return {"mean_abs_pct_error": None, "max_abs_pct_error": None, "within_10pct": None}
    return {"mean_abs_pct_error": sum(errors) / len(errors), "max_abs_pct_error": max(errors),
            "within_10pct": sum(e <= 10.0 for e in errors) / len(errors)}


__all__ = [
    "ALPHAS",
    "MODELS",
    "cheapest_chain",
    "check_correction",
    "decompose",
    "error_summary",
    "kind_of",
    "loo_abs_rel_errors",
    "model_terms",
    "ridge",
    "select_and_fit",
    "term_values",
]
