"""`calibrate(checkpoint, num_archs, steps, output_dir)`: which signal ranks this space best?

1. The pool: every arch of the space (up to `pool` archs), else `pool` archs sampled (seeded).
2. Signals on the pool: the supernet's held-out score (`bertnas search`'s evaluator), the
   zero-cost proxies (`bertnas.analysis.zero_cost`) on a freshly initialised, seeded copy of the
   supernet, params and FLOPs.
3. K covering archs (`choose_covering_archs`: stratified by supernet score and size, seeded),
   each trained stand-alone with the same trainer (`pretrain(arch=...)`, `steps` steps; `workers`
   trainings at once in separate processes) in `OUT/standalone/<arch>/` and scored with the supernet's held-out batches; cached by arch
   (`truth.json`), an interrupted training resumes from its last checkpoint. A `truth` file
   ({arch: value}, e.g. a benchmark table) replaces the training.
4. `OUT/calibration.json`: every signal's Kendall tau / Spearman on the K archs with bootstrap
   95 % intervals, the ranker comparison (cross-validated), the hybrid's cross-validated metrics,
   the verdict; `OUT/ranker.json`: the hybrid fitted on all K; `OUT/predictions.json`: its
   prediction for every arch of the pool.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from bertnas.analysis.calibration import (MIN_TRUTH, RANKERS, HybridRanker, bootstrap_metrics, check_truth,
                                          choose_covering_archs, compare_rankers, cross_validated_predictions,
                                          feature_table, space_identity, verdict)
from bertnas.analysis.report import render_calibration
from bertnas.analysis.zero_cost import PROXIES, ZeroCostScorer
from bertnas.core.errors import UserError
from bertnas.storage.checkpoint import MODEL_DIR, verified_checkpoint
from bertnas.tasks import load_task

logger = logging.getLogger("bertnas.calibrate")


def arch_slug(arch) -> str:
    return "-".join("+".join(v) if isinstance(v, tuple) else str(v) for v in arch.ops)


def pool_of(space, pool: int, seed: int) -> list:
    if space.size() <= pool:
        return list(space.enumerate(limit=pool))
    rng, seen = random.Random(seed), {}
    while len(seen) < pool:
        a = space.sample(rng)
        seen.setdefault(a, None)
    return list(seen)


def proxy_scores(task, archs, proxies=PROXIES, batch_size: int = 16, seed: int = 0, data: str | None = None) -> dict:
    """{proxy: {arch: value}} on a freshly initialised copy of the task's supernet (seeded)."""
    import torch

    torch.manual_seed(seed)
    fresh = type(task.model)(task.model.config)
    batches, _ = task.heldout(data=data, batch_size=batch_size, eval_batches=1)
    scorer = ZeroCostScorer(fresh, task.space, batches, proxies, seed=seed)
    values = {a: scorer.score(a) for a in archs}
    return {p: {a: v[p] for a, v in values.items()} for p in proxies}


def standalone_config(task, arch, steps: int, folder: Path, seed: int = 0) -> dict:
    """The pretrain config that trains `arch` alone for `steps` steps in `folder`: the supernet
    run's config (its data and vocabulary), one fixed arch, no alignment; resumes a started run."""
    cfg = dict((task.run_state.get("config") or {}))
    for key in ("resume_from_checkpoint", "strategy", "strategy_options", "base_arch", "deepspeed", "report_to",
                "fixed_choices", "init_from_supernet"):
        cfg.pop(key, None)
    tokenizer = Path(task.ckpt) / MODEL_DIR
    if (tokenizer / "tokenizer.json").is_file() or (tokenizer / "vocab.txt").is_file():
        cfg["tokenizer"] = str(tokenizer)  # the supernet's vocabulary: its held-out batches fit
    resume = "latest" if any(folder.glob("checkpoint-*")) else None
    cfg.update(output_dir=str(folder), arch=list(arch.to_list()), max_steps=int(steps), save_steps=max(1, steps // 2),
               keep_last=1, align=False, seed=seed, progress=False, resume_from_checkpoint=resume,
               overwrite=resume is None)
    return cfg


def _train_in_worker(cfg: dict, threads: int) -> str:
    """One stand-alone training in a worker process (`threads` intra-op threads of its own)."""
    import torch

    from bertnas.pipelines.pretrain import pretrain

    torch.set_num_threads(threads)
    pretrain(cfg)
    return cfg["output_dir"]


def train_standalone(task, arch, steps: int, folder: Path, batches, seed: int = 0) -> float:
    """The held-out score of `arch` trained alone for `steps` steps (cached in `folder/truth.json`)."""
    return train_standalone_many(task, [arch], steps, {arch: folder}, batches, seed)[arch]


def train_standalone_many(task, archs, steps: int, folders: dict, batches, seed: int = 0, workers: int = 1) -> dict:
    """`train_standalone` of every arch, `workers` trainings at once (separate processes, the
    cores shared between them); each score is cached in its folder's `truth.json`, so an
    interrupted calibration trains only what is left. Scores do not depend on `workers`."""
    import os

    from bertnas.pipelines.pretrain import pretrain

    def cached(arch):
        done = folders[arch] / "truth.json"
        return float(json.loads(done.read_text())["score"]) if done.is_file() else None

    todo = [a for a in archs if cached(a) is None]
    configs = {a: standalone_config(task, a, steps, folders[a], seed) for a in todo}
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import torch

        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch / accelerate state
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
            for future in [pool.submit(_train_in_worker, configs[a], threads) for a in todo]:
                future.result()  # a worker's error surfaces here
    else:
        for arch in todo:
            pretrain(configs[arch])
    scores = {}
    for arch in archs:
        score = cached(arch)
        if score is None:
            alone = load_task(verified_checkpoint(folders[arch]))
            score = float(alone.evaluator(batches)(alone.space.arch(arch)))
            done = folders[arch] / "truth.json"
            tmp = done.with_name(done.name + ".tmp")
            tmp.write_text(json.dumps({"arch": arch.to_list(), "score": score, "steps": steps}) + "\n")
            os.replace(tmp, done)
        scores[arch] = score
    return scores


def load_truth(path, space) -> dict:
    from bertnas.analysis.io import load_values

    values = load_values(path, "truth")
    out = {}
    for key, value in values.values.items():
        try:
            out[space.arch(list(key) if isinstance(key, tuple) else key)] = float(value)
        except (ValueError, TypeError):
            continue
    return out, values.higher_is_better


def calibrate(checkpoint, num_archs: int, steps: int, output_dir, *, truth=None, pool: int = 1000, seed: int = 0,
              proxies=PROXIES, proxy_batch_size: int = 16, eval_batches: int | None = None, data: str | None = None,
              rankers=tuple(RANKERS), n_boot: int = 1000, workers: int = 1) -> dict:
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = load_task(verified_checkpoint(checkpoint))
    space = task.space
    if num_archs > space.size():
        raise UserError(f"--num-archs {num_archs} is larger than the space ({space.size()} archs)",
                        f"pass --num-archs {space.size()} or fewer")
    if num_archs < MIN_TRUTH:
        raise UserError(f"--num-archs {num_archs} is too few to calibrate", f"pass --num-archs {MIN_TRUTH} or more")
    archs = pool_of(space, max(pool, num_archs), seed)
    batches, heldout = task.heldout(data=data, eval_batches=eval_batches)
    evaluator = task.evaluator(batches)
    sign = 1.0 if evaluator.higher_is_better else -1.0
    supernet = {a: sign * float(evaluator(a)) for a in archs}
    signals = {"supernet": supernet}
    signals.update(proxy_scores(task, archs, proxies, proxy_batch_size, seed, data))
    size = signals.get("params") or {a: float(space.params(a)) for a in archs}
    chosen = choose_covering_archs(archs, supernet, size, num_archs, seed, space.size())

    truth_higher = evaluator.higher_is_better
    if truth is not None:
        table, truth_higher = load_truth(truth, space)
        labelled = {a: table[a] for a in chosen if a in table}
        check_truth(labelled, f"the truth file {truth}")
    else:
        labelled = train_standalone_many(task, chosen, steps, {a: out / "standalone" / arch_slug(a) for a in chosen},
                                         batches, seed, workers)
    truth_good = {a: (v if truth_higher else -v) for a, v in labelled.items()}
    keys = list(truth_good)
    y = np.asarray([truth_good[a] for a in keys])

    metrics = {name: bootstrap_metrics([values[a] for a in keys], y, n_boot, seed) for name, values in signals.items()}
    names, x = feature_table(keys, signals, space)
    comparison = compare_rankers(x, y, rankers, seed, n_boot)
    best = max(comparison, key=lambda k: comparison[k]["kendall_tau"] if comparison[k]["kendall_tau"] == comparison[
        k]["kendall_tau"] else -2)
    metrics["hybrid"] = {**comparison[best], "model": best,
                         "evaluation": "out-of-fold predictions of the K labelled archs (cross-validated)"}
    ranker = HybridRanker(best, names, x, y, space_id=space_identity(space), seed=seed,
                          info={"signals": list(signals), "proxy_batch_size": proxy_batch_size, "proxy_seed": seed,
                                "proxies": list(proxies), "supernet_sign": sign, "checkpoint": str(task.ckpt)})
    ranker.save(out / "ranker.json")
    _, x_pool = feature_table(archs, signals, space)
    predicted = ranker.predict(x_pool)
    predictions = sorted(({"arch": a.to_list(), "prediction": float(p)} for a, p in zip(archs, predicted)),
                         key=lambda e: -e["prediction"])
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    single = {k: v for k, v in metrics.items()}
    report = {
        **metrics,
        "verdict": verdict(single),
        "ranker_comparison": comparison,
        "labelled": [{"arch": a.to_list(), "truth": labelled[a]} for a in keys],
        "settings": {"checkpoint": str(task.ckpt), "num_archs": num_archs, "steps": steps, "seed": seed, "workers": workers,
                     "pool": len(archs), "truth": str(truth) if truth is not None else "stand-alone training",
                     "truth_higher_is_better": truth_higher, "heldout": heldout, "bootstrap": n_boot,
                     "proxy_batch_size": proxy_batch_size, "features": names},
        "seconds": time.perf_counter() - started,
    }
    (out / "calibration.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "calibration.md").write_text(render_calibration(json.loads((out / "calibration.json").read_text())))
    return report


__all__ = ["calibrate", "train_standalone", "train_standalone_many", "standalone_config", "proxy_scores", "pool_of",
           "arch_slug"]
