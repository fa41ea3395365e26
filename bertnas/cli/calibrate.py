"""`bertnas calibrate`: which signal ranks this space best, and a hybrid ranker for search.

    bertnas calibrate --checkpoint RUN --num-archs K --steps S --output-dir OUT [--truth FILE]
    bertnas search --checkpoint RUN --ranker OUT/ranker.json --output-dir SEARCH ...

K covering archs (stratified by supernet score and size, seeded) are trained stand-alone for S
steps each (cached and resumable under OUT/standalone/), or read from --truth (a JSON arch ->
value, a results list, or nb201:cifar10). Writes OUT/calibration.json (supernet, hybrid and one
entry per proxy: kendall_tau, spearman_rho, ci95; the verdict), OUT/ranker.json and
OUT/predictions.json; prints the verdict and a one-line JSON summary (docs/analysis.md).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bertnas.analysis.calibration import RANKERS
    from bertnas.analysis.zero_cost import PROXIES

    a = parser.add_argument
    a("--checkpoint", required=True, help="the supernet run (its latest checkpoint) or a checkpoint-<step> folder")
    a("--num-archs", type=int, required=True, help="K: archs labelled by stand-alone training (or --truth)")
    a("--steps", type=int, default=200, help="S: training steps of each stand-alone arch")
    a("--output-dir", required=True, help="OUT: calibration.json, ranker.json, predictions.json, standalone/")
    a("--truth", help="stand-alone truth instead of training (JSON arch -> value, a results list, nb201:cifar10)")
    a("--pool", type=int, default=1000, help="archs the ranker predicts (the whole space when smaller)")
    a("--proxies", default=",".join(PROXIES), help="zero-cost proxies, comma-separated")
    a("--proxy-batch-size", type=int, default=16, help="items of the one batch the proxies see")
    a("--rankers", default=",".join(RANKERS), help="hybrid models compared by cross-validation")
    a("--eval-batches", type=int, help="held-out batches per score (default: the run's)")
    a("--data", help="held-out data instead of the run's")
    a("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95 %% intervals")
    a("--seed", type=int, default=0)
    a("--workers", type=int, default=1, help="stand-alone trainings at once (separate processes sharing the cores)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertnas.cli import result_stream
    from bertnas.core.errors import UserError
    from bertnas.pipelines.calibrate import calibrate

    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}", "pass --workers 1 or more")
    if not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist", "give a pre-training --output-dir")
    report = calibrate(args.checkpoint, args.num_archs, args.steps, args.output_dir, truth=args.truth, pool=args.pool,
                       seed=args.seed, proxies=[p for p in args.proxies.split(",") if p],
                       proxy_batch_size=args.proxy_batch_size, eval_batches=args.eval_batches, data=args.data,
                       rankers=[r for r in args.rankers.split(",") if r], n_boot=args.bootstrap,
                       workers=args.workers)
    out = result_stream(args)
    print(report["verdict"]["text"], file=out)
    summary = {k: {"kendall_tau": v["kendall_tau"], "ci95": v["ci95"]["kendall_tau"]}
               for k, v in report.items() if isinstance(v, dict) and "ci95" in v}
    print(json.dumps({"output_dir": str(args.output_dir), "use": report["verdict"]["use"], **summary}), file=out)
    return 0


__all__ = ["add_arguments", "run"]
