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
    from bertnas.cli.options import add_hf_aliases, add_hub_options, add_precision_flags, add_tracking_options

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
    g = parser.add_argument_group("training (the recipe's train section; unset: the recipe's value)")
    g.add_argument("--lr", type=float, help="peak learning rate of the distillation")
    g.add_argument("--keep-last", type=int, help="checkpoints of OUT/supernet kept")
    g.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    add_precision_flags(g)
    add_tracking_options(g)
    g = parser.add_argument_group("model cards and the Hub")
    g.add_argument("--license", help="license of the exported students (default: the teacher's, from its model card)")
    add_hub_options(g)
    add_hf_aliases(parser)


# options that go into the recipe's train section (pretrain config keys)
TRAIN_OPTIONS = ("lr", "keep_last", "mixed_precision", "report_to", "logging_steps")


def recipe_config(args: argparse.Namespace):
    """The recipe: the --config file (or none) with the training options given here on top."""
    train = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k, None) is not None}
    if not train:
        return args.config
    from bertnas.train.config import read_yaml

    recipe = read_yaml(args.config) if args.config else {}
    recipe["train"] = {**(recipe.get("train") or {}), **train}
    return recipe


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertnas.cli import result_stream
    from bertnas.cli.options import hub_repo
    from bertnas.train.tracking import trackers

    repo = hub_repo(args)  # bad Hub or tracker options fail before the teacher is loaded
    trackers(getattr(args, "report_to", None))
    from bertnas.compress.run import compress

    summary = compress(args.teacher, budgets=args.budgets, corpus=args.corpus, steps=args.steps,
                       output_dir=args.output_dir, config=recipe_config(args),
                       resume_from_checkpoint=args.resume_from_checkpoint, method=args.method,
                       max_flops=args.max_flops, max_latency_ms=args.max_latency_ms, seq_len=args.seq_len,
                       batch_size=args.batch_size, overwrite=args.overwrite, progress=args.progress)
    if summary:  # empty on the non-main processes of `accelerate launch`
        from bertnas.export import complete_card, push_model_folder
        from bertnas.storage.plots import plot_log
        from bertnas.storage.strict_json import dumps

        out = Path(args.output_dir)
        plot_log(out / "supernet" / "log.jsonl", out / "training.png", title="compress (distillation)")
        info = {"base_model": args.teacher, "datasets": None if args.corpus == "builtin" else args.corpus,
                "license": args.license, "kind": "distilled", "tags": ["distillation"]}
        for label in summary:
            if (out / label / "README.md").is_file():
                complete_card(out / label, info)
        if repo is not None:  # one budget: the repo itself; several: REPO-<budget>
            for label in summary:
                target = repo if len(summary) == 1 else f"{repo}-{label}"
                summary[label]["hub"] = push_model_folder(out / label, target, private=bool(args.private))
        print(dumps(summary, indent=2), file=result_stream(args))
    args.result = summary  # what bertnas.compress() returns
    return 0


def main(argv: list[str] | None = None) -> int:
    """`recipes/compress.py` (under `accelerate launch`) with the errors and exit codes of `bertnas compress`."""
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="compress", description=__doc__.splitlines()[0])


__all__ = ["add_arguments", "run", "main"]
