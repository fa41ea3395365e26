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
import os
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


def run_one(name: str, out: Path, steps: int, seed: int) -> None:
    import torch

    from bertnas.strategies import run_strategy

    torch.set_num_threads(1)
    strategy, options = RUNS[name]
    folder = out / name
    started = time.perf_counter()
    run_strategy({**COMMON, "strategy": strategy, "strategy_options": options, "max_steps": steps, "seed": seed,
                  "output_dir": str(folder), "overwrite": True})
    (folder / "wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - started, "steps": steps,
                                                  "seed": seed}) + "\n")


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


def collect(out: Path, bench) -> list[dict]:
    """One row per run of the output folder `out` (one seed)."""
    from bertnas.spaces.nb201 import to_string
    from bertnas.strategies.plots import read_entropy

    rows = []
    for name in RUNS:
        folder = out / name
        if not (folder / "results.json").is_file():
            rows.append({"run": name, "missing": True, "out": str(out)})
            continue
        entry = found_arch(folder)
        wall = json.loads((folder / "wall.json").read_text()) if (folder / "wall.json").is_file() else {}
        _, entropy = read_entropy(folder / "log.jsonl")
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        step_s = sorted(line["step_time_s"] for line in log)[len(log) // 2] if log else None
        rows.append({
            "run": name, "out": str(out), "strategy": RUNS[name][0], "options": RUNS[name][1],
            "arch": to_string(entry["arch"]), "supernet_heldout_accuracy": entry.get("score"),
            "cifar10_test": bench.accuracy(entry["arch"], "cifar10"),
            "rank_cifar10": bench.rank(entry["arch"], "cifar10"),
            "wall_s": wall.get("wall_s"), "median_step_s": step_s, "steps": wall.get("steps"), "seed": wall.get("seed"),
            "entropy_start": entropy[0] if entropy else None, "entropy_end": entropy[-1] if entropy else None,
            "published_cifar10_test": PUBLISHED.get(name),
        })
    return rows


def md(arch_string: str) -> str:
    """An NB201 arch string inside a markdown table cell (its `|` escaped)."""
    return arch_string.replace("|", "\\|")


def report(outs: list[Path], json_path: Path | None, plot: Path | None) -> None:
    """The markdown table (one row per run and seed, then the mean per run), the JSON rows and
    the entropy plot of the first output folder."""
    from bertnas.spaces.nb201 import Nb201Benchmark
    from bertnas.strategies.plots import plot_entropy_runs

    bench = Nb201Benchmark()
    rows = [row for out in outs for row in collect(out, bench)]
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
    if len(outs) > 1:
        print("\n| run | mean NB201 CIFAR-10 test over seeds | seeds | published |\n|---|---|---|---|")
        for name in RUNS:
            done = [r for r in rows if r["run"] == name and not r.get("missing")]
            if done:
                mean = sum(r["cifar10_test"] for r in done) / len(done)
                pub = f"{PUBLISHED[name]:.2f}" if name in PUBLISHED else "-"
                print(f"| {name} | {mean:.2f} | {len(done)} | {pub} |")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"common": COMMON, "runs": rows}, indent=2) + "\n")
    if plot is not None:
        out = outs[0]
        curves = {label: out / name / "log.jsonl" for label, name in
                  (("DARTS", "darts"), ("GAEA-DARTS bilevel", "gaea-darts-bilevel"),
                   ("GAEA-DARTS ERM", "gaea-darts-erm"), ("GDAS", "gdas"), ("GAEA-GDAS", "gaea-gdas"))
                  if (out / name / "log.jsonl").is_file()}
        plot_entropy_runs(curves, plot, title="NB201 search: mean entropy of the architecture weights")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "all", "report"))
    p.add_argument("names", nargs="*", help=f"runs (default all): {', '.join(RUNS)}")
    p.add_argument("--out", type=Path, action="append",
                   help="output folder (default runs/nb201-strategies); report: repeat it, one per seed")
    p.add_argument("--steps", type=int, default=120, help="weight steps of every run (the shared budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--json", type=Path, help="report: write the rows here")
    p.add_argument("--plot", type=Path, help="report: the DARTS vs GAEA entropy plot")
    args = p.parse_args()
    unknown = [n for n in args.names if n not in RUNS]
    if unknown:
        p.error(f"unknown runs {unknown}; runs: {', '.join(RUNS)}")
    names = args.names or list(RUNS)
    outs = args.out or [Path("runs/nb201-strategies")]
    if args.command == "run":
        for name in names:
            run_one(name, outs[0], args.steps, args.seed)
    elif args.command == "all":
        run_all(names, outs[0], args.steps, args.seed, args.parallel)
    else:
        report(outs, args.json, args.plot)


if __name__ == "__main__":
    main()
