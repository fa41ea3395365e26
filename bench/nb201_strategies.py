"""Real check of the search strategies on NAS-Bench-201: DARTS, GAEA-DARTS
(ERM and bilevel), GDAS, GAEA-GDAS, PC-DARTS and REINFORCE search the NB201 cell space on the
CIFAR-10 subset with the same budget (weight steps, batch size, data, seed) on a reduced
network; each found arch is looked up in the real NB201 table (200-epoch CIFAR-10 test
accuracy, mean over seeds) and set beside the published numbers.

    python bench/nb201_strategies.py all --out runs/nb201-strategies            # every run, 2 at a time
    python bench/nb201_strategies.py run darts --out runs/nb201-strategies      # one run
    python bench/nb201_strategies.py all --out runs/nb201-strategies-s1 --seed 1   # a second seed
    python bench/nb201_strategies.py report --out runs/nb201-strategies --out runs/nb201-strategies-s1 \
        --json bench/results/nb201_strategies.json --plot docs/img/nb201_entropy_darts_gaea.png

Each run is `bertnas.strategies.run_strategy` (what `bertnas search --space nb201 --strategy NAME`
runs) in its own process with OMP_NUM_THREADS=1; a finished run (its results.json exists) is
not run again. `report` prints the markdown table of docs/results.md (strategies section).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Published NB201 CIFAR-10 test accuracies of the found archs (Dong & Yang 2020; GAEA: Li et al. 2021).
PUBLISHED = {"darts": 54.30, "gdas": 93.61, "snas": 92.77, "pcdarts": 93.41, "gaea-darts-erm": 94.10}
OPTIMUM = 94.37

# Reduced network, the same for every run: C=8 channels (NB201: 16), 1 cell per stage (NB201: 5),
# BatchNorm without affine / running statistics (the DARTS search convention on NB201).
SPACE_OPTIONS = {"C": 8, "N": 1, "bn_affine": False, "bn_track_running_stats": False}
# The budget: weight steps x batch 32 on the 5k-image subset (its 5 % held out for scores).
COMMON = {"space": "nb201", "space_options": SPACE_OPTIONS, "batch_size": 32, "lr": 1e-3, "weight_decay": 3e-4,
          "warmup_steps": 10, "eval_batches": 8, "save_steps": 0, "progress": False}
# This budget is well under 1 % of the papers' 50 epochs, so every architecture step size is 10x
# its default: Adam on alpha 3e-3 (DARTS: 3e-4), GAEA's exponentiated-gradient eta 1.0 (0.1).
SOFTMAX_LR = {"arch_lr": 3e-3}
GAEA_LR = {"arch_lr": 1.0}
RUNS = {  # run name -> (strategy, strategy options)
    "darts": ("darts", SOFTMAX_LR),
    "gaea-darts-erm": ("gaea-darts", {**GAEA_LR, "bilevel": False}),
    "gaea-darts-bilevel": ("gaea-darts", {**GAEA_LR, "bilevel": True}),
    "gdas": ("gdas", SOFTMAX_LR),
    "gaea-gdas": ("gaea-gdas", GAEA_LR),
    "pcdarts": ("pcdarts", SOFTMAX_LR),
    "reinforce": ("reinforce", {"controller_lr": 0.05, "archs_per_step": 4}),
}


# NB201's reference search protocol for the single-path strategies (`--protocol reference`): the
# search network (C=16, N=5), the complete CIFAR-10 training set, and the weights' optimiser of
# NB201's GDAS config (AutoDL-Projects configs/nas-benchmark/algos/GDAS.config): SGD, Nesterov
# momentum 0.9, LR 0.025 cosine-decayed to 0.001, weight decay 5e-4, batch 64, gradient clip 5.
# NB201 trains the weights on its 25,000-image train half and the architecture on the 25,000-image
# valid half; here 2 % of the 50,000 images are held out for the final candidate scores and the
# rest split in halves (`arch_fraction` 0.5): 24,500 / 24,500. The strategies' own defaults are
# the papers' architecture settings (GDAS: Adam 3e-4, betas (0.5, 0.999), decay 1e-3, tau 10 -> 0.1;
# GAEA: exponentiated gradient, eta 0.1). The epochs are what a two-hour run on one core reaches.
FULL_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "vision" / "cifar10_jpeg" / "cifar10-jpeg.zip"
REFERENCE_SPACE = {"C": 16, "N": 5, "bn_affine": False, "bn_track_running_stats": False}
REFERENCE = {"space": "nb201", "space_options": REFERENCE_SPACE, "val_fraction": 0.02, "data_seed": 0,
             "batch_size": 64, "optimizer": "sgd", "lr": 0.025, "lr_min": 0.001, "lr_schedule": "cosine",
             "sgd_momentum": 0.9, "sgd_nesterov": True, "weight_decay": 5e-4, "warmup_steps": 0,
             "max_grad_norm": 5.0, "eval_batches": 16, "save_steps": 200, "keep_last": 1, "progress": False}
REFERENCE_RUNS = {"gdas": ("gdas", {}), "gaea-gdas": ("gaea-gdas", {})}
# `--protocol mixed`: the mixed-op strategies (every candidate of every edge runs each step, about
# five of a one-path step) under the same data, split and weight optimiser as `reference`, on a
# network small enough for tens of epochs in a two-hour run on one core: C=8, N=2 (the `time`
# command on an idle core: a DARTS step 0.61 s at batch 64; C=16, N=5: 3.1 s). `--channels` /
# `--cells` change it; a run's config.json records what it used. The architecture settings are the
# strategies' own defaults, the papers': DARTS / PC-DARTS Adam 3e-4, betas (0.5, 0.999), decay
# 1e-3 (PC-DARTS K = 4); GAEA eta 0.1; SNAS Adam 3e-4, tau 1 -> 0.03, single level.
MIXED_SPACE = {**REFERENCE_SPACE, "C": 8, "N": 2}
MIXED = {**REFERENCE, "space_options": MIXED_SPACE}
MIXED_RUNS = {"darts": ("darts", {}), "gaea-darts-erm": ("gaea-darts", {"bilevel": False}),
              "pcdarts": ("pcdarts", {}), "snas": ("snas", {})}
PROTOCOLS = {"reduced": (COMMON, RUNS), "reference": (REFERENCE, REFERENCE_RUNS), "mixed": (MIXED, MIXED_RUNS)}
RESUMABLE = ("reference", "mixed")  # full-data protocols: resumable, sized by --epochs


def epoch_steps(epochs: float, data: str, common: dict) -> int:
    """Weight steps of `epochs` passes over a full-data protocol's weight rows (half of what
    `val_fraction` leaves, in batches of `batch_size`)."""
    from bertnas.tasks.vision import load_images

    weight_rows = round(len(load_images(data).labels) * (1 - common["val_fraction"]) * 0.5)
    return math.ceil(epochs * weight_rows / common["batch_size"])


def run_one(name: str, out: Path, steps: int, seed: int, protocol: str = "reduced", data: str | None = None,
            epochs: float = 0.0, space_options: dict | None = None) -> None:
    """One run; `reference` and `mixed` runs resume from their latest checkpoint and skip when
    finished. `space_options` override the protocol's network (C, N)."""
    import torch

    from bertnas.pipelines.strategy import run_strategy

    torch.set_num_threads(1)
    common, runs = PROTOCOLS[protocol]
    if space_options:
        common = {**common, "space_options": {**common["space_options"], **space_options}}
    strategy, options = runs[name]
    folder = out / name
    extra: dict = {"overwrite": True}
    if protocol in RESUMABLE:
        if (folder / "results.json").is_file():
            return
        data = data or str(FULL_CIFAR10)
        steps = epoch_steps(epochs, data, common) if epochs else steps
        resume = folder.is_dir() and any(folder.glob("checkpoint-*"))
        extra = {"data": data, "overwrite": not resume, "resume_from_checkpoint": "latest" if resume else None}
    wall = folder / "wall.json"
    before = json.loads(wall.read_text()) if wall.is_file() else {"wall_s": 0.0, "sessions": 0}
    started = time.perf_counter()
    run_strategy({**common, "strategy": strategy, "strategy_options": options, "max_steps": steps, "seed": seed,
                  "output_dir": str(folder), **extra})
    # wall time summed over every process that ran it (a resumed run adds to it)
    wall.write_text(json.dumps({"wall_s": before["wall_s"] + time.perf_counter() - started, "steps": steps,
                                "seed": seed, "protocol": protocol, "epochs": epochs or None,
                                "sessions": before.get("sessions", 0) + 1, "load_after": os.getloadavg()}) + "\n")


def time_steps(name: str, steps: int, protocol: str, data: str | None = None,
               space_options: dict | None = None) -> dict:
    """Median step time of `steps` steps of run `name` (the first 4 are warm-up and not counted),
    in a scratch folder: how a network size was chosen for a protocol (`time` command)."""
    import shutil
    import tempfile

    import torch

    from bertnas.pipelines.strategy import run_strategy

    torch.set_num_threads(1)
    common, runs = PROTOCOLS[protocol]
    network = {**common["space_options"], **(space_options or {})}
    strategy, options = runs[name]
    scratch = tempfile.mkdtemp(prefix="nb201_time_")
    extra = {"data": data or str(FULL_CIFAR10)} if protocol in RESUMABLE else {}
    try:
        run_strategy({**common, "space_options": network, "strategy": strategy, "strategy_options": options,
                      "max_steps": steps, "seed": 0, "output_dir": scratch, "overwrite": True, "save_steps": 0,
                      "eval_batches": 1, "logging_steps": 1, **extra})
        log = [json.loads(line) for line in Path(scratch, "log.jsonl").read_text().splitlines() if line.strip()]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timed = [line["step_time_s"] for line in log if "step_time_s" in line][4:]
    if not timed:
        raise SystemExit(f"time: {steps} steps leave none after the 4 warm-up steps; pass --steps 10 or more")
    return {"run": name, "C": network["C"], "N": network["N"], "steps_timed": len(timed),
            "median_step_s": round(statistics.median(timed), 3), "load": [round(x, 2) for x in os.getloadavg()]}


def run_all(names: list[str], out: Path, steps: int, seed: int, parallel: int) -> None:
    """Each run in its own process (OMP_NUM_THREADS=1), `parallel` at a time; finished runs skipped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    todo = [n for n in names if not (out / n / "results.json").is_file()]
    running: list[tuple[str, subprocess.Popen]] = []
    out.mkdir(parents=True, exist_ok=True)
    while todo or running:
        while todo and len(running) < parallel:
            name = todo.pop(0)
            log = open(out / f"{name}.stderr", "w")
            cmd = [sys.executable, __file__, "run", name, "--out", str(out), "--steps", str(steps), "--seed", str(seed)]
            running.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
            print(f"started {name}", flush=True)
        time.sleep(5)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                print(f"finished {name}: exit {proc.returncode}", flush=True)


def found_arch(folder: Path) -> dict:
    """The strategy's derived arch (search.json "derived") with its results.json entry."""
    derived = json.loads((folder / "search.json").read_text())["derived"]
    entries = json.loads((folder / "results.json").read_text())
    return next((e for e in entries if e["arch"] == derived), {"arch": derived, "score": None})


def collect(out: Path, bench, runs: dict = RUNS) -> list[dict]:
    """One row per run of the output folder `out` (one seed)."""
    from bertnas.spaces.nb201 import to_string
    from bertnas.strategies.plots import read_entropy

    rows = []
    for name in runs:
        folder = out / name
        if not (folder / "results.json").is_file():
            rows.append({"run": name, "missing": True, "out": str(out)})
            continue
        entry = found_arch(folder)
        wall = json.loads((folder / "wall.json").read_text()) if (folder / "wall.json").is_file() else {}
        _, entropy = read_entropy(folder / "log.jsonl")
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        step_s = sorted(line["step_time_s"] for line in log)[len(log) // 2] if log else None
        network = json.loads((folder / "config.json").read_text())["space_options"]
        rows.append({
            "run": name, "out": str(out), "strategy": runs[name][0], "options": runs[name][1],
            "arch": to_string(entry["arch"]), "supernet_heldout_accuracy": entry.get("score"),
            "cifar10_test": bench.accuracy(entry["arch"], "cifar10"),
            "rank_cifar10": bench.rank(entry["arch"], "cifar10"),
            "wall_s": wall.get("wall_s"), "median_step_s": step_s, "steps": wall.get("steps"), "seed": wall.get("seed"),
            "epochs": wall.get("epochs"), "channels": network["C"], "cells": network["N"],
            "train_step_time_s": sum(line.get("step_time_s", 0.0) for line in log),
            "entropy_start": entropy[0] if entropy else None, "entropy_end": entropy[-1] if entropy else None,
            "published_cifar10_test": PUBLISHED.get(name),
        })
    return rows


def md(arch_string: str) -> str:
    """An NB201 arch string inside a markdown table cell (its `|` escaped)."""
    return arch_string.replace("|", "\\|")


def report(outs: list[Path], json_path: Path | None, plot: Path | None, protocol: str = "reduced") -> None:
    """The markdown table (one row per run and seed, then the mean per run), the JSON rows and
    the entropy plot (one curve per run and seed)."""
    from bertnas.spaces.nb201 import Nb201Benchmark
    from bertnas.strategies.plots import plot_entropy_runs

    common, runs = PROTOCOLS[protocol]
    bench = Nb201Benchmark()
    rows = [row for out in outs for row in collect(out, bench, runs)]
    print("| run | seed | found arch | NB201 CIFAR-10 test (rank of 15,625) | published | supernet held-out acc | "
          "entropy start -> end | wall (s) | median step (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("missing"):
            print(f"| {r['run']} | | not run ({r['out']}) | | | | | | |")
            continue
        pub = f"{r['published_cifar10_test']:.2f}" if r["published_cifar10_test"] is not None else "-"
        ent = (f"{r['entropy_start']:.3f} -> {r['entropy_end']:.3f}" if r["entropy_end"] is not None else "-")
        score = r["supernet_heldout_accuracy"]
        score = "-" if score is None else f"{score:.3f}"
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "-"
        print(f"| {r['run']} | {r['seed']} | `{md(r['arch'])}` | {r['cifar10_test']:.2f} ({r['rank_cifar10']}) | {pub} | "
              f"{score} | {ent} | {wall} | {r['median_step_s']:.2f} |")
    best_arch, best_acc = bench.best("cifar10")
    print(f"| optimum | | `{md(best_arch)}` | {best_acc:.2f} (1) | {OPTIMUM:.2f} | | | | |")
    accs = sorted(r["cifar10"] for r in bench.rows)
    print(f"\nA uniformly random arch: mean {sum(accs) / len(accs):.2f}, median {accs[len(accs) // 2]:.2f} "
          f"(NB201 CIFAR-10 test, all {len(accs)} archs).")
    methods = {}  # per run name: the seeds' mean +- std (population std, as NB201 reports)
    for name in runs:
        done = [r for r in rows if r["run"] == name and not r.get("missing")]
        if done:
            accs = [r["cifar10_test"] for r in done]
            networks = {(r["channels"], r["cells"]) for r in done}
            if len(networks) > 1:
                raise SystemExit(f"{name}: the --out folders hold runs of different networks (C, N) "
                                 f"{sorted(networks)}; report one network at a time")
            (channels, cells), = networks
            methods[name] = {"protocol": protocol, "channels": channels, "cells": cells,
                             "epochs": [r.get("epochs") for r in done],
                             "steps": [r.get("steps") for r in done], "mean": statistics.fmean(accs),
                             "std": statistics.pstdev(accs), "n": len(accs), "published": PUBLISHED.get(name),
                             "runs": [{"seed": r["seed"], "arch": r["arch"], "accuracy": r["cifar10_test"],
                                       "rank": r["rank_cifar10"]} for r in done]}
    if len(outs) > 1:
        print("\n| run | NB201 CIFAR-10 test over seeds (mean +- std) | seeds | published |\n|---|---|---|---|")
        for name, m in methods.items():
            pub = f"{m['published']:.2f}" if m["published"] is not None else "-"
            print(f"| {name} | {m['mean']:.2f} +- {m['std']:.2f} | {m['n']} | {pub} |")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"protocol": protocol, "common": common, "methods": methods, "runs": rows},
                                        indent=2) + "\n")
    if plot is not None:  # every run with architecture weights, each seed its own curve
        labels = {"darts": "DARTS", "gaea-darts-bilevel": "GAEA-DARTS bilevel", "gaea-darts-erm": "GAEA-DARTS ERM",
                  "gdas": "GDAS", "gaea-gdas": "GAEA-GDAS", "pcdarts": "PC-DARTS", "snas": "SNAS"}
        order = list(labels)
        curves = {labels[r["run"]] + (f", seed {r['seed']}" if len(outs) > 1 else ""):
                  Path(r["out"]) / r["run"] / "log.jsonl"
                  for r in sorted((r for r in rows if not r.get("missing") and r["run"] in labels),
                                  key=lambda r: (order.index(r["run"]), r["seed"] or 0))}
        plot_entropy_runs(curves, plot, title="NB201 search: mean entropy of the architecture weights")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "all", "report", "time"),
                   help="time: the median step time of a few steps of each run (--steps), nothing kept")
    p.add_argument("names", nargs="*", help=f"runs (default all): {', '.join(RUNS)}")
    p.add_argument("--out", type=Path, action="append",
                   help="output folder (default runs/nb201-strategies); report: repeat it, one per seed")
    p.add_argument("--steps", type=int, default=120, help="weight steps of every run (the shared budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--json", type=Path, help="report: write the rows here")
    p.add_argument("--plot", type=Path, help="report: the DARTS vs GAEA entropy plot")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="reduced",
                   help="reduced: C=8, N=1 on the 5k subset (every run); reference: NB201's C=16, N=5 search "
                        "network on all of CIFAR-10 with its SGD schedule (gdas, gaea-gdas; resumable); mixed: "
                        "the same data and schedule for the mixed-op strategies (darts, gaea-darts-erm, pcdarts, "
                        f"snas) on a smaller network (default C={MIXED_SPACE['C']}, N={MIXED_SPACE['N']}; resumable)")
    p.add_argument("--epochs", type=float, default=0.0,
                   help="reference / mixed: epochs over the weight rows (not --steps)")
    p.add_argument("--channels", type=int, default=None, help="mixed: the network's C (channels of the first stage)")
    p.add_argument("--cells", type=int, default=None, help="mixed: the network's N (cells per stage)")
    p.add_argument("--data", default=None,
                   help=f"reference / mixed: the CIFAR-10 zip or folder (default {FULL_CIFAR10})")
    args = p.parse_args(argv)
    runs = PROTOCOLS[args.protocol][1]
    unknown = [n for n in args.names if n not in runs]
    if unknown:
        p.error(f"unknown runs {unknown} for --protocol {args.protocol}; its runs: {', '.join(runs)}")
    if args.protocol in RESUMABLE and args.command == "all":
        p.error(f"{args.protocol} runs take hours each: start them one by one with `run NAME`")
    if (args.channels or args.cells) and (args.protocol != "mixed" or args.command not in ("run", "time")):
        p.error("--channels / --cells size the network of `run` / `time` under --protocol mixed only")
    network = {k: v for k, v in (("C", args.channels), ("N", args.cells)) if v}
    names = args.names or list(runs)
    outs = args.out or [Path("runs/nb201-strategies")]
    if args.command == "run":
        for name in names:
            run_one(name, outs[0], args.steps, args.seed, args.protocol, args.data, args.epochs, network)
    elif args.command == "all":
        run_all(names, outs[0], args.steps, args.seed, args.parallel)
    elif args.command == "time":
        for name in names:
            print(json.dumps(time_steps(name, args.steps, args.protocol, args.data, network)), flush=True)
    else:
        report(outs, args.json, args.plot, args.protocol)


if __name__ == "__main__":
    main()
