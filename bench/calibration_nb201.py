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
from calibration_common import held_out_evaluation, plot, tau_rows
from portable import portable_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
SHARED = REPO.parent / "shared" / "data"
EXCLUDED = ("val_accuracy",)  # trained, not zero-cost
AZ_NAS = (0.74, "AZ-NAS, all 15,625 archs (0.74)")


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


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        data = json.loads(Path(args.json or REPO / "bench" / "results" / f"calibration_nb201_{args.label}.json").read_text())
        ks = data["ks"]
        rows = tau_rows(data["per_k"], ks, ["hybrid", *data["signals"]])
        plot(Path(data["plot"]), rows, ks, f"NB201 CIFAR-10, pool {data['pool']} archs: hybrid vs single signals "
                                           f"({args.label}); mean +- std over {data['repeats']} draws", AZ_NAS)
        return data
    from nb201_ranking import load_zero_cost

    from bertnas.analysis.calibration import RANKERS
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

    per_k = held_out_evaluation(pool, signals, truth, arch_of, space, size, args.ks, args.repeats, args.bootstrap,
                                strata=score_for_strata, started=started, log=lambda line: print(line, flush=True))
    rows = tau_rows(per_k, args.ks, ["hybrid", *signals])
    label = args.label
    json_path = Path(args.json or REPO / "bench" / "results" / f"calibration_nb201_{label}.json")
    plot_path = Path(args.plot or REPO / "docs" / "img" / f"calibration_nb201_{label}.png")
    plot(plot_path, rows, args.ks, f"NB201 CIFAR-10, pool {len(pool)} archs: hybrid vs single signals ({label}); "
                                    f"mean +- std over {args.repeats} draws", AZ_NAS)
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
