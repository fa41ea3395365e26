"""Calibration: which signal ranks archs best, how sure is that, and a hybrid ranker.

Given a few archs with a stand-alone truth (trained alone, or a benchmark table) and cheap
signals for every arch of a pool (the supernet's held-out score, zero-cost proxies, costs):

- `choose_covering_archs`: K archs that cover the pool, stratified by the supernet's score and
  by size (a grid of quantile bins, one arch per cell in turn, seeded);
- `signal_metrics`: Kendall tau / Spearman of each signal on the labelled archs with a
  percentile bootstrap 95 % interval (archs resampled with replacement);
- `compare_rankers` / `HybridRanker`: small scikit-learn regressors on rank-transformed
  features (every signal, op counts), compared by cross-validated Kendall tau; the best one is
  fitted on all labelled archs and predicts every arch of the pool.

All signals are oriented "higher is better" before they reach a ranker (a supernet loss is
negated), and features are rank-transformed (a quantile transform fitted on the labelled
archs): synflow spans 60 orders of magnitude, and a rank carries all a ranking needs.
`ranker.json` stores the training rows and the model's name and settings; loading refits the
same seeded model (scikit-learn models have no stable file format across versions).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bertnas.core.errors import UserError

MIN_TRUTH = 5  # fewer labelled archs give no usable interval or cross-validation
RANKER_FORMAT = 1


# ----------------------------------------------------------------------------------------
# Which archs to label
# ----------------------------------------------------------------------------------------


def _quantile_bins(values: Sequence[float], n_bins: int) -> list[int]:
    order = np.argsort(np.argsort(np.asarray(values, dtype=float), kind="stable"), kind="stable")
    return [int(r * n_bins // len(values)) for r in order]


def choose_covering_archs(pool: Sequence, score: Mapping, size: Mapping, k: int, seed: int = 0,
                          space_size: int | None = None) -> list:
    """`k` archs of `pool` covering the grid of (score quantile, size quantile) bins: the cells
    are visited in a seeded order, one arch drawn from each non-empty cell per round, until k.
    `score` / `size`: {arch: value}; archs without a score are binned by size alone."""
    if k < 1:
        raise UserError(f"--num-archs must be >= 1, got {k}", "label at least MIN_TRUTH archs")
    limit = space_size if space_size is not None else len(pool)
    if k > limit:
        raise UserError(f"--num-archs {k} is larger than the space ({limit} archs)",
                        f"pass --num-archs {limit} or fewer")
    if k > len(pool):
        raise UserError(f"--num-archs {k} is larger than the pool of {len(pool)} candidate archs",
                        "raise --pool or lower --num-archs")
    rng = random.Random(seed)
    side = max(1, int(math.ceil(math.sqrt(k))))
    s_values = [score.get(a, 0.0) for a in pool]
    s_bins = _quantile_bins(s_values, side) if any(a in score for a in pool) else [0] * len(pool)
    z_bins = _quantile_bins([size.get(a, 0.0) for a in pool], side)
    cells: dict = {}
    for arch, sb, zb in zip(pool, s_bins, z_bins):
        cells.setdefault((sb, zb), []).append(arch)
    for members in cells.values():
        rng.shuffle(members)
    keys = sorted(cells)
    rng.shuffle(keys)
    chosen = []
    while len(chosen) < k:
        for key in keys:
            if cells[key] and len(chosen) < k:
                chosen.append(cells[key].pop())
    return chosen


# ----------------------------------------------------------------------------------------
# Rank correlations with intervals
# ----------------------------------------------------------------------------------------


def _finite(values) -> np.ndarray:
    """Non-finite signal values (a proxy that cannot score a cut-off cell) just below the rest."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if not ok.all():
        low = v[ok].min() - 1.0 if ok.any() else 0.0
        v = np.where(ok, v, np.where(v == np.inf, (v[ok].max() + 1.0) if ok.any() else 1.0, low))
    return v


def rank_correlations(pred, truth) -> tuple[float, float]:
    from scipy import stats

    p, t = _finite(pred), np.asarray(truth, dtype=float)
    if np.ptp(p) == 0 or np.ptp(t) == 0:
        return float("nan"), float("nan")
    return float(stats.kendalltau(p, t).statistic), float(stats.spearmanr(p, t).statistic)


def bootstrap_metrics(pred, truth, n_boot: int = 1000, seed: int = 0) -> dict:
    """Kendall tau / Spearman of `pred` (higher = better) against `truth` (higher = better), with
    percentile bootstrap 95 % intervals (pairs resampled with replacement; degenerate resamples
    with a constant side are skipped)."""
    p, t = _finite(pred), np.asarray(truth, dtype=float)
    tau, rho = rank_correlations(p, t)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(p), len(p))
        bt, br = rank_correlations(p[idx], t[idx])
        if not math.isnan(bt):
            taus.append(bt)
            rhos.append(br)
    ci = (lambda xs: [float(np.percentile(xs, 2.5)), float(np.percentile(xs, 97.5))] if xs else [None, None])
    return {"n": int(len(p)), "kendall_tau": tau, "spearman_rho": rho, "ci95": {"kendall_tau": ci(taus),
                                                                               "spearman_rho": ci(rhos)}}


# ----------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------


def op_counts(space, arch) -> dict:
    """How often each candidate op appears in the arch (input choices count each picked input)."""
    counts = {}
    for name, cands in space.choices.items():
        for c in getattr(cands, "candidates", cands):
            counts.setdefault(f"op:{c}", 0)
    for value in space.arch(arch).ops:
        for v in (value if isinstance(value, tuple) else (value,)):
            counts[f"op:{v}"] = counts.get(f"op:{v}", 0) + 1
    return counts


def encoding(space, arch) -> dict:
    """One-hot of each choice's pick ("choice=op"; an input choice: each picked input)."""
    arch = space.arch(arch)
    out = {}
    for name, cands in space.choices.items():
        picked = arch[name] if isinstance(arch[name], tuple) else (arch[name],)
        for c in getattr(cands, "candidates", cands):
            out[f"{name}={c}"] = int(c in picked)
    return out


def feature_table(archs: Sequence, signals: Mapping[str, Mapping], space=None) -> tuple[list[str], np.ndarray]:
    """(names, matrix): one column per signal ({name: {arch: value}}, higher = better), then, when
    `space` is given, op counts and the one-hot encoding of the arch. Columns constant over
    `archs` are kept (the regularised models give them no weight)."""
    names = list(signals)
    rows = [[signals[n].get(a, float("nan")) for n in names] for a in archs]
    if space is not None:
        counts = [{**op_counts(space, a), **encoding(space, a)} for a in archs]
        op_names = list(counts[0]) if counts else []
        names += op_names
        rows = [r + [c.get(k, 0) for k in op_names] for r, c in zip(rows, counts)]
    x = np.asarray(rows, dtype=float)
    for j in range(x.shape[1]):
        x[:, j] = _finite(x[:, j])
    return names, x


# ----------------------------------------------------------------------------------------
# Rankers
# ----------------------------------------------------------------------------------------

# Small, regularised regressors of the truth's rank; all seeded. Names are stored in ranker.json.
RANKERS = {
    "ridge": "RidgeCV over alphas 0.1 .. 1000 (linear, L2)",
    "lasso": "LassoCV (linear, L1, feature selection)",
    "random_forest": "RandomForestRegressor, 200 trees, min 3 per leaf",
    "gradient_boosting": "GradientBoostingRegressor, depth 2, 100 stages, learning rate 0.05, subsample 0.8",
    # with a handful of labels one strong signal can beat any fit of all of them together; this
    # candidate lets the cross-validated comparison choose that signal instead of a fit
    "best_single": "SelectKBest(f_regression, k=1) + LinearRegression: the one feature most correlated with "
                   "the truth's rank",
}


def build_model(name: str, n_rows: int, seed: int = 0):
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.feature_selection import SelectKBest, f_regression
    from sklearn.linear_model import LassoCV, LinearRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    quantiles = QuantileTransformer(n_quantiles=max(2, min(100, n_rows)), output_distribution="uniform")
    if name == "ridge":
        model = RidgeCV(alphas=np.logspace(-1, 3, 13))
    elif name == "lasso":
        model = LassoCV(cv=min(5, max(2, n_rows // 2)), random_state=seed, max_iter=20000)
    elif name == "random_forest":
        model = RandomForestRegressor(n_estimators=200, min_samples_leaf=3, max_features=0.5, random_state=seed,
                                      n_jobs=1)
    elif name == "gradient_boosting":
        model = GradientBoostingRegressor(max_depth=2, n_estimators=100, learning_rate=0.05, subsample=0.8,
                                          random_state=seed)
    elif name == "best_single":
        # on the quantile-transformed features Pearson is about Spearman; constant columns score nan,
        # which SelectKBest ranks last
        return make_pipeline(quantiles, StandardScaler(), SelectKBest(f_regression, k=1), LinearRegression())
    else:
        raise UserError(f"unknown ranker model {name!r}", f"use one of {', '.join(RANKERS)}")
    return make_pipeline(quantiles, StandardScaler(), model)


def _target(truth) -> np.ndarray:
    """The truth's normalised rank in [0, 1] (a ranker is judged by ranks only)."""
    from scipy import stats

    t = np.asarray(truth, dtype=float)
    return (stats.rankdata(t) - 1) / max(1, len(t) - 1)


def cross_validated_predictions(name: str, x: np.ndarray, truth, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions (K-fold, shuffled, seeded; leave-one-out below 10 rows)."""
    from sklearn.model_selection import KFold, LeaveOneOut

    y = _target(truth)
    splitter = LeaveOneOut() if len(y) < 10 else KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    pred = np.zeros(len(y))
    for train, test in splitter.split(x):
        # the rank target is re-ranked within the training fold: no information from the test rows
        model = build_model(name, len(train), seed)
        model.fit(x[train], _target(np.asarray(truth, dtype=float)[train]))
        pred[test] = model.predict(x[test])
    return pred


def compare_rankers(x: np.ndarray, truth, names: Sequence[str] = tuple(RANKERS), seed: int = 0, n_boot: int = 1000,
                    folds: int = 5) -> dict:
    """{model: metrics of its out-of-fold predictions} (Kendall / Spearman, bootstrap 95 %)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    out = {}
    for name in names:
        with warnings.catch_warnings():  # LassoCV's weakest alphas may stop early: they are not chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            pred = cross_validated_predictions(name, x, truth, folds, seed)
        out[name] = {**bootstrap_metrics(pred, truth, n_boot, seed), "description": RANKERS[name]}
    return out


def check_truth(truth: Mapping, what: str = "the truth") -> None:
    finite = [v for v in truth.values() if v is not None and math.isfinite(float(v))]
    if len(finite) < MIN_TRUTH:
        raise UserError(f"{what} has {len(finite)} archs with a value; calibration needs at least {MIN_TRUTH}",
                        f"label more archs (--num-archs {MIN_TRUTH} or more)")


class HybridRanker:
    """A fitted ranker: the model `name` on features `names`, trained on `rows` -> `truth`;
    `predict(features)` -> higher = better. Saved as JSON with its training rows; loading refits."""

    def __init__(self, name: str, names: Sequence[str], rows: np.ndarray, truth: Sequence[float], *, space_id: dict,
                 seed: int = 0, info: dict | None = None):
        self.name, self.names = name, list(names)
        self.rows, self.truth = np.asarray(rows, dtype=float), np.asarray(truth, dtype=float)
        self.space_id, self.seed, self.info = dict(space_id), int(seed), dict(info or {})
        self.model = build_model(name, len(self.truth), self.seed)
        self.model.fit(self.rows, _target(self.truth))

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        for j in range(x.shape[1]):
            x[:, j] = _finite(x[:, j]) if x.shape[0] > 1 else np.nan_to_num(x[:, j], nan=-1e300, neginf=-1e300,
                                                                              posinf=1e300)
        return self.model.predict(x)

    def to_json(self) -> dict:
        return {"format": RANKER_FORMAT, "model": self.name, "description": RANKERS[self.name],
                "features": self.names, "space": self.space_id, "seed": self.seed, "info": self.info,
                "rows": self.rows.tolist(), "truth": self.truth.tolist()}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path, space_id: dict | None = None) -> HybridRanker:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"ranker file {path} does not exist", "run bertnas calibrate --output-dir OUT first "
                                                                  "and pass OUT/ranker.json")
        try:
            data = json.loads(path.read_text())
            data["model"], data["features"], data["rows"], data["truth"], data["space"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path} is not a ranker file of bertnas calibrate",
                            "pass the ranker.json that bertnas calibrate wrote") from None
        if space_id is not None and data["space"] != space_id:
            raise UserError(f"{path} was fitted on another space ({data['space'].get('describe')}), not this run's "
                            f"({space_id.get('describe')})", "run bertnas calibrate on this checkpoint and pass its "
                                                             "ranker.json")
        return cls(data["model"], data["features"], np.asarray(data["rows"]), data["truth"], space_id=data["space"],
                   seed=data.get("seed", 0), info=data.get("info"))


def space_identity(space) -> dict:
    """What a ranker must match: the space's choices and candidates."""
    choices = {name: list(getattr(c, "candidates", c)) for name, c in space.choices.items()}
    return {"describe": f"{type(space).__name__}: {len(choices)} choices, {space.size()} archs", "choices": choices}


def verdict(metrics: Mapping[str, Mapping]) -> dict:
    """Which signal to use: the highest Kendall tau; 'clearly' when its interval's lower end is
    above every other signal's tau, else the leaders are within the noise of K labelled archs."""
    scored = {k: v for k, v in metrics.items() if v.get("kendall_tau") is not None
              and not math.isnan(v["kendall_tau"])}
    if not scored:
        return {"use": None, "text": "no signal could be scored against the truth"}
    best = max(scored, key=lambda k: scored[k]["kendall_tau"])
    low = (scored[best].get("ci95") or {}).get("kendall_tau", [None])[0]
    others = sorted(((v["kendall_tau"], k) for k, v in scored.items() if k != best), reverse=True)
    runner = others[0] if others else None
    clear = low is not None and (runner is None or low > runner[0])
    b = scored[best]
    text = (f"Use the {best} ranking: Kendall tau {b['kendall_tau']:.2f}"
            + (f" (95 % interval {low:.2f} .. {b['ci95']['kendall_tau'][1]:.2f})" if low is not None else "")
            + (f", above the next best, {runner[1]} ({runner[0]:.2f})" if runner else "")
            + (", clearly (the interval's lower end is above it)." if clear and runner else
               "; the intervals overlap, so label more archs to separate them." if runner else "."))
    return {"use": best, "clear": bool(clear), "text": text}


__all__ = ["choose_covering_archs", "bootstrap_metrics", "rank_correlations", "feature_table", "op_counts",
           "RANKERS", "build_model", "cross_validated_predictions", "compare_rankers", "HybridRanker",
           "space_identity", "verdict", "check_truth", "MIN_TRUTH"]


class RankerScorer:
    """The search's scorer with a hybrid ranker: `scorer(arch)` is the ranker's prediction from
    the arch's features (the supernet's held-out score from `evaluator`, the proxies on a freshly
    initialised copy of the supernet seeded as in calibration, op counts). Higher is better.
    Everything else (batches, timing) is the wrapped evaluator's."""

    metric = "hybrid_prediction"
    higher_is_better = True

    def __init__(self, ranker: HybridRanker, task, evaluator):
        import torch

        from bertnas.analysis.zero_cost import PROXIES, ZeroCostScorer

        self.ranker, self.task, self.evaluator = ranker, task, evaluator
        info = ranker.info
        self.signals = list(info.get("signals") or [])
        self.sign = float(info.get("supernet_sign", 1.0 if evaluator.higher_is_better else -1.0))
        proxies = [s for s in self.signals if s in PROXIES]
        self.proxies = None
        if proxies:
            seed = int(info.get("proxy_seed", 0))
            torch.manual_seed(seed)
            fresh = type(task.model)(task.model.config)
            batches, _ = task.heldout(batch_size=int(info.get("proxy_batch_size", 16)), eval_batches=1)
            self.proxies = ZeroCostScorer(fresh, task.space, batches, proxies, seed=seed)
        self.cache: dict = {}

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def sort_key(self, score: float) -> float:
        return -score

    def features(self, arch) -> dict:
        arch = self.task.space.arch(arch)
        values = {"supernet": self.sign * float(self.evaluator(arch))} if "supernet" in self.signals else {}
        if self.proxies is not None:
            values.update(self.proxies.score(arch))
        return {name: {arch: values.get(name, float("nan"))} for name in self.signals}

    def __call__(self, arch) -> float:
        arch = self.task.space.arch(arch)
        if arch not in self.cache:
            names, x = feature_table([arch], self.features(arch), self.task.space)
            if names != self.ranker.names:
                raise UserError("the ranker's features do not match this run's",
                                "run bertnas calibrate on this checkpoint and pass its ranker.json")
            self.cache[arch] = float(self.ranker.predict(x)[0])
        return self.cache[arch]


def ranker_rescorer(path):
    """For `search(..., rescore=...)`: wraps the run's evaluator with the ranker at `path`
    (a one-line error when it was fitted on another space)."""

    def rescore(task, evaluator):
        return RankerScorer(HybridRanker.load(path, space_identity(task.space)), task, evaluator)

    return rescore


__all__ += ["RankerScorer", "ranker_rescorer"]
