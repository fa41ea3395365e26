"""`run_strategy(config)`: train a supernet under a search strategy, then score what it found.

    run_strategy({"space": "nb201", "strategy": "gaea-darts", "max_steps": 200,
                  "strategy_options": {"bilevel": False}, "output_dir": "runs/nb201-gaea"})

One training run (`pipelines.pretrain.training_run`: weight steps, checkpoints, exact resume,
`log.jsonl` with per step `arch_weights` and `entropy`) with the strategy as the trainer's arch
policy, then `strategy.candidates(ctx, top_k)` scored by the task's
held-out `Evaluator` (the scorer `bertnas search` uses) and written to `OUT/results.json` in the
search format (bertnas/storage/results.py; NB201 entries carry "benchmark" from the real table),
with `OUT/search.json` (settings, held-out set, timings) and `OUT/entropy.png` when there are
architecture weights.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

from bertnas.core.errors import UserError
from bertnas.pipelines.checks import check_names
from bertnas.pipelines.pretrain import training_run
from bertnas.search.api import run_search_method
from bertnas.search.constraints import Constraints
from bertnas.storage.results import Candidate, batch_stderr, rank, to_entries, write_results
from bertnas.strategies.pcdarts import DEFAULT_K
from bertnas.strategies.plots import plot_entropy
from bertnas.strategies.registry import STRATEGIES
from bertnas.supernet.policy import restore_train_mode
from bertnas.tasks.vision import PARTIAL_CHANNEL_SPACES
from bertnas.train.config import load_config

logger = logging.getLogger("bertnas.strategies")


def prepare_config(config=None, **overrides):
    """The run's `PretrainConfig` with what a strategy implies: MAGIC-A alignment off (a learning
    strategy chooses every step's arch; RS-WS / SPOS are plain weight sharing), the uniform sampler for strategies that let the
    trainer sample (RS-WS, SPOS), and PC-DARTS' K as `space_options.partial_channels`."""
    cfg = load_config(config, **overrides)
    if not cfg.strategy:
        raise UserError("run_strategy needs a strategy", "set strategy: darts (or --strategy NAME)")
    check_names(cfg)
    cls = STRATEGIES.get(cfg.strategy)
    unknown = sorted(set(cfg.strategy_options) - set(cls.defaults))
    if unknown:  # before any data is loaded or folder made
        raise UserError(f"strategy {cfg.strategy!r} has no option(s) {', '.join(unknown)}",
                        f"its options: {', '.join(sorted(cls.defaults)) or 'none'}")
    changes = {}
    if cfg.align:  # RS-WS / SPOS are plain weight sharing; MAGIC-A runs through `bertnas pretrain`
        changes["align"] = False
    if not cls.chooses_archs and cfg.sampler != "uniform":  # recorded as what the strategy's paths are
        changes["sampler"] = "uniform"
    if "partial_channels" in cls.defaults and cfg.space in PARTIAL_CHANNEL_SPACES:  # PC-DARTS' K -> the supernet
        k = cfg.strategy_options.get("partial_channels") or cfg.space_options.get("partial_channels") or DEFAULT_K
        changes["space_options"] = {**cfg.space_options, "partial_channels": k}
    if changes:
        logger.info("strategy %s: %s", cfg.strategy, ", ".join(f"{key}={v}" for key, v in changes.items()))
        cfg = dataclasses.replace(cfg, **changes)
    return cfg


def search_function(task, eval_batches: int):
    """`ctx.search` of a strategy run: (method, options) -> the archs a search method ranks best
    on the trained weights, scored by the task's held-out scorer (cached: the weights are final)."""

    def search(method: str, options: dict) -> list:
        batches, _ = task.heldout(eval_batches=eval_batches)
        outcome, _ = run_search_method(method, task, task.space, task.evaluator(batches), Constraints(), options)
        return [candidate.arch for candidate in outcome.results]

    return search


def score_candidates(trainer, strategy, top_k: int) -> tuple[list, dict]:
    """(the strategy's candidates as ranked `Candidate`s, the held-out set's description)."""
    task = trainer.task
    ctx = dataclasses.replace(trainer.context, search=search_function(task, trainer.cfg.eval_batches))
    archs = list(dict.fromkeys(strategy.candidates(ctx, top_k)))  # distinct, in the strategy's order
    batches, heldout = task.heldout(eval_batches=trainer.cfg.eval_batches)
    evaluator = task.evaluator(batches, cache=False)
    constraints = Constraints()
    scored = []
    with restore_train_mode(trainer.trainable):
        for arch in archs:
            try:
                costs = constraints.costs(task.space, arch)
            except NotImplementedError:  # a space without a cost model
                costs = {"params": 0, "flops": 0, "latency_ms": None}
            # the score's noise: its spread over the held-out batches
            extra = {"strategy": strategy.name, "score_stderr": batch_stderr(evaluator.batch_scores(arch)),
                     **task.result_info(arch)}
            scored.append(Candidate(arch, float(evaluator(arch)), costs["params"], costs["flops"], costs["latency_ms"],
                                    extra))
    return rank(scored, evaluator.higher_is_better), {**heldout, "higher_is_better": evaluator.higher_is_better}


def run_strategy(config: Mapping | str | None = None, top_k: int = 10, **overrides) -> dict:
    """Train under `config.strategy`, score its candidates, write OUT/results.json; returns a
    summary (the trainer's, plus "results": the ranked entries and "derived": the strategy's arch)."""
    cfg = prepare_config(config, **overrides)
    started = time.perf_counter()
    with training_run(cfg) as trainer:
        summary = trainer.train()
        trained = time.perf_counter() - started
        strategy = trainer.policy
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
    return {**summary, "derived": derived.to_list(), "results": to_entries(ranked, heldout["metric"], heldout["higher_is_better"])}


__all__ = ["prepare_config", "run_strategy", "score_candidates", "search_function"]
