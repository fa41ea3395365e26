"""Search a trained supernet for the best subnets under a budget (`bertnas search`, `search(...)`).

    bertnas search --checkpoint runs/toy --method shrinking --max-params 70k --output-dir runs/toy-search
    bertnas search --checkpoint runs/toy --method evolution --max-latency-ms 0.5 --latency-table lat.json ...
    bertnas search --checkpoint runs/toy --build-latency-table lat.json --seq-len 32

`--checkpoint` is a pre-training output dir (its latest checkpoint is used) or one
`checkpoint-<step>` folder. Writes OUT/results.json (ranked, best first), OUT/evaluated.json,
OUT/search.json and OUT/pareto.png (see `bertnas/search/results.py` and docs/search.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

import torch

from .constraints import Constraints, human, parse_size

logger = logging.getLogger("bertnas.search")

METHODS = ("shrinking", "evolution", "random")


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _space_and_config(checkpoint):
    """(config, checkpoint folder, state) without loading weights (enough for latency tables)."""
    from ..models import BertNasConfig
    from ..train.checkpoint import MODEL_DIR, find_checkpoint, read_state

    ckpt = find_checkpoint(checkpoint)
    return BertNasConfig.from_pretrained(ckpt / MODEL_DIR), ckpt, read_state(ckpt)


@contextlib.contextmanager
def _hf_progress(enabled: bool):
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


def _seq_len(state: dict, seq_len: int | None) -> int:
    return int(seq_len or (state.get("data") or {}).get("seq_len") or (state.get("config") or {}).get("seq_len") or 128)


def build_table(checkpoint, output: str | Path, seq_lens=None, batch_size: int = 1, check_archs: int = 5,
                device: str | None = None, seed: int = 0, threads: int | None = None, progress: bool = True):
    """Measure a latency table for the supernet of `checkpoint` on this machine; save it as JSON."""
    from .latency import build_latency_table

    config, _, state = _space_and_config(checkpoint)
    seq_lens = list(seq_lens) if seq_lens else [_seq_len(state, None)]
    table = build_latency_table(config, seq_lens, batch_size=batch_size, device=device or _default_device(),
                                check_archs=check_archs, seed=seed, threads=threads, progress=progress)
    table.save(output)
    return table


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
) -> list[dict]:
    """Search the supernet of a pre-training checkpoint; returns the ranked entries (best first,
    at most `top_k`) and, with `output_dir`, writes results.json, evaluated.json, search.json
    and pareto.png there. Scores are held-out losses (lower is better)."""
    from ..spaces import BertSpace
    from .evaluator import Evaluator, electra_loss, heldout_from_checkpoint, load_supernet, mlm_loss
    from .evolution import evolution_search, random_search
    from .latency import LatencyTable
    from .results import to_entries, write_results
    from .shrinking import BlockwiseScorer, block_ranges, blockwise_search, progressive_shrinking

    if method not in METHODS:
        raise ValueError(f"Unknown search method {method!r}; choose one of {', '.join(METHODS)}")
    if blockwise and method != "shrinking":
        raise ValueError("blockwise=True is a variant of --method shrinking")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    started = time.perf_counter()
    device = device or _default_device()
    with _hf_progress(progress):
        model, ckpt, state = load_supernet(checkpoint, device)
    space = BertSpace(model.config)
    seq_len = _seq_len(state, seq_len)

    table, table_path = None, None
    if latency_table is not None:
        table = latency_table if isinstance(latency_table, LatencyTable) else LatencyTable.load(latency_table)
        table_path = None if isinstance(latency_table, LatencyTable) else str(latency_table)
        table.check_config(model.config)
    elif max_latency_ms is not None:
        logger.info("no --latency-table: measuring one on this machine (seq len %d)", seq_len)
        from .latency import build_latency_table

        table = build_latency_table(model.config, [seq_len], device=device, seed=seed, progress=progress)
        if output_dir is not None:
            table_path = str(table.save(Path(output_dir) / "latency_table.json"))
    constraints = Constraints(max_params, max_flops, max_latency_ms, seq_len=seq_len, latency_table=table)
    constraints.check_feasible(space)  # fail before the held-out set is built

    batches, heldout = heldout_from_checkpoint(model, ckpt, state, data=data, seq_len=seq_len, batch_size=batch_size,
                                               eval_batches=eval_batches, device=device)
    loss_fn = electra_loss if heldout["metric"] == "electra_disc_loss" else mlm_loss
    evaluator = Evaluator(model, batches, loss_fn=loss_fn, metric=heldout["metric"], space=space)

    common = dict(higher_is_better=False, seed=seed, progress=progress)
    if method == "shrinking" and blockwise:
        base = _base_arch(space, state, base_arch)
        scorer = BlockwiseScorer(model, evaluator.batches, base, block_size)
        outcome = blockwise_search(space, scorer, block_ranges(len(space.choices), block_size), constraints,
                                   candidates_per_block=candidates_per_block, top_k=top_k or 10, score_fn=evaluator,
                                   **common)
        outcome.info["base_arch"] = list(base.ops)
    elif method == "shrinking":
        outcome = progressive_shrinking(space, evaluator, constraints, num_bins=bins,
                                        candidates_per_bin=candidates_per_bin, survivors_per_bin=survivors_per_bin,
                                        bin_by=bin_by, mutation_k=mutation_k, **common)
    elif method == "evolution":
        outcome = evolution_search(space, evaluator, constraints, population=population, generations=generations,
                                   parents=parents, mutation_k=mutation_k, **common)
    else:
        outcome = random_search(space, evaluator, constraints, num_samples=num_samples, **common)

    if blockwise:
        settings = {"block_size": block_size, "candidates_per_block": candidates_per_block}
    elif method == "shrinking":
        settings = {"bins": bins, "candidates_per_bin": candidates_per_bin, "survivors_per_bin": survivors_per_bin,
                    "bin_by": bin_by, "mutation_k": mutation_k}
    elif method == "evolution":
        settings = {"population": population, "generations": generations, "parents": parents,
                    "mutation_k": mutation_k}
    else:
        settings = {"num_samples": num_samples}
    results = outcome.results[:top_k] if top_k else outcome.results
    elapsed = time.perf_counter() - started
    meta = {
        "method": method + ("-blockwise" if blockwise else ""),
        "checkpoint": str(ckpt),
        "step": state.get("step"),
        "constraints": constraints.describe(),
        "heldout": heldout,
        "latency_table": table_path,
        "latency_prediction_error_pct": table.mean_abs_pct_error if table is not None else None,
        "settings": {"seed": seed, "top_k": top_k, "eval_batches": eval_batches, "device": device, **settings},
        "space": {"choices": len(space.choices), "candidates": list(model.config.candidates), "size": space.size()},
        "method_info": outcome.info,
        "seconds": {"total": elapsed, "scoring": evaluator.seconds},
        "archs_scored": evaluator.num_evaluated,
        "archs_per_second": evaluator.num_evaluated / evaluator.seconds if evaluator.seconds else None,
    }
    if output_dir is not None:
        write_results(output_dir, results, outcome.evaluated, heldout["metric"], False, meta)
    return to_entries(results, heldout["metric"])


def _base_arch(space, state: dict, base_arch):
    """The teacher path of the block-wise search: given, else the run's MAGIC-A base, else BERT's."""
    if base_arch is not None:
        return space.arch(base_arch.split(",") if isinstance(base_arch, str) and "[" not in base_arch else base_arch)
    stored = (state.get("aligner") or {}).get("base_arch")
    if stored:
        return space.arch(stored)
    try:
        return space.bert_arch()
    except ValueError:
        raise ValueError("The block-wise search needs a teacher path: pass --base-arch op,op,... (the run has no "
                         "MAGIC-A base and the space has no [mha12, ffn] path)") from None


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--checkpoint", required=True, help="pre-training output dir (latest checkpoint) or a checkpoint-<step> folder")
    a("--method", choices=METHODS, default="shrinking")
    a("--output-dir", help="where results.json, evaluated.json, search.json and pareto.png go")
    g = parser.add_argument_group("budget")
    g.add_argument("--max-params", type=_size, help="backbone parameters, e.g. 10M, 1.5G, 250k")
    g.add_argument("--max-flops", type=_size, help="FLOPs per sequence of --seq-len tokens, e.g. 2G")
    g.add_argument("--max-latency-ms", type=float, help="predicted latency from the latency table")
    g.add_argument("--latency-table", help="a table built by --build-latency-table (one is measured if absent "
                                           "and --max-latency-ms is set)")
    g.add_argument("--seq-len", type=int, help="sequence length of FLOPs, latency and the held-out set "
                                              "(default: the run's)")
    g = parser.add_argument_group("scoring")
    g.add_argument("--eval-batches", type=int, default=8, help="held-out batches per subnet score")
    g.add_argument("--batch-size", type=int, help="held-out batch size (default: the run's)")
    g.add_argument("--data", help="held-out text source instead of the run's (file, folder, datasets name)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    a("--seed", type=int, default=0)
    a("--top-k", type=int, default=10, help="entries kept in results.json")
    a("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g = parser.add_argument_group("progressive shrinking")
    g.add_argument("--bins", type=int, default=3, help="B: size bins")
    g.add_argument("--candidates-per-bin", type=int, default=16, help="E: candidates scored per bin and stage")
    g.add_argument("--survivors-per-bin", type=int, default=2, help="m: survivors per bin at the end")
    g.add_argument("--bin-by", choices=("params", "latency"), default="params")
    g.add_argument("--blockwise", action="store_true", help="block-wise variant (per-block losses + lookup table)")
    g.add_argument("--block-size", type=int, default=2, help="chain layers per block (block-wise)")
    g.add_argument("--base-arch", help="teacher path for block losses, comma-separated ops (default: the run's base)")
    g.add_argument("--candidates-per-block", type=int, default=64)
    g = parser.add_argument_group("evolution / random")
    g.add_argument("--population", type=int, default=16)
    g.add_argument("--generations", type=int, default=8)
    g.add_argument("--parents", type=int, default=4)
    g.add_argument("--mutation-k", type=int, default=1, help="ops changed per mutation")
    g.add_argument("--num-samples", type=int, default=64, help="archs scored by random search")
    g = parser.add_argument_group("latency table")
    g.add_argument("--build-latency-table", metavar="OUT.json",
                   help="measure per-op latencies of the checkpoint's supernet on this machine and exit")
    g.add_argument("--latency-seq-lens", type=_int_list, help="seq lens of the table, e.g. 32,128 (default --seq-len)")
    g.add_argument("--latency-batch-size", type=int, default=1)
    g.add_argument("--latency-check-archs", type=int, default=5, help="random subnets measured for the error")
    g.add_argument("--latency-threads", type=int, help="torch CPU threads while measuring (default: torch's)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.build_latency_table:
        seq_lens = args.latency_seq_lens or ([args.seq_len] if args.seq_len else None)
        table = build_table(args.checkpoint, args.build_latency_table, seq_lens, args.latency_batch_size,
                            args.latency_check_archs, args.device, args.seed, args.latency_threads, args.progress)
        err = table.data["prediction_error"]
        print(f"latency table -> {args.build_latency_table}: {len(table.ops)} ops x seq lens {table.seq_lens}; "
              f"prediction error on {len(err['archs'])} random subnets: mean {err['mean_abs_pct_error']:.1f}% "
              f"(max {err['max_abs_pct_error']:.1f}%)")
        return 0
    if args.output_dir is None:
        raise SystemExit("bertnas search: --output-dir is required (results.json and pareto.png go there)")
    entries = search(
        args.checkpoint, args.method, args.output_dir, max_params=args.max_params, max_flops=args.max_flops,
        max_latency_ms=args.max_latency_ms, latency_table=args.latency_table, seq_len=args.seq_len,
        eval_batches=args.eval_batches, batch_size=args.batch_size, data=args.data, seed=args.seed,
        top_k=args.top_k, device=args.device, progress=args.progress, bins=args.bins,
        candidates_per_bin=args.candidates_per_bin, survivors_per_bin=args.survivors_per_bin, bin_by=args.bin_by,
        blockwise=args.blockwise, block_size=args.block_size, base_arch=args.base_arch,
        candidates_per_block=args.candidates_per_block, population=args.population, generations=args.generations,
        parents=args.parents, mutation_k=args.mutation_k, num_samples=args.num_samples,
    )
    print(f"{'rank':>4}  {'score':>8}  {'params':>8}  {'FLOPs':>8}  {'lat ms':>7}  arch")
    for e in entries:
        latency = f"{e['latency_ms']:.3f}" if e["latency_ms"] is not None else "-"
        print(f"{e['rank']:>4}  {e['score']:8.4f}  {human(e['params']):>8}  {human(e['flops']):>8}  {latency:>7}  "
              f"{','.join(e['arch'])}")
    print(f"-> {Path(args.output_dir) / 'results.json'}, {Path(args.output_dir) / 'pareto.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


__all__ = ["search", "build_table", "add_arguments", "run", "main", "METHODS"]
