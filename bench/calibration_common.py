"""The held-out evaluation of calibration, shared by bench/calibration_nb201.py and bench/calibration_toy.py.

For each K and each of `repeats` seeds of the draw: `choose_covering_archs` picks K labelled
archs of the pool (stratified by `strata` score, when given, and by `size`); every single signal
is judged on the other archs of the pool (Kendall tau / Spearman); the hybrid is every model of
`RANKERS` compared by 5-fold cross-validation on the K archs, the best one fitted on all K, and
its predictions judged on the held-out archs. Intervals: percentile bootstrap 95 % over the
held-out archs (seed 0 of the draw only), and the spread over the seeds.

Everything is "higher is better": signals and truth are oriented before they come here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def held_out_evaluation(pool: list, signals: dict, truth: dict, arch_of: dict, space, size: dict, ks, repeats: int,
                        n_boot: int, strata: dict | None = None, hybrid_signals=None, started: float | None = None,
                        log=print) -> dict:
    """{str(K): {"summary": ..., "runs": [...]}}.

    pool: keys (e.g. arch strings); signals: {name: {key: value}}; truth: {key: value};
    arch_of: {key: the space's Arch}; size: {key: params}; strata: {key: score} to stratify the
    draw by (else by size alone); hybrid_signals: the signal names that are the hybrid's columns
    (default all; `feature_table` adds the space's op counts and one-hot encoding to them)."""
    from bertnas.analysis import calibration as cal
    from bertnas.analysis.calibration import RANKERS, HybridRanker, bootstrap_metrics

    started = time.time() if started is None else started
    columns = list(signals) if hybrid_signals is None else [n for n in signals if n in set(hybrid_signals)]
    per_k: dict = {}
    for k in ks:
        runs = []
        for seed in range(repeats):
            chosen = cal.choose_covering_archs(pool, strata or {}, size, k, seed)
            chosen_set = set(chosen)
            rest = [a for a in pool if a not in chosen_set]
            y_train = np.asarray([truth[a] for a in chosen])
            y_test = np.asarray([truth[a] for a in rest])
            boot = n_boot if seed == 0 else 0
            run = {"seed": seed, "labelled": chosen, "held_out": len(rest), "signals": {}}
            for name, values in signals.items():
                run["signals"][name] = bootstrap_metrics([values[a] for a in rest], y_test, boot, seed)
            by_arch = {n: {arch_of[a]: signals[n][a] for a in pool} for n in columns}
            feats, x_train = cal.feature_table([arch_of[a] for a in chosen], by_arch, space)
            _, x_test = cal.feature_table([arch_of[a] for a in rest], by_arch, space)
            cv = cal.compare_rankers(x_train, y_train, tuple(RANKERS), seed, n_boot=0)
            best = max(cv, key=lambda m: cv[m]["kendall_tau"])
            run["ranker_cv"] = {m: cv[m]["kendall_tau"] for m in cv}
            run["ranker_held_out"] = {}
            for model in RANKERS:  # every model on the held-out archs: does CV pick well?
                ranker = HybridRanker(model, feats, x_train, y_train, space_id={}, seed=seed)
                run["ranker_held_out"][model] = bootstrap_metrics(ranker.predict(x_test.copy()), y_test, 0, seed)[
                    "kendall_tau"]
            ranker = HybridRanker(best, feats, x_train, y_train, space_id={}, seed=seed)
            run["hybrid"] = {**bootstrap_metrics(ranker.predict(x_test.copy()), y_test, boot, seed), "model": best}
            runs.append(run)
            log(f"K={k} seed={seed}: hybrid ({best}) tau {run['hybrid']['kendall_tau']:.3f}; best single "
                f"{max(run['signals'].items(), key=lambda kv: kv[1]['kendall_tau'])[0]} "
                f"{max(v['kendall_tau'] for v in run['signals'].values()):.3f}  ({time.time() - started:.0f} s)")
        per_k[str(k)] = {"summary": summarise_runs(runs, list(signals), list(RANKERS)), "runs": runs}
    return per_k


def summarise_runs(runs: list, signals: list, rankers: list) -> dict:
    """Per signal and the hybrid: tau mean / std and Spearman mean over the draws, seed 0's
    tau / Spearman with its bootstrap interval; which model the hybrid chose; each model's mean."""

    def values(name, key="kendall_tau"):
        return [r["hybrid"][key] if name == "hybrid" else r["signals"][name][key] for r in runs]

    summary = {}
    for name in ["hybrid", *signals]:
        t, s = values(name), values(name, "spearman_rho")
        first = runs[0]["hybrid"] if name == "hybrid" else runs[0]["signals"][name]
        summary[name] = {"kendall_tau_mean": float(np.mean(t)), "kendall_tau_std": float(np.std(t)),
                         "spearman_rho_mean": float(np.mean(s)), "seed0": {k: first[k] for k in
                                                                          ("kendall_tau", "spearman_rho", "ci95")}}
    summary["hybrid"]["models_chosen"] = [r["hybrid"]["model"] for r in runs]
    summary["ranker_held_out_mean"] = {m: float(np.mean([r["ranker_held_out"][m] for r in runs])) for m in rankers}
    summary["ranker_cv_mean"] = {m: float(np.mean([r["ranker_cv"][m] for r in runs])) for m in rankers}
    return summary


def tau_rows(per_k: dict, ks, names) -> dict:
    """{name: {"mean": [tau mean per K], "std": [...]}}: what `plot` draws."""
    return {n: {"mean": [per_k[str(k)]["summary"][n]["kendall_tau_mean"] for k in ks],
                "std": [per_k[str(k)]["summary"][n]["kendall_tau_std"] for k in ks]} for n in names}


def plot(path: Path, rows: dict, ks: list, title: str, reference: tuple[float, str] | None = None,
         singles: int = 6) -> None:
    """Kendall tau against K: the hybrid and the `singles` best single signals (mean +- std over
    the draws); `reference`: (tau, label) drawn as a dotted line."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    best = sorted((n for n in rows if n != "hybrid"), key=lambda n: -np.mean(rows[n]["mean"]))[:singles]
    for name in ["hybrid", *best]:
        mean, std = np.asarray(rows[name]["mean"]), np.asarray(rows[name]["std"])
        style = {"lw": 2.5, "color": "black"} if name == "hybrid" else {"lw": 1.2, "ls": "--"}
        ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=name, **style)
    if reference is not None:
        ax.axhline(reference[0], color="grey", lw=0.8, ls=":", label=reference[1])
    ax.set_xlabel("K labelled archs")
    ax.set_ylabel("Kendall tau on the held-out archs")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=10)  # long titles stay inside the figure
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
