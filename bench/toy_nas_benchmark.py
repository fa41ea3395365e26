"""Toy BERT NAS benchmark: does a supernet rank subnets the way stand-alone training does?

Space: `--layers` chain layers x `--candidates` ops (default 4 x {mha4, ffn, conv3, identity} =
256 archs), hidden `--hidden`, masked-LM on real text (default: wikitext-2-raw from
../shared/data/text; `--data` or $BERTNAS_TOY_DATA to change it).

- Ground truth: `--truth-archs` archs drawn at random (all of them with `--truth-archs 0`), each
  trained from scratch alone for `--truth-steps` steps with the package's trainer
  (`bertnas.train.trainer.pretrain` with a fixed `arch`, what `bertnas pretrain --arch` runs),
  scored with the held-out evaluator `bertnas search` uses (`--eval-batches` x
  `--eval-batch-size` fixed masked rows; MLM loss, lower is better).
- Noise floor: the first `--noise-archs` of them trained again with another seed; Kendall tau
  between the two seeds is the best any predictor can be expected to reach against one seed.
- Supernets: SPOS (uniform sampling), MAGIC-T (walk, k = 1, 2, 4), MAGIC-A (uniform +
  alignment) and MAGIC-T+A (walk k = 1 + alignment), `--supernet-steps` each, `--seeds` seeds,
  same data / optimiser / evaluator; each scores the truth archs with inherited weights.
- Trivial predictors: parameter count (more is better), and ridge fits on the ops
  (per-layer one-hot; op counts), leave-one-out over the truth archs, so no arch is scored by
  a fit that saw it.

Every run is cached under `--output-dir` (one folder per arch / supernet with its score):
a rerun skips what is done. Writes `--json` (settings, machine, every score, every metric) and
`--plot` (Kendall tau / Spearman rho per predictor, error bars over seeds, the noise floor).

    python bench/toy_nas_benchmark.py                       # default size (~35-50 min estimated, idle 2-core CPU)
    python bench/toy_nas_benchmark.py --truth-archs 20 --noise-archs 20 --truth-steps 600 \
        --supernet-steps 1000 --seeds 2 --label reduced      # the reduced run of docs/results.md
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import platform
import random
import shutil
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "text" / "wikitext-2-raw"

# name -> training options of the supernet (PretrainConfig fields)
VARIANTS = {
    "spos": dict(sampler="uniform", align=False),
    "magic-t1": dict(sampler="walk", walk_k=1, align=False),
    "magic-t2": dict(sampler="walk", walk_k=2, align=False),
    "magic-t4": dict(sampler="walk", walk_k=4, align=False),
    "magic-a": dict(sampler="uniform", align=True),
    "magic-t+a": dict(sampler="walk", walk_k=1, align=True),
    "fair": dict(sampler="fair", align=False),  # FairNAS strict fairness: every op once per round
    # few-shot NAS (Zhao et al. 2021) at the same total budget: SPOS for half the steps, then one
    # child per op of the first layer, each trained on for an equal share of the other half
    "few-shot": None,
}
KS = (1, 3, 5, 10)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("BERTNAS_TOY_DATA", str(DEFAULT_DATA)),
                   help="text file or folder (default $BERTNAS_TOY_DATA, else ../shared/data/text/wikitext-2-raw)")
    p.add_argument("--output-dir", default="runs/toy_nas", help="cache of every run (a rerun skips finished ones)")
    p.add_argument("--json", default="bench/results/toy_nas_benchmark.json")
    p.add_argument("--plot", default="docs/img/toy_ranking.png")
    p.add_argument("--label", default="default", help="recorded in the JSON (e.g. reduced)")
    # space and model
    p.add_argument("--layers", type=int, default=4, help="chain layers (a BERT layer is two)")
    p.add_argument("--candidates", default="mha4,ffn,conv3,identity")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.0)
    # training
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--truth-archs", type=int, default=48, help="archs trained alone (0: the whole space)")
    p.add_argument("--truth-steps", type=int, default=800)
    p.add_argument("--noise-archs", type=int, default=16, help="of the truth archs, retrained with a second seed")
    p.add_argument("--supernet-steps", type=int, default=1600)
    p.add_argument("--seeds", type=int, default=3, help="supernet seeds per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--arch-seed", type=int, default=0, help="which archs form the truth set")
    # scoring
    p.add_argument("--eval-batches", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's weights (default: score, then delete)")
    args = p.parse_args(argv)
    args.candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if not Path(args.data).exists():
        p.error(f"--data {args.data} does not exist (set --data or $BERTNAS_TOY_DATA to a text file or folder)")
    return args


def arch_name(ops) -> str:
    return "-".join(ops)


class Bench:
    """The runs of one benchmark setting, cached under `out`."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model = dict(num_hidden_layers=args.layers, hidden_size=args.hidden, intermediate_size=args.intermediate,
                          ffn_wide_size=args.intermediate * 3 // 2, max_position_embeddings=args.seq_len,
                          candidates=args.candidates, hidden_dropout_prob=args.dropout,
                          attention_probs_dropout_prob=args.dropout)
        self._check_settings()
        self.tokenizer = self._tokenizer()
        self.fingerprint = None  # of the held-out batches: every score must come from the same ones

    def _check_settings(self) -> None:
        """A cache folder holds runs of one setting: reusing it with another would mix them."""
        a = self.args
        setting = {"data": str(Path(a.data).resolve()), "model": self.model, "vocab": a.vocab, "seq_len": a.seq_len,
                   "batch_size": a.batch_size, "lr": a.lr, "warmup_steps": a.warmup_steps,
                   "truth_steps": a.truth_steps, "supernet_steps": a.supernet_steps, "arch_seed": a.arch_seed,
                   "eval_batches": a.eval_batches, "eval_batch_size": a.eval_batch_size}
        path = self.out / "setting.json"
        if path.is_file():
            old = json.loads(path.read_text())
            changed = sorted(k for k in setting if old.get(k) != setting[k])
            if changed:
                raise SystemExit(f"{self.out} holds runs made with other {', '.join(changed)}; "
                                 "pass another --output-dir (or delete that one)")
        else:
            path.write_text(json.dumps(setting, indent=1) + "\n")

    def _tokenizer(self) -> str:
        """One tokenizer saved in the cache folder, so every run (and every rerun) shares a vocabulary."""
        folder = self.out / "tokenizer"
        if not (folder / "tokenizer.json").is_file():
            from bertnas.tasks.text_data import build_tokenizer, load_texts

            build_tokenizer(None, load_texts(self.args.data), vocab_size=self.args.vocab).save_pretrained(folder)
        return str(folder)

    def all_archs(self) -> list[tuple]:
        return list(itertools.product(self.args.candidates, repeat=self.args.layers))

    def truth_archs(self) -> list[tuple]:
        archs = self.all_archs()
        n = self.args.truth_archs
        if n <= 0 or n >= len(archs):
            return archs
        return random.Random(self.args.arch_seed).sample(archs, n)

    def _config(self, folder: Path, seed: int, steps: int, **extra) -> dict:
        a = self.args
        return dict(output_dir=str(folder), data=a.data, tokenizer=self.tokenizer, model=self.model, seed=seed,
                    max_steps=steps, save_steps=0, keep_last=1, seq_len=a.seq_len, tokenizer_vocab_size=a.vocab, batch_size=a.batch_size, lr=a.lr,
                    warmup_steps=a.warmup_steps, val_fraction=0.1, data_seed=0, progress=False, overwrite=True, **extra)

    def _score(self, folder: Path, archs) -> dict:
        """Held-out MLM loss of each arch with the weights of the run in `folder` (the evaluator of
        `bertnas search`: the run's held-out rows, masked once with a fixed seed)."""
        from bertnas.search.api import default_device
        from bertnas.tasks import load_task
        from bertnas.tasks.bert import load_lm_data
        from bertnas.storage.checkpoint import verified_checkpoint

        task = load_task(verified_checkpoint(folder), default_device())
        # The held-out rows the trainer just built (same corpus, split and tokenizer: ours, copied
        # into the checkpoint): without them the task re-tokenises the corpus for every run.
        task.val_data = load_lm_data(task.data_options, self.tokenizer, self.args.vocab)[2]
        batches, _ = task.heldout(eval_batches=self.args.eval_batches, batch_size=self.args.eval_batch_size)
        digest = hashlib.sha256()
        for b in batches:
            digest.update(b["input_ids"].cpu().numpy().tobytes())
            digest.update(b["labels"].cpu().numpy().tobytes())
        if self.fingerprint is None:
            self.fingerprint = digest.hexdigest()
        elif digest.hexdigest() != self.fingerprint:
            raise RuntimeError(f"{folder} was scored on other held-out batches than the earlier runs "
                               "(another tokenizer or data?); delete --output-dir and rerun")
        evaluator = task.evaluator(batches)
        return {arch_name(a): float(evaluator(task.space.arch(list(a)))) for a in archs}

    def _run(self, folder: Path, config: dict, archs) -> dict:
        """Train (unless `folder/scores.json` exists), score `archs`, cache and return the result."""
        from bertnas.pipelines.pretrain import pretrain

        done = folder / "scores.json"
        if done.is_file():
            return json.loads(done.read_text())
        started = time.perf_counter()
        summary = pretrain(config)
        train_s = time.perf_counter() - started
        scores = self._score(folder, archs)
        result = {"scores": scores, "train_loss": summary["loss"], "steps": summary["step"], "train_s": train_s,
                  "score_s": time.perf_counter() - started - train_s, "heldout_fingerprint": self.fingerprint}
        if not self.args.keep_checkpoints:
            for ckpt in folder.glob("checkpoint-*"):
                shutil.rmtree(ckpt)
        done.write_text(json.dumps(result, indent=1) + "\n")
        return result

    def truth(self, arch, seed: int) -> dict:
        folder = self.out / f"truth-s{seed}" / arch_name(arch)
        return self._run(folder, self._config(folder, seed, self.args.truth_steps, arch=list(arch)), [arch])

    def supernet(self, variant: str, seed: int, archs) -> dict:
        folder = self.out / f"{variant}-s{seed}"
        if variant == "few-shot":
            return self.few_shot(folder, seed, archs)
        return self._run(folder, self._config(folder, seed, self.args.supernet_steps, **VARIANTS[variant]), archs)

    def few_shot(self, folder: Path, seed: int, archs) -> dict:
        """SPOS for half of `--supernet-steps`, split on the first layer (`bertnas split`), each of
        its children trained for an equal share of the rest; each arch scored by its child."""
        from bertnas.pipelines.fewshot import child_for, read_split, split_supernet
        from bertnas.pipelines.pretrain import pretrain

        done = folder / "scores.json"
        if done.is_file():
            return json.loads(done.read_text())
        started = time.perf_counter()
        parent = folder / "parent"
        parent_steps = self.args.supernet_steps // 2
        if not (parent / "summary.json").is_file():
            pretrain(self._config(parent, seed, parent_steps, **VARIANTS["spos"]))
        n_children = len(self.args.candidates)
        child_steps = (self.args.supernet_steps - parent_steps) // n_children
        split_supernet(parent, folder / "split", steps=child_steps, save_steps=0, keep_last=1, progress=False)
        split = read_split(folder / "split")
        train_s = time.perf_counter() - started
        labels = list(self.space().choices)
        groups: dict = {}
        for arch in archs:
            groups.setdefault(child_for(split, dict(zip(labels, arch))), []).append(arch)
        scores = {name: score for child, group in groups.items() for name, score in self._score(child, group).items()}
        result = {"scores": scores, "steps": parent_steps + n_children * child_steps, "train_s": train_s,
                  "score_s": time.perf_counter() - started - train_s, "heldout_fingerprint": self.fingerprint,
                  "split": {"choice": split["choice"], "parent_steps": parent_steps, "child_steps": child_steps}}
        if not self.args.keep_checkpoints:
            for ckpt in list(folder.rglob("checkpoint-*")):
                shutil.rmtree(ckpt)
        done.write_text(json.dumps(result, indent=1) + "\n")
        return result

    def space(self):
        from bertnas.models import BertNasConfig
        from bertnas.spaces import BertSpace

        return BertSpace(BertNasConfig(**self.model, vocab_size=self.args.vocab))

    def params(self, arch) -> int:
        space = self.space()
        return space.params(space.arch(list(arch)), include_embeddings=False)


def op_effects(archs, targets, candidates, alpha: float = 1e-2) -> dict:
    """Ridge fit of a score on op counts: the change per layer switched from the first candidate
    to each other op (for a loss, negative = the op helps). What a predictor 'believes' about ops."""
    import numpy as np

    _, counts = op_features(archs, candidates)
    x = np.column_stack([np.ones(len(counts)), np.asarray(counts)])
    penalty = alpha * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    w = np.linalg.solve(x.T @ x + penalty, x.T @ np.asarray(targets, dtype=float))
    return {f"{c} (vs {candidates[0]})": float(v) for c, v in zip(candidates[1:], w[1:])}


def ridge_loo(features, targets, alpha: float = 1e-2):
    """Leave-one-out ridge predictions: each target predicted by a fit on all the others."""
    import numpy as np

    x = np.column_stack([np.ones(len(features)), np.asarray(features, dtype=float)])
    y = np.asarray(targets, dtype=float)
    penalty = alpha * np.eye(x.shape[1])
    penalty[0, 0] = 0.0  # no shrinkage of the intercept
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w = np.linalg.solve(x[keep].T @ x[keep] + penalty, x[keep].T @ y[keep])
        out[i] = x[i] @ w
    return out


def op_features(archs, candidates):
    per_layer = [[float(op == c) for op in a for c in candidates[1:]] for a in archs]  # first op: reference
    counts = [[float(sum(op == c for op in a)) for c in candidates[1:]] for a in archs]
    return per_layer, counts


def summarise(values: list[float]) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "values": [float(x) for x in v]}


def plot(path: Path, rows: list[dict], noise: dict | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.8), sharey=True)
    names = [r["name"] for r in rows]
    for ax, metric, label in zip(axes, ("kendall_tau", "spearman_rho"), ("Kendall tau", "Spearman rho")):
        means = [r[metric]["mean"] for r in rows]
        errs = [r[metric]["std"] for r in rows]
        colours = ["tab:blue" if r["kind"] == "supernet" else "tab:grey" for r in rows]
        ax.barh(range(len(rows)), means, xerr=errs, color=colours, capsize=3)
        if noise is not None:
            ax.axvline(noise[metric], color="tab:red", ls="--", label=f"truth seed vs seed ({noise[metric]:.2f})")
            ax.legend(loc="lower right", fontsize=8)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel(label + " vs stand-alone truth")
        ax.set_xlim(min(-0.2, min(means) - 0.1), 1.0)
    axes[0].set_yticks(range(len(rows)), names)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quiet(threads: int) -> None:
    """`threads` intra-op threads; no progress bars, warnings or info logs (every run of the benchmark)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("bertnas").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


def _truth_in_worker(args, arch, seed: int) -> dict:
    """`Bench(args).truth(arch, seed)` in a worker process (its cache folder is the parent's)."""
    quiet(args.threads)
    return Bench(args).truth(arch, seed)


def truth_many(bench: Bench, archs, seed: int = 0, workers: int = 1, progress=None) -> dict:
    """{arch: `bench.truth(arch, seed)`}: the runs not cached yet, `workers` at once in spawned
    processes (`args.threads` threads each), give the same folders and scores as one at a time.
    `progress(arch)` is called as each of them finishes."""
    todo = [a for a in archs if not (bench.out / f"truth-s{seed}" / arch_name(a) / "scores.json").is_file()]
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch state
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
            futures = {pool.submit(_truth_in_worker, bench.args, a, seed): a for a in todo}
            for future in as_completed(futures):
                future.result()  # a worker's error surfaces here (the finished runs stay cached)
                if progress is not None:
                    progress(futures[future])
        todo = []
    out = {}
    for a in archs:
        out[a] = bench.truth(a, seed)  # from the cache, or trained here (one worker)
        if progress is not None and a in todo:
            progress(a)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet(args.threads)
    import torch
    from tqdm.auto import tqdm

    import numpy as np

    from bertnas.analysis.intervals import bootstrap_intervals
    from bertnas.analysis.ranking import ranking_metrics

    started = time.perf_counter()
    load_before = os.getloadavg()

    bench = Bench(args)
    archs = bench.truth_archs()
    noise_archs = archs[:min(args.noise_archs, len(archs))]
    jobs = ([("truth", a, 0) for a in archs] + [("truth", a, 1) for a in noise_archs]
            + [("supernet", v, s) for s in range(args.seeds) for v in args.variants])
    truth = {0: {}, 1: {}}
    supernets: dict = {v: {} for v in args.variants}
    costs = {"truth_train_s": 0.0, "supernet_train_s": {v: 0.0 for v in args.variants}, "score_s": 0.0}
    for kind, what, seed in tqdm(jobs, desc="toy benchmark", dynamic_ncols=True, mininterval=10):
        if kind == "truth":
            r = bench.truth(what, seed)
            truth[seed][arch_name(what)] = r["scores"][arch_name(what)]
            costs["truth_train_s"] += r["train_s"]
        else:
            r = bench.supernet(what, seed, archs)
            supernets[what][seed] = r["scores"]
            costs["supernet_train_s"][what] += r["train_s"]
        costs["score_s"] += r["score_s"]

    def metrics(pred: dict, against: dict) -> dict:
        return ranking_metrics(pred, against, ks=KS, higher_is_better_scores=False, higher_is_better_truth=False)

    def key(name):  # arch_name -> the tuple key ranking_metrics uses
        return tuple(name.split("-"))

    def compare_all(truth_of: dict) -> tuple[list, dict]:
        """Every predictor (supernets per seed, trivial ones) against one truth (arch name -> loss)."""
        names = list(truth_of)
        against = {key(n): truth_of[n] for n in names}
        k5 = str(min(5, len(names)))
        rows, results = [], {}
        for v in args.variants:
            per_seed = [metrics({key(n): supernets[v][s][n] for n in names}, against) for s in range(args.seeds)]
            results[v] = per_seed
            # the interval over archs: bootstrap of the seed-averaged scores (a sharper predictor)
            averaged = {key(n): sum(supernets[v][s][n] for s in range(args.seeds)) / args.seeds for n in names}
            ci95 = (bootstrap_intervals(averaged, against, higher_is_better_scores=False, higher_is_better_truth=False,
                                        n_boot=1000) if len(names) >= 3 else None)
            rows.append({"name": v, "kind": "supernet", "kendall_tau": summarise([m["kendall_tau"] for m in per_seed]),
                         "seed_mean_scores": {"kendall_tau": metrics(averaged, against)["kendall_tau"], "ci95": ci95},
                         "spearman_rho": summarise([m["spearman_rho"] for m in per_seed]),
                         "top1_rank": summarise([m["top_k"]["1"]["best_truth_rank"] for m in per_seed]),
                         "top5_rank": summarise([m["top_k"][k5]["best_truth_rank"] for m in per_seed]),
                         # how far apart the supernet puts the archs at all (the truth's spread: "truth")
                         "score_std": summarise([float(np.std([supernets[v][s][n] for n in names]))
                                                 for s in range(args.seeds)]),
                         "score_mean": summarise([float(np.mean([supernets[v][s][n] for n in names]))
                                                  for s in range(args.seeds)])})
        per_layer, counts = op_features([key(n) for n in names], args.candidates)
        targets = [truth_of[n] for n in names]
        trivial = {
            "params (more is better)": {key(n): -bench.params(key(n)) for n in names},
            "ridge per-layer ops (LOO)": dict(zip(map(key, names), ridge_loo(per_layer, targets))),
            "ridge op counts (LOO)": dict(zip(map(key, names), ridge_loo(counts, targets))),
        }
        for name, pred in trivial.items():
            m = metrics(pred, against)
            results[name] = m
            rows.append({"name": name, "kind": "trivial", "kendall_tau": summarise([m["kendall_tau"]]),
                         "spearman_rho": summarise([m["spearman_rho"]]),
                         "top1_rank": summarise([m["top_k"]["1"]["best_truth_rank"]]),
                         "top5_rank": summarise([m["top_k"][k5]["best_truth_rank"]])})
        return rows, results

    truth0 = {key(k): v for k, v in truth[0].items()}
    names = list(truth[0])
    targets = [truth[0][n] for n in names]
    rows, results = compare_all(truth[0])
    # With every truth arch trained twice, the mean of the two seeds is a sharper truth.
    two_seeds = None
    if set(truth[1]) == set(truth[0]):
        two_rows, two_results = compare_all({n: (truth[0][n] + truth[1][n]) / 2 for n in names})
        two_seeds = {"summary": two_rows, "metrics": two_results}
    noise = None
    if len(truth[1]) >= 2:
        m = metrics({key(k): x for k, x in truth[1].items()}, truth0)
        noise = {"n": m["n"], "kendall_tau": m["kendall_tau"], "spearman_rho": m["spearman_rho"],
                 "seed0_vs_seed1_abs_diff_mean": sum(abs(truth[0][k] - truth[1][k]) for k in truth[1]) / len(truth[1])}
    spread = sorted(truth[0].values())
    truth_std = float(np.std(spread))
    effects = {"truth": op_effects([key(n) for n in names], targets, args.candidates)}
    for v in args.variants:  # each supernet's belief, from its seed-averaged scores on the same archs
        mean_scores = [sum(supernets[v][s][n] for s in range(args.seeds)) / args.seeds for n in names]
        effects[v] = op_effects([key(n) for n in names], mean_scores, args.candidates)

    report = {
        "label": args.label,
        "command": "python bench/toy_nas_benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: v for k, v in vars(args).items()},
        "space_size": len(bench.all_archs()),
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "load_before": load_before,
                    "load_after": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()},
        "wall_s": time.perf_counter() - started,
        "costs_s": costs,
        "heldout_fingerprint": bench.fingerprint,
        "truth": {"seed0": truth[0], "seed1": truth[1], "best": spread[0], "worst": spread[-1], "std": truth_std,
                  "median": spread[len(spread) // 2]},
        "noise_floor": noise,
        "supernet_scores": {v: {str(s): supernets[v][s] for s in supernets[v]} for v in args.variants},
        "summary": rows,
        "vs_mean_of_two_seeds": two_seeds,
        "op_effects": effects,
        "metrics": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        title = (f"toy BERT NAS ({args.label}): {len(archs)} truth archs x {args.truth_steps} steps, supernets "
                 f"{args.supernet_steps} steps x {args.seeds} seeds, {args.layers} layers x {{{','.join(args.candidates)}}}")
        plot(Path(args.plot), rows, noise, title)
    for r in rows:
        print(f"{r['name']:28s} tau {r['kendall_tau']['mean']:+.3f} +- {r['kendall_tau']['std']:.3f}  "
              f"rho {r['spearman_rho']['mean']:+.3f}  top-1 rank {r['top1_rank']['mean']:.1f}")
    if two_seeds:
        print("against the mean of the two truth seeds:")
        for r in two_seeds["summary"]:
            print(f"  {r['name']:26s} tau {r['kendall_tau']['mean']:+.3f} +- {r['kendall_tau']['std']:.3f}")
    if noise:
        print(f"noise floor (truth seed 0 vs 1, {noise['n']} archs): tau {noise['kendall_tau']:+.3f} "
              f"rho {noise['spearman_rho']:+.3f}")
    return report


if __name__ == "__main__":
    main()
