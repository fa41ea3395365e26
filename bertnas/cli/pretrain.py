"""`bertnas pretrain` and `recipes/pretrain_supernet.py`: the command line of supernet training.

    bertnas pretrain --config recipes/configs/toy.yaml --output-dir runs/toy
    bertnas pretrain --arch mha12,ffn --output-dir runs/standalone     # one fixed arch, from scratch
    accelerate launch recipes/pretrain_supernet.py --config recipes/configs/bert_base_magic.yaml ...

Unset options keep the YAML's value (or the built-in toy default); see docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

from bertnas.supernet.registry import SAMPLERS
from bertnas.tasks.registry import SPACES, TASKS
from bertnas.train.config import BASE_REPLACEMENT, MIXED_PRECISION, REPORT_TO


def _arch_list(text: str) -> list:
    """An arch on the command line: `mha12,ffn` or a JSON list `["mha12", "ffn"]`."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"arch {text!r} is not valid JSON: {err}") from None
    return [op.strip() for op in text.split(",") if op.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bertnas pretrain` and `recipes/pretrain_supernet.py`. Unset options keep the
    YAML's value (or the built-in toy default)."""
    a = parser.add_argument
    a("--config", help="YAML config (recipes/configs/toy.yaml, recipes/configs/bert_base_magic.yaml)")
    a("--output-dir", help="run folder: log.jsonl, checkpoint-<step>/, summary.json")
    a("--objective", choices=TASKS.names(), help="the task that trains the BERT chain (other spaces name their own)")
    a("--space", choices=SPACES.names(), help="search space (default: bert, the chain of the config's model)")
    a("--sampler", choices=SAMPLERS.names(),
      help="uniform (SPOS), walk (MAGIC-T), fair (FairNAS); constant comes with --arch")
    a("--arch", type=_arch_list,
      help="train ONE fixed arch from scratch (stand-alone, e.g. to retrain a found arch): comma-separated ops "
           "or a JSON list")
    a("--walk-k", type=int, help="layers changed per walk step")
    a("--align", action=argparse.BooleanOptionalAction, default=None, help="MAGIC-A alignment to a base subnet")
    a("--align-weight", type=float)
    a("--align-block-size", type=int, help="chain layers per aligned block")
    a("--base-arch", type=_arch_list, help="comma-separated op names of the initial base subnet")
    a("--base-replacement", choices=BASE_REPLACEMENT)
    a("--base-every", type=int)
    a("--max-steps", type=int)
    a("--save-steps", type=int, help="checkpoint every N optimizer steps (and at the end)")
    a("--keep-last", type=int, help="checkpoints kept")
    a("--seed", type=int)
    a("--resume-from-checkpoint", help="'latest' (the output dir's newest checkpoint) or a checkpoint folder")
    a("--overwrite", action="store_true", default=None,
      help="start over in an --output-dir that holds a run (deletes only the run's own files)")
    a("--data", help="corpus: a .txt/.jsonl file, a folder, or a datasets name[:config] (default: embedded)")
    a("--val-data", help="held-out text of its own (file, folder, datasets name) instead of a split of --data")
    a("--data-seed", type=int, help="seed of the train / held-out split (independent of --seed)")
    a("--tokenizer", help="tokenizer folder or Hub id (default: train a WordPiece on the corpus)")
    a("--init-from-bert", help="start the supernet from a BERT checkpoint (folder or Hub id)")
    a("--batch-size", type=int, help="per process, per micro-batch")
    a("--seq-len", type=int)
    a("--lr", type=float)
    a("--weight-decay", type=float)
    a("--warmup-steps", type=int)
    a("--max-grad-norm", type=float)
    a("--mlm-probability", type=float)
    a("--disc-weight", type=float, help="ELECTRA discriminator loss weight")
    a("--mixed-precision", choices=MIXED_PRECISION,
      help="default: accelerate's setting (accelerate launch --mixed_precision, ACCELERATE_MIXED_PRECISION, "
           "accelerate config), else no")
    a("--gradient-accumulation-steps", type=int)
    a("--deepspeed", help="DeepSpeed JSON config (recipes/configs/deepspeed_zero1.json / deepspeed_zero2.json)")
    a("--report-to", choices=REPORT_TO)
    a("--verify-ranks", action="store_true", default=None, help="check every rank ends with the same weights")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    # The deepspeed launcher passes --local_rank to the script; the rank is also in the env.
    a("--local_rank", "--local-rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS)
    a("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
      help="any other config key, value in YAML syntax; model.X / generator.X for model fields "
           "(e.g. --set model.hidden_size=64 --set eval_batches=8)")


def args_to_config(args: argparse.Namespace) -> dict:
    import yaml

    from bertnas.core.errors import UserError

    values = {k: v for k, v in vars(args).items() if k not in ("command", "set_items", "local_rank", "stdout", "debug")}
    for item in getattr(args, "set_items", []) or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}", "e.g. --set model.hidden_size=64")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {item}: the value is not valid YAML", "quote it, e.g. --set key='a: b'") from None
        if "." in key:
            section, field_name = key.split(".", 1)
            if section not in ("model", "generator"):
                raise UserError(f"--set {key}: only model.X and generator.X take a dotted key",
                                "e.g. --set model.hidden_size=64 or --set eval_batches=8")
            values.setdefault(section, {})
            values[section] = {**(values[section] or {}), field_name: value}
        else:
            values[key.replace("-", "_")] = value
    return values


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    from bertnas.storage.checkpoint import RunLock, check_run_dir
    from bertnas.pipelines.checks import preflight
    from bertnas.train.config import load_config

    cfg = load_config(args_to_config(args))  # every option checked before torch is imported
    preflight(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # pretrain() checks again when it takes the folder
        check_run_dir(cfg.output_dir, cfg.resume_from_checkpoint, cfg.overwrite)
        RunLock(cfg.output_dir).check()
    from bertnas.pipelines.pretrain import pretrain

    summary = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        from bertnas.storage.strict_json import dumps

        print(dumps(summary), file=getattr(args, "stdout", None) or sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`recipes/pretrain_supernet.py` (under any launcher): the same errors and exit codes as `bertnas pretrain`."""
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="pretrain_supernet", description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
