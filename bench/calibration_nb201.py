"""Calibration on real truth: NAS-Bench-201 CIFAR-10, K labelled archs, evaluated on the rest.

The pool is the 724 archs of NASLib's `zc_nasbench201.json` (its proxies are known there), or
those of them with a supernet score when `--scores` is given. For each K (default 20, 50, 100)
and each of `--repeats` seeds, `bertnas.analysis.calibration.choose_covering_archs` picks K archs
(stratified by supernet score, when there is one, and by params); their real 200-epoch CIFAR-10
test accuracy (`Nb201Benchmark`: the stand-alone truth, no training needed) labels them, and
every signal is judged on the other archs of the pool:

- each single signal as it is (NASLib's proxies, `--ours` the package's own proxies from
  `bench/zero_cost_check.py`'s values, the supernet score): Kendall tau / Spearman;
- the hybrid: every model of `RANKERS` compared by 5-fold cross-validation on the K archs, the
  best one fitted on all K, then its predictions on the held-out archs.

Intervals: percentile bootstrap 95 % over the held-out archs (seed 0), and the spread over the
seeds of the draw. NASLib's `val_accuracy` (a trained quantity) is never a feature.

    OMP_NUM_THREADS=1 python bench/calibration_nb201.py
    OMP_NUM_THREADS=1 python bench/calibration_nb201.py --ours --label ours
    OMP_NUM_THREADS=1 python bench/calibration_nb201.py \\
        --scores bench/results/supernet_scores.json --scores-lower-is-better --label supernet
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/portable.py, also when imported by a test
from portable import portable_json  # noqa: E402

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
SHARED = REPO.parent / "shared" / "data"
EXCLUDED = ("val_accuracy",)  # trained, not zero-cost


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zero-cost", default=str(SHARED / "nasbench" / "naslib" / "zc_nasbench201.json"))
    p.add_argument("--ours", action="store_true", help="add the package's proxies (bench/zero_cost_check.py values)")
    p.add_argument("--ours-values", default=str(REPO / "bench" / "results" / "zero_cost_values.json"))
    p.add_argument("--no-naslib", action="store_true", help="leave NASLib's proxies out of the features")
    p.add_argument("--scores", help="supernet scores JSON {arch string: score}, or a nb201_ranking.py result "
                                    "(its supernet_scores[--scores-variant])")
    p.add_argument("--scores-variant", default="spos")
    p.add_argument("--scores-lower-is-better", action="store_true", help="the scores are losses")
    p.add_argument("--ks", type=int, nargs="+", default=[20, 50, 100])
    p.add_argument("--repeats", type=int, default=5, help="seeds of the draw of the K archs")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--label", default="naslib")
    p.add_argument("--json", help="default bench/results/calibration_nb201_<label>.json")
    p.add_argument("--plot", help="default docs/img/calibration_nb201_<label>.png")
    p.add_argument("--replot", action="store_true", help="only redraw the plot from the --label's JSON")
    return p.parse_args(argv)


def load_scores(path: str, variant: str) -> tuple[dict, bool | None]:
    """({arch string: score}, higher_is_better or None when the file does not say). A
    nb201_ranking.py result keeps each variant's scores with their direction beside them."""
    data = json.loads(Path(path).read_text())
    higher = None
    if isinstance(data, dict) and "supernet_scores" in data:
        if variant not in data["supernet_scores"]:
            raise SystemExit(f"{path} has no supernet scores of {variant!r}; it has "
                             f"{', '.join(data['supernet_scores'])}: pass one as --scores-variant")
        data = data["supernet_scores"][variant]
        if isinstance(data.get("scores"), dict):  # {"scores": ..., "higher_is_better": ..., settings}
            higher = data.get("higher_is_better")
            data = data["scores"]
    return {str(k): float(v) for k, v in data.items()}, higher


def plot(path: Path, rows: dict, ks: list, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    singles = sorted((n for n in rows if n != "hybrid"), key=lambda n: -np.mean(rows[n]["mean"]))[:6]
    for name in ["hybrid", *singles]:
        mean, std = np.asarray(rows[name]["mean"]), np.asarray(rows[name]["std"])
        style = dict(lw=2.5, color="black") if name == "hybrid" else dict(lw=1.2, ls="--")
        ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=name, **style)
    ax.axhline(0.74, color="grey", lw=0.8, ls=":", label="AZ-NAS, all 15,625 archs (0.74)")
    ax.set_xlabel("K labelled archs")
    ax.set_ylabel("Kendall tau on the held-out archs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        data = json.loads(Path(args.json or REPO / "bench" / "results" / f"calibration_nb201_{args.label}.json").read_text())
        ks = data["ks"]
        rows = {n: {"mean": [data["per_k"][str(k)]["summary"][n]["kendall_tau_mean"] for k in ks],
                    "std": [data["per_k"][str(k)]["summary"][n]["kendall_tau_std"] for k in ks]}
                for n in ["hybrid", *data["signals"]]}
        plot(Path(data["plot"]), rows, ks, f"NB201 CIFAR-10, pool {data['pool']} archs: hybrid vs single signals "
                                           f"({args.label}); mean +- std over {data['repeats']} draws")
        return data
    from nb201_ranking import load_zero_cost

    from bertnas.analysis.calibration import (RANKERS, HybridRanker, bootstrap_metrics, choose_covering_archs,
                                              compare_rankers, feature_table)
    from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space

    started = time.time()
    naslib = load_zero_cost(Path(args.zero_cost))
    pool = sorted(naslib)
    signals: dict = {}
    if not args.no_naslib:
        names = sorted({k for v in naslib.values() for k in v if k not in EXCLUDED})
        for name in names:
            signals[f"naslib:{name}"] = {a: naslib[a][name] for a in pool}
    if args.ours:
        ours = json.loads(Path(args.ours_values).read_text())["values"]
        pool = [a for a in pool if a in ours]
        for name in next(iter(ours.values())):
            signals[f"ours:{name}"] = {a: ours[a][name] for a in pool}
    if args.scores:
        scores, higher = load_scores(args.scores, args.scores_variant)
        if higher is not None and higher == args.scores_lower_is_better:
            raise SystemExit(f"{args.scores} says {args.scores_variant}'s scores are "
                             f"{'higher' if higher else 'lower'}-is-better; "
                             f"{'drop' if higher else 'pass'} --scores-lower-is-better")
        pool = [a for a in pool if a in scores]
        sign = -1.0 if args.scores_lower_is_better else 1.0
        signals["supernet"] = {a: sign * scores[a] for a in pool}
    bench = Nb201Benchmark()
    truth = {a: bench.accuracy(a, "cifar10") for a in pool}
    space = Nb201Space()
    arch_of = {a: space.arch(a) for a in pool}
    size = {a: float(space.params(arch_of[a])) for a in pool}
    score_for_strata = signals.get("supernet", {})

    per_k: dict = {}
    for k in args.ks:
        runs = []
        for seed in range(args.repeats):
            chosen = choose_covering_archs(pool, score_for_strata, size, k, seed)
            chosen_set = set(chosen)
            rest = [a for a in pool if a not in chosen_set]
            y_train = np.asarray([truth[a] for a in chosen])
            y_test = np.asarray([truth[a] for a in rest])
            n_boot = args.bootstrap if seed == 0 else 0
            run = {"seed": seed, "labelled": chosen, "held_out": len(rest), "signals": {}}
            for name, values in signals.items():
                run["signals"][name] = bootstrap_metrics([values[a] for a in rest], y_test, n_boot, seed)
            feats, x_train = feature_table([arch_of[a] for a in chosen],
                                           {n: {arch_of[a]: v[a] for a in pool} for n, v in signals.items()}, space)
            _, x_test = feature_table([arch_of[a] for a in rest],
                                      {n: {arch_of[a]: v[a] for a in pool} for n, v in signals.items()}, space)
            cv = compare_rankers(x_train, y_train, tuple(RANKERS), seed, n_boot=0)
            best = max(cv, key=lambda m: cv[m]["kendall_tau"])
            run["ranker_cv"] = {m: cv[m]["kendall_tau"] for m in cv}
            run["ranker_held_out"] = {}
            for model in RANKERS:  # every model on the held-out archs: does CV pick well?
                ranker = HybridRanker(model, feats, x_train, y_train, space_id={}, seed=seed)
                run["ranker_held_out"][model] = bootstrap_metrics(ranker.predict(x_test.copy()), y_test, 0, seed)[
                    "kendall_tau"]
            ranker = HybridRanker(best, feats, x_train, y_train, space_id={}, seed=seed)
            run["hybrid"] = {**bootstrap_metrics(ranker.predict(x_test.copy()), y_test, n_boot, seed), "model": best}
            runs.append(run)
            print(f"K={k} seed={seed}: hybrid ({best}) tau {run['hybrid']['kendall_tau']:.3f}; best single "
                  f"{max(run['signals'].items(), key=lambda kv: kv[1]['kendall_tau'])[0]} "
                  f"{max(v['kendall_tau'] for v in run['signals'].values()):.3f}  ({time.time() - started:.0f} s)",
                  flush=True)
        names = ["hybrid", *signals]

        def taus(name, key="kendall_tau"):
            return [r["hybrid"][key] if name == "hybrid" else r["signals"][name][key] for r in runs]

        summary = {}
        for name in names:
            t, s = taus(name), taus(name, "spearman_rho")
            first = runs[0]["hybrid"] if name == "hybrid" else runs[0]["signals"][name]
            summary[name] = {"kendall_tau_mean": float(np.mean(t)), "kendall_tau_std": float(np.std(t)),
                             "spearman_rho_mean": float(np.mean(s)), "seed0": {k2: first[k2] for k2 in
                                                                              ("kendall_tau", "spearman_rho", "ci95")}}
        summary["hybrid"]["models_chosen"] = [r["hybrid"]["model"] for r in runs]
        summary["ranker_held_out_mean"] = {m: float(np.mean([r["ranker_held_out"][m] for r in runs])) for m in RANKERS}
        summary["ranker_cv_mean"] = {m: float(np.mean([r["ranker_cv"][m] for r in runs])) for m in RANKERS}
        per_k[str(k)] = {"summary": summary, "runs": runs}

    rows = {n: {"mean": [per_k[str(k)]["summary"][n]["kendall_tau_mean"] for k in args.ks],
                "std": [per_k[str(k)]["summary"][n]["kendall_tau_std"] for k in args.ks]}
            for n in ["hybrid", *signals]}
    label = args.label
    json_path = Path(args.json or REPO / "bench" / "results" / f"calibration_nb201_{label}.json")
    plot_path = Path(args.plot or REPO / "docs" / "img" / f"calibration_nb201_{label}.png")
    plot(plot_path, rows, args.ks, f"NB201 CIFAR-10, pool {len(pool)} archs: hybrid vs single signals ({label}); "
                                    f"mean +- std over {args.repeats} draws")
    out = {"label": label, "command": "OMP_NUM_THREADS=1 python bench/calibration_nb201.py " + " ".join(sys.argv[1:]),
           "pool": len(pool), "signals": list(signals), "ks": args.ks, "repeats": args.repeats,
           "truth": "NB201 CIFAR-10 test accuracy, 200 epochs (NATS-Bench tss)", "rankers": RANKERS,
           "python": platform.python_version(), "seconds": round(time.time() - started, 1), "per_k": per_k,
           "plot": str(plot_path)}
    json_path.write_text(portable_json(out, indent=1) + "\n")
    print(json.dumps({k: {n: round(v["kendall_tau_mean"], 3) for n, v in per_k[k]["summary"].items()
                          if isinstance(v, dict) and "kendall_tau_mean" in v} for k in per_k}, indent=1))
    return out


if __name__ == "__main__":
    main()
