"""`search(checkpoint, method, ...)`: search a trained supernet for the best subnets under a budget.

The run's task (`bertnas/tasks/`) gives the space, the trained supernet and the held-out set;
the method comes from `SEARCH_METHODS` (name -> function), so a new method is one entry. Each
method takes its own options object (`options.py`: `ShrinkingOptions`, `EvolutionOptions`,
`RandomOptions`), built from `search()`'s keywords.
Writes OUT/results.json (ranked, best first), OUT/evaluated.json, OUT/search.json and
OUT/pareto.png (see `results.py` and docs/search.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from collections.abc import Mapping

from bertnas.core.registry import Registry
from bertnas.search.constraints import Constraints
from bertnas.search.options import EvolutionOptions, RandomOptions, SearchOptions, ShrinkingOptions

logger = logging.getLogger("bertnas.search")


# ----------------------------------------------------------------------------------------
# Methods: (task, space, evaluator, constraints, options object) -> (SearchOutcome, settings)
# ----------------------------------------------------------------------------------------


def _shrinking(task, space, evaluator, constraints, o: ShrinkingOptions):
    from bertnas.search.shrinking import BlockwiseScorer, block_ranges, blockwise_search, progressive_shrinking

    common = dict(higher_is_better=evaluator.higher_is_better, seed=o.seed, progress=o.progress)
    if o.blockwise:
        base = _base_arch(task, space, o.base_arch)
        scorer = BlockwiseScorer(task.align_model(), task.choice_layers(), evaluator.batches, base, o.block_size)
        outcome = blockwise_search(space, scorer, block_ranges(len(space.choices), o.block_size), constraints,
                                   candidates_per_block=o.candidates_per_block, top_k=o.top_k or 10,
                                   score_fn=evaluator, **common)
        outcome.info["base_arch"] = list(base.ops)
        return outcome, {"block_size": o.block_size, "candidates_per_block": o.candidates_per_block}
    settings = {k: o[k] for k in ("bins", "candidates_per_bin", "survivors_per_bin", "bin_by", "mutation_k")}
    outcome = progressive_shrinking(space, evaluator, constraints, num_bins=o.bins,
                                    candidates_per_bin=o.candidates_per_bin,
                                    survivors_per_bin=o.survivors_per_bin, bin_by=o.bin_by,
                                    mutation_k=o.mutation_k, **common)
    return outcome, settings


def _evolution(task, space, evaluator, constraints, o: EvolutionOptions):
    from bertnas.search.evolution import evolution_search

    settings = {k: o[k] for k in ("population", "generations", "parents", "mutation_k")}
    outcome = evolution_search(space, evaluator, constraints, population=o.population,
                               generations=o.generations, parents=o.parents, mutation_k=o.mutation_k,
                               higher_is_better=evaluator.higher_is_better, seed=o.seed, progress=o.progress)
    return outcome, settings


def _random(task, space, evaluator, constraints, o: RandomOptions):
    from bertnas.search.evolution import random_search

    outcome = random_search(space, evaluator, constraints, num_samples=o.num_samples,
                            higher_is_better=evaluator.higher_is_better, seed=o.seed, progress=o.progress)
    return outcome, {"num_samples": o.num_samples}


_shrinking.options_class = ShrinkingOptions
_evolution.options_class = EvolutionOptions
_random.options_class = RandomOptions
SEARCH_METHODS = Registry("search method", {"shrinking": _shrinking, "evolution": _evolution, "random": _random})


def register_search_method(name: str, options: type[SearchOptions] = SearchOptions):
    """Decorator: `@register_search_method("annealing", options=AnnealingOptions)` makes
    `--method annealing` run it, given an `AnnealingOptions` (a `SearchOptions` subclass: its
    fields are the keywords of `search()` it reads; the default gives only seed, top_k, progress)."""

    def add(fn):
        fn.options_class = options
        return SEARCH_METHODS.register(name, fn)

    return add


def options_class(method: str) -> type[SearchOptions]:
    """The options class of a registered method."""
    return getattr(SEARCH_METHODS[method], "options_class", SearchOptions)


def method_options(method: str, values: Mapping | SearchOptions) -> SearchOptions:
    """The options object of `method`: `values` if it is one, else built from the keywords."""
    cls = options_class(method)
    return values if isinstance(values, cls) else cls.from_values(
        values.to_dict() if isinstance(values, SearchOptions) else values)


def run_search_method(method: str, task, space, evaluator, constraints, options: Mapping | SearchOptions):
    """Run a registered method with its options object -> (SearchOutcome, settings)."""
    return SEARCH_METHODS[method](task, space, evaluator, constraints, method_options(method, options))


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def hf_progress(enabled: bool):
    """transformers' "Loading weights" bar only when progress bars are wanted."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def run_seq_len(state: dict, seq_len: int | None) -> int:
    return int(seq_len or (state.get("data") or {}).get("seq_len") or (state.get("config") or {}).get("seq_len") or 128)


def _base_arch(task, space, base_arch):
    """The teacher path of the block-wise search: given, else the run's MAGIC-A base, else BERT's."""
    if base_arch is not None:
        return space.arch(base_arch.split(",") if isinstance(base_arch, str) and "[" not in base_arch else base_arch)
    stored = (task.run_state.get("aligner") or {}).get("base_arch")
    if stored:
        return space.arch(stored)
    try:
        return space.bert_arch()
    except (AttributeError, ValueError):
        raise ValueError("The block-wise search needs a teacher path: pass --base-arch op,op,... (the run has no "
                         "MAGIC-A base and the space has no [mha12, ffn] path)") from None


def build_table(checkpoint, output: str | Path, seq_lens=None, batch_size: int = 1, check_archs: int = 5,
                device: str | None = None, seed: int = 0, threads: int | None = None, progress: bool = True,
                fit_archs: int = 0):
    """Measure a latency table for the supernet of `checkpoint` on this machine; save it as JSON.
    `fit_archs` > 0: also fit its correction on that many measured subnets (`build_latency_table`)."""
    from bertnas.models import BertNasConfig
    from bertnas.storage.checkpoint import MODEL_DIR, find_checkpoint, read_state
    from bertnas.search.latency import build_latency_table

    ckpt = find_checkpoint(checkpoint)
    config, state = BertNasConfig.from_pretrained(ckpt / MODEL_DIR), read_state(ckpt)
    seq_lens = list(seq_lens) if seq_lens else [run_seq_len(state, None)]
    table = build_latency_table(config, seq_lens, batch_size=batch_size, device=device or default_device(),
                                check_archs=check_archs, seed=seed, threads=threads, progress=progress,
                                fit_archs=fit_archs)
    table.save(output)
    return table


# ----------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------


def search(
    checkpoint,
    method: str = "shrinking",
    output_dir=None,
    *,
    max_params=None,
    max_flops=None,
    max_latency_ms: float | None = None,
    latency_table=None,
    seq_len: int | None = None,
    eval_batches: int = 8,
    batch_size: int | None = None,
    data: str | None = None,
    seed: int = 0,
    top_k: int | None = 10,
    device: str | None = None,
    progress: bool = True,
    # progressive shrinking
    bins: int = 3,
    candidates_per_bin: int = 16,
    survivors_per_bin: int = 2,
    bin_by: str = "params",
    blockwise: bool = False,
    block_size: int = 2,
    base_arch=None,
    candidates_per_block: int = 64,
    # evolution / random
    population: int = 16,
    generations: int = 8,
    parents: int = 4,
    mutation_k: int = 1,
    num_samples: int = 64,
    trust_checkpoint: bool = False,
    # a scorer in place of the evaluator (e.g. a calibrated hybrid ranker): (task, evaluator) -> scorer
    rescore=None,
) -> list[dict]:
    """Search the supernet of a training checkpoint; returns the ranked entries (best first,
    at most `top_k`) and, with `output_dir`, writes results.json, evaluated.json, search.json
    and pareto.png there. Scores are the task's held-out metric (losses: lower is better)."""
    from bertnas.tasks import load_task
    from bertnas.storage.checkpoint import verified_checkpoint
    from bertnas.search.latency import LatencyTable
    from bertnas.storage.results import batch_stderr, start_ranking, to_entries, write_results

    SEARCH_METHODS.get(method)  # an unknown name: one line listing the methods
    start_ranking()
    if blockwise and method != "shrinking":
        raise ValueError("blockwise=True is a variant of --method shrinking")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    # the method's own options object, from the keywords its class names
    options = method_options(method, dict(
        seed=seed, top_k=top_k, progress=progress,
        bins=bins, candidates_per_bin=candidates_per_bin, survivors_per_bin=survivors_per_bin, bin_by=bin_by,
        blockwise=blockwise, block_size=block_size, base_arch=base_arch, candidates_per_block=candidates_per_block,
        population=population, generations=generations, parents=parents, mutation_k=mutation_k,
        num_samples=num_samples))
    started = time.perf_counter()
    device = device or default_device()
    with hf_progress(progress):
        task = load_task(verified_checkpoint(checkpoint, trust=trust_checkpoint), device)
    model, ckpt, state, space = task.model, task.ckpt, task.run_state, task.space
    seq_len = run_seq_len(state, seq_len)

    table, table_path = None, None
    if latency_table is not None:
        table = latency_table if isinstance(latency_table, LatencyTable) else LatencyTable.load(latency_table)
        table_path = None if isinstance(latency_table, LatencyTable) else str(latency_table)
        table.check_config(model.config)
    elif max_latency_ms is not None:
        logger.info("no --latency-table: measuring one on this machine (seq len %d)", seq_len)
        from bertnas.search.latency import build_latency_table

        table = build_latency_table(model.config, [seq_len], device=device, seed=seed, progress=progress)
        if output_dir is not None:
            table_path = str(table.save(Path(output_dir) / "latency_table.json"))
    constraints = Constraints(max_params, max_flops, max_latency_ms, seq_len=seq_len, latency_table=table)
    constraints.check_feasible(space)  # fail before the held-out set is built

    batches, heldout = task.heldout(data=data, seq_len=seq_len, batch_size=batch_size, eval_batches=eval_batches)
    evaluator = task.evaluator(batches)
    if rescore is not None:  # same methods and constraints, another score per arch
        evaluator = rescore(task, evaluator)
        heldout = {**heldout, "metric": evaluator.metric}
    outcome, settings = run_search_method(method, task, space, evaluator, constraints, options)
    for candidate in {id(c): c for c in [*outcome.results, *outcome.evaluated]}.values():
        candidate.extra.update(task.result_info(candidate.arch))  # e.g. NB201's real benchmark accuracy

    results = outcome.results[:top_k] if top_k else outcome.results
    for candidate in results:  # the noise of each reported score: its spread over the held-out batches
        candidate.extra["score_stderr"] = batch_stderr(evaluator.batch_scores(candidate.arch))
    elapsed = time.perf_counter() - started
    meta = {
        "method": method + ("-blockwise" if blockwise else ""),
        "checkpoint": str(ckpt),
        "step": state.get("step"),
        "constraints": constraints.describe(),
        "heldout": heldout,
        "latency_table": table_path,
        "latency_prediction_error_pct": table.mean_abs_pct_error if table is not None else None,
        "latency_predictor": ((table.correction or {}).get("model", "sum")) if table is not None else None,
        "settings": {"seed": seed, "top_k": top_k, "eval_batches": eval_batches, "device": device, **settings},
        "space": {"choices": len(space.choices), "candidates": list(dict.fromkeys(c for cands in space.choices.values() for c in cands)),
                  "size": space.size()},
        "method_info": outcome.info,
        "seconds": {"total": elapsed, "scoring": evaluator.seconds},
        "archs_scored": evaluator.num_evaluated,
        "archs_per_second": evaluator.num_evaluated / evaluator.seconds if evaluator.seconds else None,
    }
    if output_dir is not None:
        write_results(output_dir, results, outcome.evaluated, heldout["metric"], evaluator.higher_is_better, meta)
    return to_entries(results, heldout["metric"], evaluator.higher_is_better)


__all__ = ["search", "build_table", "SEARCH_METHODS", "register_search_method", "default_device", "run_seq_len",
           "method_options", "options_class", "run_search_method", "SearchOptions", "ShrinkingOptions",
           "EvolutionOptions", "RandomOptions"]
