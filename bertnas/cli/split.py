"""`bertnas split`: few-shot NAS (Zhao et al. 2021), one child supernet per candidate of a choice.

    bertnas split --parent RUN --output-dir OUT --steps S [--choice NAME] [--lr LR]

Each child starts from the parent supernet's weights, holds the choice to its candidate and trains
S more steps with the parent's config (one after another; an interrupted split resumes where it
stopped). OUT/few_shot.json names the child of each candidate: score an arch with the child that
holds it (`bertnas.pipelines.fewshot.child_for`; `bench/nb201_ranking.py --variants few-shot` does
so). `bertnas search` does not yet search across the children of a split.
"""

from __future__ import annotations

import argparse
import json
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--parent", required=True, help="the trained supernet: its run folder (latest checkpoint) or a checkpoint")
    a("--output-dir", required=True, help="OUT: few_shot.json and one run folder per candidate")
    a("--steps", type=int, required=True, help="S: training steps of each child")
    a("--choice", help="the choice split on (default: the space's first searchable choice)")
    a("--lr", type=float, help="peak learning rate of the children (default: the parent's)")
    a("--warmup-steps", type=int, help="warm-up steps of each child (default: 5 %% of --steps)")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from bertnas.cli import result_stream
    from bertnas.pipelines.fewshot import split_supernet

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {} if args.progress is None else {"progress": args.progress}
    record = split_supernet(args.parent, args.output_dir, steps=args.steps, choice=args.choice, lr=args.lr,
                            warmup_steps=args.warmup_steps, **overrides)
    print(json.dumps({"output_dir": str(args.output_dir), "choice": record["choice"],
                      "children": sorted(record["children"])}), file=result_stream(args))
    return 0


__all__ = ["add_arguments", "run"]
