"""`bertnas compress`: small searched BERTs distilled from a big one.

    bertnas compress --teacher PATH_OR_ID --budgets 5M,10M --corpus PATH|NAME|builtin --steps N \\
        --output-dir OUT [--config recipes/compress.yaml] [--resume-from-checkpoint latest]

Writes OUT/<budget>/ (one exported model per budget, with a model card), OUT/summary.json keyed
by budget as given, and OUT/supernet/ (the resumable distillation run). Budgets count the
student's non-embedding parameters. The summary JSON is printed on stdout. See docs/compress.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--teacher", required=True, help="a Hugging Face BERT: local folder or Hub id")
    a("--budgets", default="5M,10M,30M,60M", help="non-embedding parameter budgets, comma-separated")
    a("--corpus", default="builtin",
      help="distillation text: a .txt/.jsonl file, a folder, a datasets name[:config], or builtin (embedded corpus)")
    a("--steps", type=int, required=True, help="distillation steps of the student supernet")
    a("--output-dir", required=True, help="OUT: OUT/<budget>/, OUT/summary.json, OUT/supernet/")
    a("--config", help="recipe YAML (student / distill / train / search sections; recipes/compress.yaml)")
    a("--resume-from-checkpoint", help="'latest' (OUT/supernet's newest checkpoint) or a checkpoint folder")
    a("--method", choices=("shrinking", "evolution"), help="search per budget (default: the recipe's, shrinking)")
    a("--max-flops", help="also bound FLOPs per sequence, e.g. 2G")
    a("--max-latency-ms", type=float, help="also bound predicted latency (measures a latency table here)")
    a("--seq-len", type=int, help="tokens per training / held-out row (default: the recipe's, 128)")
    a("--batch-size", type=int, help="training batch size (default: the recipe's, 8)")
    a("--overwrite", action="store_true", help="start the distillation run over in OUT/supernet")
    a("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from bertnas.cli import result_stream
    from bertnas.compress.run import compress

    summary = compress(args.teacher, budgets=args.budgets, corpus=args.corpus, steps=args.steps,
                       output_dir=args.output_dir, config=args.config,
                       resume_from_checkpoint=args.resume_from_checkpoint, method=args.method,
                       max_flops=args.max_flops, max_latency_ms=args.max_latency_ms, seq_len=args.seq_len,
                       batch_size=args.batch_size, overwrite=args.overwrite, progress=args.progress)
    if summary:  # empty on the non-main processes of `accelerate launch`
        from bertnas.storage.strict_json import dumps

        print(dumps(summary, indent=2), file=result_stream(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`recipes/compress.py` (under `accelerate launch`) with the errors and exit codes of `bertnas compress`."""
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="compress", description=__doc__.splitlines()[0])


__all__ = ["add_arguments", "run", "main"]
