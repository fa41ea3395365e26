"""Calibration on real truth: the toy BERT benchmark, K labelled archs, evaluated on the rest.

The truth is bench/toy_nas_benchmark.py's own, made by its own code (`Bench`): `--truth-archs`
N archs of the toy space (a seeded distinct sample, `--arch-seed`), each trained alone for
`--truth-steps` steps and scored by its held-out MLM loss (lower is better). Every run is cached
under `--output-dir` in the benchmark's layout (`truth-s0/<arch>/scores.json`), so an
interrupted run trains only the archs left; `--workers` trains that many at once.

Signals on all N archs (each oriented "higher is better"):
- `supernet:<variant>`: minus the held-out loss with inherited weights of the benchmark's
  supernets (`--variants`, default SPOS and MAGIC-T k = 1; `--supernet-steps`; the mean over
  `--seeds`); a supernet folder of the benchmark already in `--output-dir` is read, not retrained;
- `zc:<proxy>`: the package's zero-cost proxies (`bertnas.pipelines.calibrate.proxy_scores`:
  a freshly initialised, seeded supernet, one masked held-out batch of `--proxy-batch-size`
  rows, the MLM loss), `zc:params` / `zc:flops` among them;
- `count:<op>`: how many layers of the arch are that op (more is better, as counted).

For each K (`--ks`, default 10 20) and `--repeats` seeds of the draw: bench/calibration_common.py
(the held-out evaluation of bench/calibration_nb201.py) picks K archs stratified by the supernet
score (`--strata`) and size, judges every single signal on the N - K others, and the hybrid
(`compare_rankers` by 5-fold CV on the K, the best fitted on all K; columns: the supernet and
proxy signals, plus the op counts and one-hot encoding of the arch). Percentile bootstrap 95 %
intervals on the held-out archs (seed 0) and the spread over the draws.

Options not listed by --help are bench/toy_nas_benchmark.py's (space, model, training,
scoring: --data, --layers, --candidates, --hidden, --lr, --truth-steps, ...), with these
defaults: --truth-archs 40 --truth-steps 1500 --supernet-steps 1000 --seeds 1
--variants spos,magic-t1 --noise-archs 0 --output-dir runs/calibration_toy. `--noise-archs M`
trains the first M truth archs again with seed 1: the truth's own noise floor.

    OMP_NUM_THREADS=1 python bench/calibration_toy.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules, also when imported by a test
import toy_nas_benchmark as toy
from calibration_common import held_out_evaluation, plot, tau_rows
from portable import portable_json

REPO = Path(__file__).resolve().parents[1]
TOY_DEFAULTS = ["--truth-archs", "40", "--truth-steps", "1500", "--supernet-steps", "1000", "--seeds", "1",
                "--variants", "spos,magic-t1", "--noise-archs", "0", "--output-dir", "runs/calibration_toy"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False,
                                epilog="Every other option is bench/toy_nas_benchmark.py's (see its --help); "
                                       "defaults here: " + " ".join(TOY_DEFAULTS))
    p.add_argument("--ks", type=int, nargs="+", default=[10, 20], help="labelled archs per draw")
    p.add_argument("--repeats", type=int, default=5, help="seeds of the draw of the K archs")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (seed 0 of the draw)")
    p.add_argument("--workers", type=int, default=1, help="stand-alone trainings at once (processes)")
    p.add_argument("--proxy-batch-size", type=int, default=16)
    p.add_argument("--proxy-seed", type=int, default=0)
    p.add_argument("--strata", help="the supernet variant the draw is stratified by (default: the first of --variants)")
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "calibration_toy.json"))
    p.add_argument("--plot", default=str(REPO / "docs" / "img" / "calibration_toy.png"), help="'' for none")
    args, rest = p.parse_known_args(argv)
    bench_args = toy.parse_args(TOY_DEFAULTS + rest)
    args.strata = args.strata or bench_args.variants[0]
    if args.strata not in bench_args.variants:
        p.error(f"--strata {args.strata} is not one of --variants {','.join(bench_args.variants)}")
    n = len(bench_args.candidates) ** bench_args.layers if bench_args.truth_archs <= 0 else bench_args.truth_archs
    if max(args.ks) > n - 2:
        p.error(f"K = {max(args.ks)} leaves fewer than 2 of the {n} truth archs held out; raise --truth-archs")
    return args, bench_args


def proxy_task(bench):
    """An MLM task on the benchmark's data, tokenizer and supernet config (not trained): what
    `proxy_scores` needs (its space, model class and held-out batches)."""
    from bertnas.pipelines.pretrain import build_task
    from bertnas.train.config import load_config

    cfg = load_config(bench._config(bench.out / "proxy-task", 0, 1))
    task = build_task(cfg)
    task.setup(cfg)
    return task


def proxies(bench, task, archs, batch_size: int, seed: int) -> dict:
    """{arch name: {proxy: value}}, cached in the output folder per setting (missing archs only:
    every arch is scored alone on the same seeded weights and batch)."""
    from bertnas.analysis.zero_cost import PROXIES
    from bertnas.pipelines.calibrate import proxy_scores

    path = bench.out / f"proxies-b{batch_size}-s{seed}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    missing = [a for a in archs if toy.arch_name(a) not in cached or set(cached[toy.arch_name(a)]) != set(PROXIES)]
    if missing:
        by_arch = {task.space.arch(list(a)): a for a in missing}
        values = proxy_scores(task, list(by_arch), PROXIES, batch_size, seed)
        for arch, a in by_arch.items():
            cached[toy.arch_name(a)] = {p: float(values[p][arch]) for p in PROXIES}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(cached, indent=1) + "\n")
        os.replace(tmp, path)
    return {toy.arch_name(a): cached[toy.arch_name(a)] for a in archs}


def main(argv=None) -> dict:
    args, bench_args = parse_args(argv)
    toy.quiet(bench_args.threads)
    import numpy as np
    import torch

    from bertnas.analysis.calibration import RANKERS, bootstrap_metrics
    from bertnas.storage.strict_json import finite_or_none

    started = time.time()
    load_before = os.getloadavg()

    def log(line):
        print(f"{line}  ({time.time() - started:.0f} s)", flush=True)

    bench = toy.Bench(bench_args)
    archs = bench.truth_archs()
    names = [toy.arch_name(a) for a in archs]
    done = [0]

    def progress(arch):
        done[0] += 1
        log(f"truth {done[0]}/{len(todo)}: {toy.arch_name(arch)}")

    todo = [a for a in archs if not (bench.out / "truth-s0" / toy.arch_name(a) / "scores.json").is_file()]
    log(f"{len(archs)} truth archs, {len(archs) - len(todo)} cached, {len(todo)} to train "
        f"({bench_args.truth_steps} steps, {args.workers} worker(s))")
    runs = {"truth": toy.truth_many(bench, archs, 0, args.workers, progress)}
    truth_loss = {toy.arch_name(a): r["scores"][toy.arch_name(a)] for a, r in runs["truth"].items()}
    noise = None
    if bench_args.noise_archs > 0:
        again = archs[:min(bench_args.noise_archs, len(archs))]
        done[0], todo = 0, [a for a in again if not (bench.out / "truth-s1" / toy.arch_name(a) / "scores.json").is_file()]
        runs["truth_seed1"] = toy.truth_many(bench, again, 1, args.workers, progress)
        seed1 = {toy.arch_name(a): r["scores"][toy.arch_name(a)] for a, r in runs["truth_seed1"].items()}
        m = bootstrap_metrics([-seed1[n] for n in seed1], [-truth_loss[n] for n in seed1], args.bootstrap, 0)
        noise = {"n": len(seed1), "seed1": seed1, "kendall_tau": m["kendall_tau"], "spearman_rho": m["spearman_rho"],
                 "ci95": m["ci95"]}

    signals: dict = {}
    supernet_loss: dict = {}
    for variant in bench_args.variants:
        per_seed = []
        for seed in range(bench_args.seeds):
            log(f"supernet {variant} seed {seed} ({bench_args.supernet_steps} steps, or its cache)")
            r = bench.supernet(variant, seed, archs)
            missing = sorted(set(names) - set(r["scores"]))
            if missing:
                raise SystemExit(f"{bench.out / f'{variant}-s{seed}'} scored other archs (not {missing[0]}, ...): "
                                 "its weights are gone; pass another --output-dir")
            runs[f"{variant}-s{seed}"] = r
            per_seed.append(r["scores"])
        supernet_loss[variant] = {str(s): {n: per_seed[s][n] for n in names} for s in range(len(per_seed))}
        signals[f"supernet:{variant}"] = {n: -float(np.mean([p[n] for p in per_seed])) for n in names}
    fingerprints = {r.get("heldout_fingerprint") for key, r in runs.items() if not key.startswith("truth")}
    for key in ("truth", "truth_seed1"):
        fingerprints |= {r.get("heldout_fingerprint") for r in runs.get(key, {}).values()}
    if len(fingerprints) != 1:
        raise SystemExit(f"{bench.out} holds runs scored on different held-out batches; delete it and rerun")

    log(f"zero-cost proxies (batch {args.proxy_batch_size}, seed {args.proxy_seed})")
    task = proxy_task(bench)
    zc = proxies(bench, task, archs, args.proxy_batch_size, args.proxy_seed)
    for proxy in next(iter(zc.values())):
        signals[f"zc:{proxy}"] = {n: zc[n][proxy] for n in names}
    hybrid_signals = list(signals)  # the op counts are the hybrid's columns through the space
    for op in bench_args.candidates:
        signals[f"count:{op}"] = {n: float(sum(o == op for o in a)) for n, a in zip(names, archs)}

    space = task.space
    arch_of = {n: space.arch(list(a)) for n, a in zip(names, archs)}
    size = {n: float(bench.params(a)) for n, a in zip(names, archs)}
    truth = {n: -truth_loss[n] for n in names}
    log(f"held-out evaluation: K in {args.ks}, {args.repeats} draws, stratified by supernet:{args.strata}")
    per_k = held_out_evaluation(names, signals, truth, arch_of, space, size, args.ks, args.repeats, args.bootstrap,
                                strata=signals[f"supernet:{args.strata}"], hybrid_signals=hybrid_signals,
                                started=started, log=lambda line: print(line, flush=True))
    if args.plot:
        plot(Path(args.plot), tau_rows(per_k, args.ks, ["hybrid", *signals]), args.ks,
             f"toy BERT ({bench_args.layers} layers x {{{','.join(bench_args.candidates)}}}), {len(names)} archs "
             f"trained alone {bench_args.truth_steps} steps: hybrid vs single signals; mean +- std over "
             f"{args.repeats} draws", (noise["kendall_tau"], f"truth seed 0 vs 1 ({noise['n']} archs)")
             if noise else None)
    costs = {"truth_train_s": sum(r["train_s"] for r in runs["truth"].values()),
             "truth_train_s_per_arch": float(np.mean([r["train_s"] for r in runs["truth"].values()])),
             "supernet_train_s": {k: r["train_s"] for k, r in runs.items() if not k.startswith("truth")}}
    out = {
        "command": "OMP_NUM_THREADS=1 python bench/calibration_toy.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"ks": args.ks, "repeats": args.repeats, "bootstrap": args.bootstrap, "workers": args.workers,
                     "proxy_batch_size": args.proxy_batch_size, "proxy_seed": args.proxy_seed,
                     "strata": f"supernet:{args.strata}",
                     "benchmark": {k: v for k, v in vars(bench_args).items() if k not in ("json", "plot", "label")}},
        "truth": f"held-out MLM loss (lower is better) of each arch trained alone for {bench_args.truth_steps} steps "
                 "(bench/toy_nas_benchmark.py's truth, seed 0); every metric is against minus the loss",
        "pool": len(names), "space_size": len(bench.all_archs()), "signals": list(signals),
        "hybrid_columns": hybrid_signals + ["the op counts and one-hot encoding of the arch"], "ks": args.ks,
        "repeats": args.repeats, "rankers": RANKERS,
        "machine": {"cpus": os.cpu_count(), "threads": bench_args.threads, "load_before": load_before,
                    "load_after": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()},
        "wall_s": round(time.time() - started, 1), "costs_s": costs, "heldout_fingerprint": fingerprints.pop(),
        "noise_floor": noise, "truth_loss": truth_loss, "supernet_loss": supernet_loss, "zero_cost": zc,
        "per_k": per_k, "plot": args.plot or None,
    }
    # strict JSON: a tau that cannot be computed (a signal constant on the held-out archs) is null
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(portable_json(finite_or_none(out), indent=1, allow_nan=False) + "\n")
    for k in per_k:
        summary = per_k[k]["summary"]
        print(f"K={k}: " + ", ".join(f"{n} {summary[n]['kendall_tau_mean']:+.3f}" for n in ["hybrid", *signals]))
    return out


if __name__ == "__main__":
    main()
