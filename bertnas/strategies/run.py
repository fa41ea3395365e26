"""`run_strategy(config)`: train a supernet under a search strategy, then score what it found.

    run_strategy({"space": "nb201", "strategy": "gaea-darts", "max_steps": 200,
                  "strategy_options": {"bilevel": False}, "output_dir": "runs/nb201-gaea"})

One `SupernetTrainer` run (weight steps, checkpoints, exact resume, `log.jsonl` with per step
`arch_weights` and `entropy`), then `strategy.candidates(trainer, top_k)` scored by the task's
held-out `Evaluator` (the scorer `bertnas search` uses) and written to `OUT/results.json` in the
search format (bertnas/search/results.py; NB201 entries carry "benchmark" from the real table),
with `OUT/search.json` (settings, held-out set, timings) and `OUT/entropy.png` when there are
architecture weights.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping

logger = logging.getLogger("bertnas.strategies")


def prepare_config(config=None, **overrides):
    """The run's `PretrainConfig` with what a strategy implies: MAGIC-A alignment off (a learning
    strategy chooses every step's arch; RS-WS / SPOS are plain weight sharing), the uniform sampler for strategies that let the
    trainer sample (RS-WS, SPOS), and PC-DARTS' K as `space_options.partial_channels`."""
    from bertnas.errors import UserError
    from bertnas.train.config import load_config
    from bertnas.strategies import strategy_class
    from bertnas.tasks.vision import PARTIAL_CHANNEL_SPACES
    from bertnas.strategies.pcdarts import DEFAULT_K

    cfg = load_config(config, **overrides)
    if not cfg.strategy:
        raise UserError("run_strategy needs a strategy", "set strategy: darts (or --strategy NAME)")
    cls = strategy_class(cfg.strategy)
    unknown = sorted(set(cfg.strategy_options) - set(cls.defaults))
    if unknown:  # before any data is loaded or folder made
        raise UserError(f"strategy {cfg.strategy!r} has no option(s) {', '.join(unknown)}",
                        f"its options: {', '.join(sorted(cls.defaults)) or 'none'}")
    changes = {}
    if cfg.align:  # RS-WS / SPOS are plain weight sharing; MAGIC-A runs through `bertnas pretrain`
        changes["align"] = False
    if not cls.learns_weights and cfg.sampler != "uniform":
        changes["sampler"] = "uniform"
    if "partial_channels" in cls.defaults and cfg.space in PARTIAL_CHANNEL_SPACES:  # PC-DARTS' K -> the supernet
        k = cfg.strategy_options.get("partial_channels") or cfg.space_options.get("partial_channels") or DEFAULT_K
        changes["space_options"] = {**cfg.space_options, "partial_channels": k}
    if changes:
        logger.info("strategy %s: %s", cfg.strategy, ", ".join(f"{key}={v}" for key, v in changes.items()))
        cfg = dataclasses.replace(cfg, **changes)
    return cfg


def score_candidates(trainer, strategy, top_k: int) -> tuple[list, dict]:
    """(the strategy's candidates as ranked `Candidate`s, the held-out set's description)."""
    from bertnas.search.constraints import Constraints
    from bertnas.search.results import Candidate, rank

    task = trainer.task
    archs = list(dict.fromkeys(strategy.candidates(trainer, top_k)))  # distinct, in the strategy's order
    batches, heldout = task.heldout(eval_batches=trainer.cfg.eval_batches)
    evaluator = task.evaluator(batches, cache=False)
    constraints = Constraints()
    scored = []
    try:
        for arch in archs:
            try:
                costs = constraints.costs(task.space, arch)
            except NotImplementedError:  # a space without a cost model
                costs = {"params": 0, "flops": 0, "latency_ms": None}
            extra = {"strategy": strategy.name, **task.result_info(arch)}
            scored.append(Candidate(arch, float(evaluator(arch)), costs["params"], costs["flops"], costs["latency_ms"],
                                    extra))
    finally:
        trainer.trainable.train()
    return rank(scored, evaluator.higher_is_better), {**heldout, "higher_is_better": evaluator.higher_is_better}


def run_strategy(config: Mapping | str | None = None, top_k: int = 10, **overrides) -> dict:
    """Train under `config.strategy`, score its candidates, write OUT/results.json; returns a
    summary (the trainer's, plus "results": the ranked entries and "derived": the strategy's arch)."""
    from bertnas.search.results import to_entries, write_results
    from bertnas.train import checkpoint as ckpt_lib
    from bertnas.train.config import check_sources
    from bertnas.train.launch import reset_accelerate_state
    from bertnas.train.trainer import SupernetTrainer
    from bertnas.strategies.plots import plot_entropy

    cfg = prepare_config(config, **overrides)
    check_sources(cfg)
    is_main = int(os.environ.get("RANK", "0")) == 0
    started = time.perf_counter()
    with ckpt_lib.run_dir_guard(cfg.output_dir, cfg.resume_from_checkpoint, cfg.overwrite, is_main):
        trainer = SupernetTrainer(cfg)
        distributed = trainer.world_size > 1
        try:
            summary = trainer.train()
            trained = time.perf_counter() - started
            strategy = trainer.strategy
            ranked, heldout = score_candidates(trainer, strategy, top_k)
            derived = strategy.derive()
            if trainer.is_main:
                meta = {
                    "method": f"strategy:{strategy.name}",
                    "strategy": strategy.name,
                    "strategy_options": strategy.options,
                    "derived": derived.to_list(),
                    "checkpoint": summary.get("checkpoint"),
                    "step": summary.get("step"),
                    "heldout": heldout,
                    "space": {"name": cfg.space, "choices": len(trainer.space.choices), "size": trainer.space.size()},
                    "seconds": {"train": trained, "total": time.perf_counter() - started},
                    "final_log_fields": strategy.log_fields(),
                }
                write_results(cfg.output_dir, ranked, ranked, heldout["metric"], heldout["higher_is_better"], meta)
                plot_entropy(trainer.output_dir / "log.jsonl", trainer.output_dir / "entropy.png")  # none: RS-WS / SPOS
        finally:
            trainer.close()
            if not distributed:
                reset_accelerate_state()
    return {**summary, "derived": derived.to_list(), "results": to_entries(ranked, heldout["metric"])}


__all__ = ["prepare_config", "run_strategy", "score_candidates"]
