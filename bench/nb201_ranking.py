"""NAS-Bench-201: do weight-sharing supernets rank cells like the real 200-epoch CIFAR-10 table,
and do they beat the free zero-cost proxies?

1. Trains NB201 supernets on the CIFAR-10 subset (../shared/data/vision/cifar10_subset) with the
   package's trainer (`bertnas pretrain --space nb201`): SPOS (uniform), MAGIC-T (walk, k = 1),
   MAGIC-A (uniform + alignment); reduced network (`--channels`, `--cells`), `--steps` each.
2. Scores archs with inherited weights through the task's evaluator (`bertnas search`'s): BatchNorm
   statistics recomputed per arch on fixed training batches, then held-out cross-entropy (finer
   than accuracy on a few hundred images; `--metric accuracy` for accuracy). The archs are those of
   the NASLib zero-cost file (724 on CIFAR-10; `--num-archs` takes the first N), so supernets and
   proxies are compared on the same archs.
3. Truth: the real CIFAR-10 test accuracy after 200 epochs (`Nb201Benchmark`, NATS-Bench tss).
4. Baselines: the 12 zero-cost proxies of `zc_nasbench201.json` (NASLib's NAS-Bench-Suite-Zero:
   synflow, nwot, snip, ..., params, flops), each correlated with the same truth on the same archs.

Every supernet run and its scores are cached under `--output-dir`; a rerun skips them. Writes
`--json` and `--plot`.

    python bench/nb201_ranking.py                                   # C=8, N=1, 600 steps
    python bench/nb201_ranking.py --channels 4 --steps 300 --num-archs 500 --label reduced
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import textwrap
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/portable.py, also when imported by a test
from portable import portable_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
DEFAULT_ZC = SHARED / "nasbench" / "naslib" / "zc_nasbench201.json"

VARIANTS = {
    "spos": dict(sampler="uniform", align=False),
    "magic-t": dict(sampler="walk", walk_k=1, align=False),
    "magic-a": dict(sampler="uniform", align=True),
    "magic-t+a": dict(sampler="walk", walk_k=1, align=True),
    "fair": dict(sampler="fair", align=False),
    "deiso": dict(sampler="deiso", align=False),
    # few-shot NAS: the --split-parent variant's final supernet split on --split-choice, one child
    # per candidate trained --split-epochs more (bertnas/pipelines/fewshot.py)
    "few-shot": None,
    # few-shot's equal-budget control: the same parent trained on, unsplit, for as many steps as
    # all the few-shot children together (the same warm start, sampler and schedule shape)
    "continued": None,
}
FULL_CIFAR10 = SHARED / "vision" / "cifar10_jpeg" / "cifar10-jpeg.zip"
# NASLib's NB201 encoding: op index -> NB201 op, edges (from, to) in index order
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))
NOT_PROXIES = ("idx", "arch", "val_accuracy")
# Published reference points (docs/results.md gives the sources)
ANCHORS = {"MAGIC paper BERT space: SPOS": 0.36, "MAGIC-T": 0.49, "MAGIC-T+A": 0.57,
           "well-trained NB201 SPOS / RS-WS": 0.70}


def naslib_to_string(indices) -> str:
    """NASLib op indices '(0, 2, 3, 2, 3, 1)' -> the NB201 string `|a~0|+|b~0|c~1|+|d~0|e~1|f~2|`."""
    ops = {edge: NASLIB_OPS[int(i)] for edge, i in zip(NASLIB_EDGES, indices)}
    by_target = sorted(ops, key=lambda e: (e[1], e[0]))
    nodes: dict[int, list[str]] = {}
    for src, dst in by_target:
        nodes.setdefault(dst, []).append(f"{ops[(src, dst)]}~{src - 1}")
    return "+".join("|" + "|".join(nodes[d]) + "|" for d in sorted(nodes))


def load_zero_cost(path: Path, dataset: str = "cifar10") -> dict:
    """arch string -> {proxy: score} (plus NASLib's own `val_accuracy`) from the NASLib zc file."""
    if not path.is_file():
        raise FileNotFoundError(f"zero-cost file {path} does not exist; pass --zero-cost PATH")
    raw = json.loads(path.read_text())[dataset]
    out = {}
    for key, entry in raw.items():
        indices = [int(x) for x in key.strip("()").split(",")]
        scores = {name: float(v["score"]) for name, v in entry.items() if isinstance(v, dict) and "score" in v}
        scores["val_accuracy"] = float(entry["val_accuracy"])
        out[naslib_to_string(indices)] = scores
    return out


def finite_ranks(values: dict) -> tuple[dict, int]:
    """Proxy scores with -inf / +inf (e.g. nwot on a cell whose output is cut off) moved just below /
    above every finite score, tied among themselves: the proxy's own verdict, kept in the ranking.
    NaN scores are dropped. Returns (values, how many were infinite)."""
    import math

    finite = [v for v in values.values() if math.isfinite(v)]
    low, high = min(finite) - 1.0, max(finite) + 1.0
    out, infinite = {}, 0
    for arch, v in values.items():
        if math.isnan(v):
            continue
        if math.isinf(v):
            infinite += 1
            v = high if v > 0 else low
        out[arch] = v
    return out, infinite


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("BERTNAS_NB201_DATA", str(DEFAULT_DATA)))
    p.add_argument("--zero-cost", default=str(DEFAULT_ZC))
    p.add_argument("--output-dir", default="runs/nb201_ranking")
    p.add_argument("--json", default="bench/results/nb201_ranking.json")
    p.add_argument("--plot", default="docs/img/nb201_ranking.png")
    p.add_argument("--label", default="default")
    p.add_argument("--variants", default="spos,magic-t,magic-a", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--channels", type=int, default=8, help="NB201 C (the benchmark's networks: 16)")
    p.add_argument("--cells", type=int, default=1, help="NB201 N, cells per stage (the benchmark's: 5)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metric", default="cross_entropy", choices=("cross_entropy", "accuracy"))
    p.add_argument("--eval-batches", type=int, default=4, help="held-out batches of --batch-size per arch")
    p.add_argument("--calibration-batches", type=int, default=2)
    p.add_argument("--num-archs", type=int, default=0, help="score the first N archs of the zero-cost file (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training images held out for scoring (NB201's search split: 0.5)")
    p.add_argument("--epochs", type=float, default=0.0,
                   help="train for this many epochs of the training rows instead of --steps")
    p.add_argument("--sample-archs", type=int, default=0,
                   help="also score N archs drawn from all 15,625 by --sample-seed (the same for every variant)")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint interval: an interrupted run resumes")
    p.add_argument("--train-only", action="store_true", help="train the supernets (resumable), score nothing")
    p.add_argument("--score-only", action="store_true",
                   help="score each variant's latest checkpoint as it is (a run stopped before --steps)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of every 95%% interval")
    p.add_argument("--split-parent", default="spos", help="few-shot: the variant whose supernet is split")
    p.add_argument("--split-choice", default=None, help="few-shot: the choice split on (default: the first edge)")
    p.add_argument("--split-epochs", type=float, default=1.0, help="few-shot: epochs each child trains on")
    p.add_argument("--reference", action="store_true",
                   help="NB201's reference protocol: C=16, N=5, the complete CIFAR-10 zip, 25,000 / 25,000 split")
    args = p.parse_args(argv)
    if args.reference:
        args.channels, args.cells, args.val_fraction = 16, 5, 0.5
        if args.data == str(DEFAULT_DATA):
            args.data = str(FULL_CIFAR10)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    for option in ("data", "zero_cost"):
        if not Path(getattr(args, option)).exists():
            p.error(f"--{option.replace('_', '-')} {getattr(args, option)} does not exist")
    return args


def sample_archs(bench, n: int, seed: int) -> list[str]:
    """n distinct NB201 arch strings drawn from all 15,625 by `seed` (the same for every variant)."""
    import random

    return random.Random(seed).sample(sorted(bench.by_string), n) if n else []


def train_supernet(args, variant: str) -> float:
    """Train (or resume, or skip when finished) one variant's supernet; seconds spent here."""
    from bertnas.pipelines.pretrain import pretrain

    folder = Path(args.output_dir) / variant
    started = time.perf_counter()
    if variant == "few-shot":
        from bertnas.pipelines.fewshot import split_supernet

        parent = Path(args.output_dir) / args.split_parent
        if not (parent / "summary.json").is_file():
            raise SystemExit(f"few-shot splits the finished {args.split_parent} supernet; train it first "
                             f"(--variants {args.split_parent} --train-only)")
        resume = (folder / "few_shot.json").is_file()
        split_supernet(parent, folder, steps=args.split_steps, choice=args.split_choice, save_steps=args.save_steps,
                       keep_last=1, progress=False)
        return _record_wall(folder, time.perf_counter() - started, resume)
    if (folder / "summary.json").is_file():
        return 0.0
    resume = folder.is_dir() and any(folder.glob("checkpoint-*"))
    if variant == "continued":
        from bertnas.storage.checkpoint import verified_checkpoint

        parent = Path(args.output_dir) / args.split_parent
        if not (parent / "summary.json").is_file():
            raise SystemExit(f"continued trains on the finished {args.split_parent} supernet; train it first "
                             f"(--variants {args.split_parent} --train-only)")
        steps = args.split_steps * args.split_children
        pretrain(dict(output_dir=str(folder), space="nb201", data=args.data, seed=args.seed, max_steps=steps,
                      save_steps=args.save_steps, keep_last=1, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=max(1, steps // 20), val_fraction=args.val_fraction, data_seed=0,
                      eval_batches=args.eval_batches, progress=False, overwrite=not resume,
                      resume_from_checkpoint="latest" if resume else None,
                      init_from_supernet=str(verified_checkpoint(parent)),
                      space_options={"C": args.channels, "N": args.cells, "metric": args.metric,
                                     "calibration_batches": args.calibration_batches},
                      **VARIANTS[args.split_parent]))
        return _record_wall(folder, time.perf_counter() - started, resume)
    pretrain(dict(output_dir=str(folder), space="nb201", data=args.data, seed=args.seed, max_steps=args.steps,
                  save_steps=args.save_steps, keep_last=1, batch_size=args.batch_size, lr=args.lr,
                  warmup_steps=args.steps // 20, val_fraction=args.val_fraction, data_seed=0,
                  eval_batches=args.eval_batches, progress=False, overwrite=not resume,
                  resume_from_checkpoint="latest" if resume else None,
                  space_options={"C": args.channels, "N": args.cells, "metric": args.metric,
                                 "calibration_batches": args.calibration_batches},
                  **VARIANTS[variant]))
    return _record_wall(folder, time.perf_counter() - started, resume)


def _record_wall(folder: Path, spent: float, resume: bool) -> float:
    """Add `spent` seconds to the variant's train_wall.json: wall time summed over every process
    that trained it (a resumed run adds to it)."""
    record = folder / "train_wall.json"
    before = json.loads(record.read_text()) if record.is_file() else {"seconds": 0.0, "sessions": []}
    before["seconds"] += spent
    before["sessions"].append({"seconds": spent, "load_after": os.getloadavg(), "resumed": resume})
    record.write_text(json.dumps(before, indent=1) + "\n")
    return spent


def train_and_score(args, variant: str, archs: list[str]) -> dict:
    """Train one supernet (unless cached) and score `archs`; returns {"scores", "train_s", ...}."""
    from bertnas.search.api import default_device
    from bertnas.storage.checkpoint import verified_checkpoint
    from bertnas.tasks import load_task

    folder = Path(args.output_dir) / variant
    done = folder / "scores.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if set(archs) <= set(cached["scores"]) and _scored_latest(folder, variant, cached):
            return cached
    started = time.perf_counter()
    train_s = 0.0 if args.score_only else train_supernet(args, variant)
    if args.train_only:
        return {}
    if variant == "few-shot":  # each arch by the child supernet that holds its candidate on the split choice
        from bertnas.pipelines.fewshot import child_for, read_split
        from bertnas.spaces.nb201 import Nb201Space

        split = read_split(folder)
        space = Nb201Space(args.channels, args.cells)
        groups: dict = {}
        for arch in archs:
            groups.setdefault(child_for(split, space.from_string(arch)), []).append(arch)
        runs = [score_run(args, child, group, f"{variant} {child.name}") for child, group in sorted(groups.items())]
        parent = json.loads((Path(args.output_dir) / args.split_parent / "train_wall.json").read_text())["seconds"]
        result = {key: {a: v for r in runs for a, v in r[key].items()}
                  for key in ("scores", "scores_accuracy", "noise_cross_entropy")}
        result.update(higher_is_better=False, heldout=runs[0]["heldout"], split={**split, "children": {
                          c: p.name for c, p in split["children"].items()}, "parent_variant": args.split_parent},
                      child_steps={r["label"]: r["steps"] for r in runs},
                      steps=split["parent_step"] + sum(r["steps"] for r in runs),
                      epochs=(split["parent_step"] + sum(r["steps"] for r in runs)) * args.batch_size
                      / runs[0]["train_rows"],
                      train_s=train_s, score_s=time.perf_counter() - started - train_s,
                      train_wall_s=parent + _wall(folder),
                      train_step_time_s=_step_time(Path(args.output_dir) / args.split_parent)
                      + sum(_step_time(child) for child in split["children"].values()))
    else:
        run = score_run(args, folder, archs, variant, by_representative=VARIANTS[variant]["sampler"] == "deiso")
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        tail = log[-50:]
        result = {**{k: v for k, v in run.items() if k not in ("label", "train_rows")},
                  "train_s": train_s, "score_s": time.perf_counter() - started - train_s,
                  "epochs": run["steps"] * args.batch_size / run["train_rows"],
                  "train_wall_s": _wall(folder), "train_step_time_s": _step_time(folder),
                  "train_loss_last50": sum(x["loss"] for x in tail) / len(tail),
                  "train_accuracy_last50": sum(x.get("accuracy", 0.0) for x in tail) / len(tail)}
        if variant == "continued":  # counted like few-shot: the parent's steps and time plus its own
            parent = Path(args.output_dir) / args.split_parent
            parent_step = json.loads((parent / "summary.json").read_text())["step"]
            result.update(parent_variant=args.split_parent, parent_step=parent_step, own_steps=run["steps"],
                          steps=parent_step + run["steps"],
                          epochs=(parent_step + run["steps"]) * args.batch_size / run["train_rows"],
                          train_wall_s=(_wall(parent) or 0.0) + (_wall(folder) or 0.0),
                          train_step_time_s=_step_time(parent) + _step_time(folder))
    done.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _scored_latest(folder: Path, variant: str, cached: dict) -> bool:
    """Whether a cached scores.json scored the run's latest checkpoint: a run resumed since (a
    partly trained supernet scored, then trained on) is scored again."""
    from bertnas.storage.checkpoint import checkpoint_step, find_checkpoint

    def latest_step(run: Path) -> int:
        return checkpoint_step(find_checkpoint(run))

    if variant == "few-shot":  # child_steps: {"few-shot <child folder>": steps}
        return all(latest_step(folder / label.split(" ", 1)[1]) == steps
                   for label, steps in cached["child_steps"].items())
    return cached.get("own_steps", cached["steps"]) == latest_step(folder)


def _step_time(folder: Path) -> float:
    """Seconds of the optimizer steps the run logged (`step_time_s`): its training time without
    start-up, checkpoints and held-out scoring, and counted also for a process killed before it
    could add to train_wall.json."""
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    return sum(r.get("step_time_s", 0.0) for r in rows)


def _wall(folder: Path) -> float | None:
    wall = folder / "train_wall.json"
    return json.loads(wall.read_text())["seconds"] if wall.is_file() else None


def score_run(args, folder: Path, archs: list[str], label: str, by_representative: bool = False) -> dict:
    """Scores of `archs` by the supernet of the run at `folder` (its latest checkpoint). Resumable:
    scores are saved to `scores.partial.json` as they come, kept only for the same checkpoint.
    `by_representative` (de-isomorphic runs, which trained only one arch per isomorphism class):
    each arch gets the scores of its class's representative, each representative scored once."""
    from bertnas.search.api import default_device
    from bertnas.spaces.nb201 import to_string
    from bertnas.storage.checkpoint import verified_checkpoint
    from bertnas.tasks import load_task

    ckpt = verified_checkpoint(folder)
    task = load_task(ckpt, default_device())
    batches, heldout = task.heldout(eval_batches=args.eval_batches, batch_size=args.batch_size)
    partial = Path(folder) / "scores.partial.json"
    stand_in = {a: a for a in archs}
    if by_representative:
        space = task.space
        stand_in = {a: to_string(space.representative(space.from_string(a)).ops) for a in archs}
    scores, noise = score_both(task, batches, list(dict.fromkeys(stand_in.values())), label, partial, ckpt.name)
    scores = {k: {a: d[stand_in[a]] for a in archs} for k, d in scores.items()}
    noise = {a: noise[stand_in[a]] for a in archs}
    return {"label": label, "scores": scores["cross_entropy"], "scores_accuracy": scores["accuracy"],
            "noise_cross_entropy": noise, "higher_is_better": False, "heldout": heldout,
            "steps": task.run_state["step"], "train_rows": task.data_options["train_rows"]}


def score_both(task, batches, archs: list[str], label: str, partial: Path | None = None,
               checkpoint: str = "") -> tuple[dict, dict]:
    """Held-out cross-entropy and top-1 accuracy of every arch in one pass (the same fixed batches
    and per-arch BatchNorm recalibration as `bertnas search`), plus each arch's noise: the standard
    error of its cross-entropy over the held-out batches. With `partial`, the scores so far are
    saved there every 20 archs and an interrupted call picks them up (same `checkpoint` only)."""
    import statistics

    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from bertnas.supernet.scoring import Evaluator

    correct: dict = {}

    def cross_entropy_and_count_correct(model, batch, ops):
        logits = model(pixel_values=batch["pixel_values"], arch=ops).logits
        correct[ops] = correct.get(ops, 0) + int((logits.argmax(-1) == batch["labels"]).sum())
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum"), batch["labels"].numel()

    evaluator = Evaluator(task.model, batches, loss_fn=cross_entropy_and_count_correct, metric="cross_entropy",
                          space=task.space, calibration_batches=task.calibration_batches(), cache=False)
    rows = sum(len(b["labels"]) for b in batches)
    saved = json.loads(partial.read_text()) if partial is not None and partial.is_file() else {}
    if saved.get("checkpoint") != checkpoint or saved.get("eval_batches") != len(batches):
        saved = {}
    scores = {"cross_entropy": dict(saved.get("cross_entropy", {})), "accuracy": dict(saved.get("accuracy", {}))}
    noise = dict(saved.get("noise", {}))

    def save():
        if partial is not None:
            tmp = partial.with_name(partial.name + ".tmp")
            tmp.write_text(json.dumps({"checkpoint": checkpoint, "eval_batches": len(batches), **scores,
                                       "noise": noise}) + "\n")
            os.replace(tmp, partial)

    todo = [a for a in archs if a not in scores["cross_entropy"]]
    for i, arch in enumerate(tqdm(todo, desc=f"score {label}", mininterval=30, dynamic_ncols=True)):
        ops = task.space.from_string(arch).ops
        correct.pop(ops, None)
        per_batch = evaluator.batch_scores(task.space.from_string(arch))
        scores["cross_entropy"][arch] = sum(per_batch) / len(per_batch)
        scores["accuracy"][arch] = correct[ops] / rows
        noise[arch] = statistics.stdev(per_batch) / len(per_batch) ** 0.5 if len(per_batch) > 1 else None
        if (i + 1) % 20 == 0:
            save()
    save()
    keep = set(archs)
    return ({k: {a: v for a, v in d.items() if a in keep} for k, d in scores.items()},
            {a: v for a, v in noise.items() if a in keep})


def bn_check(args, variant: str, archs: list[str]) -> dict:
    """Scores of a few archs with the checkpoint's BatchNorm statistics (running averages over every
    path trained) and after the evaluator's per-arch recalibration: shows the recalibration acts."""
    import torch

    from bertnas.search.api import default_device
    from bertnas.tasks import load_task

    task = load_task(Path(args.output_dir) / variant, default_device())
    batches, _ = task.heldout(eval_batches=args.eval_batches, batch_size=args.batch_size)
    stale = {}
    with torch.no_grad():
        task.model.eval()
        for a in archs:  # before any recalibration: the saved running statistics
            sums = [task.loss_fn(task.model, b, task.space.from_string(a).ops) for b in batches]
            stale[a] = float(sum(float(x) for x, _ in sums) / sum(n for _, n in sums))
    evaluator = task.evaluator(batches, cache=False)
    return {"variant": variant, "metric": args.metric,
            "archs": {a: {"checkpoint_bn_stats": stale[a], "recalibrated": float(evaluator(task.space.from_string(a)))}
                      for a in archs}}


def plot(path: Path, rows: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.6))
    taus = [r["kendall_tau"] for r in rows]
    colours = ["tab:blue" if r["kind"] == "supernet" else "tab:grey" for r in rows]
    errors = [[t - r["ci95"][0] for t, r in zip(taus, rows)], [r["ci95"][1] - t for t, r in zip(taus, rows)]] \
        if all(r.get("ci95") for r in rows) else None
    ax.barh(range(len(rows)), taus, color=colours, xerr=errors, error_kw={"lw": 0.8, "capsize": 2})
    for x, name, style in ((0.36, "MAGIC SPOS (BERT)", ":"), (0.57, "MAGIC-T+A (BERT)", "-."),
                           (0.70, "well-trained NB201 WS", "--")):
        ax.axvline(x, color="tab:red", ls=style, lw=1, label=f"{name} {x:.2f}")
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("Kendall tau vs real 200-epoch CIFAR-10 accuracy (same archs; bars: bootstrap 95% interval)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(textwrap.fill(title, 100), fontsize=8)  # long run lists wrap instead of leaving the figure
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    from bertnas.analysis.ranking import ranking_metrics
    from bertnas.spaces.nb201 import Nb201Benchmark

    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("bertnas").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    started, load_before = time.perf_counter(), os.getloadavg()

    args.split_steps = 0
    from bertnas.spaces.nb201 import Nb201Space

    probe = Nb201Space(args.channels, args.cells)
    args.split_children = len(probe.choices[args.split_choice or next(iter(probe.mutable_choices()))])
    if args.epochs or {"few-shot", "continued"} & set(args.variants):
        from bertnas.tasks.vision import load_images

        train_rows = round(len(load_images(args.data).labels) * (1 - args.val_fraction))
        if args.epochs:
            args.steps = math.ceil(args.epochs * train_rows / args.batch_size)
        args.split_steps = math.ceil(args.split_epochs * train_rows / args.batch_size)
    if args.train_only:
        for variant in args.variants:
            train_supernet(args, variant)
        return {}
    zero_cost = load_zero_cost(Path(args.zero_cost))
    bench = Nb201Benchmark()
    zc_archs = list(zero_cost)[:args.num_archs] if args.num_archs > 0 else list(zero_cost)
    archs = zc_archs + [a for a in sample_archs(bench, args.sample_archs, args.sample_seed) if a not in zero_cost]
    truth = {a: bench.accuracy(a, "cifar10") for a in archs}
    n = len(archs)
    ks = sorted({1, 5, 10, max(1, n // 100), max(1, n // 10)})

    from bertnas.analysis.intervals import bootstrap_intervals
    from bertnas.spaces.nb201 import Nb201Space

    space = Nb201Space(args.channels, args.cells)
    params = {a: space.params(space.from_string(a)) for a in archs}
    rows, metrics, runs, scored = [], {}, {}, {}
    for variant in args.variants:
        run = train_and_score(args, variant, archs)
        runs[variant] = {k: v for k, v in run.items() if not k.startswith(("scores", "noise"))}
        for metric, key, higher in (("cross_entropy", "scores", False), ("accuracy", "scores_accuracy", True)):
            if key not in run:
                continue
            name = variant if metric == args.metric else f"{variant} ({metric})"
            scores = {a: run[key][a] for a in archs}
            scored[name] = {"metric": metric, "higher_is_better": higher, "scores": scores}
            m = ranking_metrics(scores, truth, ks=ks, higher_is_better_scores=higher, higher_is_better_truth=True)
            m["ci95"] = bootstrap_intervals(scores, truth, higher_is_better_scores=higher, n_boot=args.n_boot)
            pick = max if higher else min
            best = pick(archs, key=lambda a: scores[a])
            m["top1_arch"] = best
            m["top1_global_rank"] = bench.rank(best, "cifar10")  # among all 15,625 cells
            # bias: does the supernet simply prefer big (or small) cells? tau of its ranking vs parameter count
            m["kendall_tau_vs_params"] = ranking_metrics(scores, params, ks=(1,), higher_is_better_scores=higher,
                                                         higher_is_better_truth=True)["kendall_tau"]
            # on the zero-cost file's archs alone: the proxies' own sample
            zc_scores = {a: scores[a] for a in zc_archs}
            m["on_zero_cost_archs"] = {
                **{k: v for k, v in ranking_metrics(zc_scores, truth, ks=(1, 10), higher_is_better_scores=higher,
                                                    higher_is_better_truth=True).items()
                   if k in ("n", "kendall_tau", "spearman_rho")},
                "ci95": bootstrap_intervals(zc_scores, truth, higher_is_better_scores=higher, n_boot=args.n_boot)}
            metrics[name] = m
            rows.append({"name": name, "kind": "supernet", "kendall_tau": m["on_zero_cost_archs"]["kendall_tau"],
                         "ci95": m["on_zero_cost_archs"]["ci95"]["kendall_tau"],
                         "spearman_rho": m["on_zero_cost_archs"]["spearman_rho"]})
    # Zero-cost proxies: higher score = better, as NASLib reports them; on the very same archs.
    proxies = sorted({name for s in zero_cost.values() for name in s} - set(NOT_PROXIES))
    for name in proxies:
        values, infinite = finite_ranks({a: zero_cost[a][name] for a in zc_archs if name in zero_cost[a]})
        m = ranking_metrics(values, truth, ks=ks, higher_is_better_scores=True, higher_is_better_truth=True)
        m["infinite_scores"] = infinite
        m["ci95"] = bootstrap_intervals(values, truth, higher_is_better_scores=True, n_boot=args.n_boot)
        metrics["zc:" + name] = m
        rows.append({"name": "zc: " + name, "kind": "proxy", "kendall_tau": m["kendall_tau"],
                     "ci95": m["ci95"]["kendall_tau"], "spearman_rho": m["spearman_rho"]})
    rows.sort(key=lambda r: -r["kendall_tau"])
    # Check of the encoding: NASLib's own 200-epoch validation accuracy must track the table.
    check = ranking_metrics({a: zero_cost[a]["val_accuracy"] for a in zc_archs}, truth, ks=(1,),
                            higher_is_better_scores=True, higher_is_better_truth=True)
    if check["kendall_tau"] < 0.8:
        raise RuntimeError(f"NASLib val_accuracy vs the NB201 table: tau {check['kendall_tau']:.2f}; "
                           "the op-index encoding (NASLIB_OPS / NASLIB_EDGES) does not match")

    summary = {name: {"kendall_tau": m["kendall_tau"], "spearman_rho": m["spearman_rho"],
                      "kendall_tau_ci95": m["ci95"]["kendall_tau"],
                      **({"on_zero_cost_archs": m["on_zero_cost_archs"]} if "on_zero_cost_archs" in m else {}),
                      **({"kendall_tau_vs_params": m["kendall_tau_vs_params"]} if "kendall_tau_vs_params" in m else {}),
                      **{f"top{k}_best_truth": m["top_k"][k]["best_truth"] for k in m["top_k"]},
                      **{f"top{k}_precision": m["top_k"][k]["precision"] for k in m["top_k"]}}
               for name, m in metrics.items()}
    report = {
        "label": args.label,
        "command": "python bench/nb201_ranking.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "load_before": load_before,
                    "load_after": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()},
        "wall_s": time.perf_counter() - started,
        "archs": n, "ks": ks,
        "truth": {"dataset": "cifar10", "source": str(bench.path), "best_of_archs": max(truth.values()),
                  "optimum": bench.best("cifar10")[1]},
        "encoding_check_val_accuracy_tau": check["kendall_tau"],
        "anchors_kendall_tau": ANCHORS,
        "bn_recalibration_check": (bn_check(args, args.variants[0], archs[:5])
                                   if args.variants and not args.reference else None),
        "runs": runs,
        "summary": summary,
        "metrics": metrics,
        # per variant and metric: NB201 arch string -> held-out score, with what a reader needs to
        # recompute every number above (settings of the run beside the scores)
        "supernet_scores": {name: {**entry, "channels": args.channels, "cells": args.cells,
                                   "epochs": runs[name.split(" ")[0]].get("epochs"),
                                   "train_wall_s": runs[name.split(" ")[0]].get("train_wall_s"),
                                   "data": args.data, "val_fraction": args.val_fraction}
                            for name, entry in scored.items()},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(portable_json(report, indent=1) + "\n")
    if args.plot:
        data = "CIFAR-10 train half" if args.reference else "the CIFAR-10 subset"
        trained = ", ".join(f"{v} {runs[v].get('steps', args.steps)} steps ({runs[v].get('epochs') or 0:.1f} ep)"
                            for v in args.variants)
        plot(Path(args.plot), rows, f"NB201 ({args.label}): {len(zc_archs)} NASLib archs; supernets C={args.channels}, "
                                    f"N={args.cells}, {trained} on {data}; proxies from NASLib")
    for r in rows:
        print(f"{r['name']:28s} tau {r['kendall_tau']:+.3f} {r.get('ci95')}  rho {r['spearman_rho']:+.3f}")
    return report


if __name__ == "__main__":
    main()
