"""`bertnas search`: the command line of `search(...)` (`api.py`) and of latency tables.

    bertnas search --checkpoint runs/toy --method shrinking --max-params 70k --output-dir runs/toy-search
    bertnas search --checkpoint runs/toy --method evolution --max-latency-ms 0.5 --latency-table lat.json ...
    bertnas search --checkpoint runs/toy --build-latency-table lat.json --seq-len 32

`--checkpoint` is a pre-training output dir (its latest checkpoint is used) or one
`checkpoint-<step>` folder. Writes OUT/results.json (ranked, best first), OUT/evaluated.json,
OUT/search.json and OUT/pareto.png (see `bertnas/search/results.py` and docs/search.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .api import SEARCH_METHODS, build_table, search
from .constraints import human, parse_size

METHODS = tuple(SEARCH_METHODS)


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


__all__ = ["add_arguments", "run", "main", "METHODS"]
