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
from bertnas.core.errors import UserError
from bertnas.train.config import BASE_REPLACEMENT, MIXED_PRECISION


def _arch_list(text: str) -> list:
    """An arch on the command line: `mha12,ffn` or a JSON list `["mha12", "ffn"]`."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"arch {text!r} is not valid JSON: {err}") from None
    return [op.strip() for op in text.split(",") if op.strip()]


def _choice_pair(text: str) -> tuple[str, str]:
    """`edge_1_0=nor_conv_3x3` on the command line."""
    name, sep, candidate = text.partition("=")
    if not sep or not name.strip() or not candidate.strip():
        raise argparse.ArgumentTypeError(f"expected CHOICE=CANDIDATE (e.g. edge_1_0=nor_conv_3x3), got {text!r}")
    return name.strip(), candidate.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bertnas pretrain` and `recipes/pretrain_supernet.py`. Unset options keep the
    YAML's value (or the built-in toy default). TrainingArguments' names work too (`--learning_rate`,
    `--per_device_train_batch_size`, `--output_dir`, ...: `bertnas/cli/options.py`)."""
    from bertnas.cli.options import (add_hf_aliases, add_hub_options, add_precision_flags,
                                     add_tracking_options)

    g = parser.add_argument_group("run")
    g.add_argument("--config", help="YAML config (recipes/configs/toy.yaml, recipes/configs/bert_base_magic.yaml)")
    g.add_argument("--output-dir", help="run folder: log.jsonl, checkpoint-<step>/, summary.json, training.png")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--save-steps", type=int, help="checkpoint every N optimizer steps (and at the end)")
    g.add_argument("--keep-last", type=int, help="checkpoints kept")
    g.add_argument("--seed", type=int)
    g.add_argument("--resume-from-checkpoint", help="'latest' (the output dir's newest checkpoint) or a checkpoint folder")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="start over in an --output-dir that holds a run (deletes only the run's own files)")
    g = parser.add_argument_group("model and search space")
    g.add_argument("--task", "--objective", dest="task", choices=TASKS.names(),
                   help="the task that trains the BERT chain (other spaces name their own); --objective: its old name")
    g.add_argument("--space", choices=SPACES.names(), help="search space (default: bert, the chain of the config's model)")
    g.add_argument("--arch", type=_arch_list,
                   help="train ONE fixed arch from scratch (stand-alone, e.g. to retrain a found arch): comma-separated "
                        "ops or a JSON list")
    g.add_argument("--init-from-bert", help="start the supernet from a BERT checkpoint (folder or Hub id)")
    g.add_argument("--mlm-probability", type=float)
    g.add_argument("--disc-weight", type=float, help="ELECTRA discriminator loss weight")
    g = parser.add_argument_group("sampling (MAGIC-T) and alignment (MAGIC-A)")
    g.add_argument("--sampler", choices=SAMPLERS.names(),
                   help="uniform (SPOS), walk (MAGIC-T), fair (FairNAS); constant comes with --arch")
    g.add_argument("--walk-k", type=int, help="layers changed per walk step")
    g.add_argument("--fixed-choice", dest="fixed_choices", type=_choice_pair, action="append", default=None,
                   metavar="CHOICE=CANDIDATE", help="hold a choice to one candidate every step (a few-shot child "
                   "supernet; repeatable)")
    g.add_argument("--init-from-supernet", help="start from a trained supernet's weights (its run folder or a "
                   "checkpoint folder): a few-shot child")
    g.add_argument("--align", action=argparse.BooleanOptionalAction, default=None, help="MAGIC-A alignment to a base subnet")
    g.add_argument("--align-weight", type=float)
    g.add_argument("--align-block-size", type=int, help="chain layers per aligned block")
    g.add_argument("--base-arch", type=_arch_list, help="comma-separated op names of the initial base subnet")
    g.add_argument("--base-replacement", choices=BASE_REPLACEMENT)
    g.add_argument("--base-every", type=int)
    g = parser.add_argument_group("data")
    g.add_argument("--data", help="corpus: a .txt/.jsonl file, a folder, or a datasets name[:config] (default: embedded)")
    g.add_argument("--data-split", help="split of a datasets --data (default: train), e.g. train[:10%%]")
    g.add_argument("--text-column", help="column of --data / --val-data holding the text (default: text)")
    g.add_argument("--streaming", action="store_true", default=None,
                   help="read --data as a stream (datasets' streaming mode), tokenised on the fly in corpus order; "
                        "checkpoints keep the position (the held-out rows: its first texts, or --val-data)")
    g.add_argument("--val-data", help="held-out text of its own (file, folder, datasets name) instead of a split of --data")
    g.add_argument("--data-seed", type=int, help="seed of the train / held-out split (independent of --seed)")
    g.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: train a WordPiece on the corpus)")
    g.add_argument("--seq-len", type=int)
    g = parser.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, help="per process, per micro-batch")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--max-grad-norm", type=float)
    g.add_argument("--gradient-accumulation-steps", type=int)
    g = parser.add_argument_group("precision and distribution")
    g.add_argument("--mixed-precision", choices=MIXED_PRECISION,
                   help="default: accelerate's setting (accelerate launch --mixed_precision, ACCELERATE_MIXED_PRECISION, "
                        "accelerate config), else no")
    add_precision_flags(g)
    g.add_argument("--deepspeed", help="DeepSpeed JSON config (recipes/configs/deepspeed_zero1.json / deepspeed_zero2.json)")
    g.add_argument("--verify-ranks", action="store_true", default=None, help="check every rank ends with the same weights")
    # The deepspeed launcher passes --local_rank to the script; the rank is also in the env.
    g.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS)
    g = parser.add_argument_group("logging and the Hub")
    add_tracking_options(g)
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (one line per --logging-steps instead)")
    add_hub_options(g)
    g = parser.add_argument_group("any other config key")
    g.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, value in YAML syntax; model.X / generator.X for model fields "
                        "(e.g. --set model.hidden_size=64 --set eval_batches=8)")
    add_hf_aliases(parser)


def args_to_config(args: argparse.Namespace) -> dict:
    import yaml

    values = {k: v for k, v in vars(args).items()
              if k not in ("command", "set_items", "local_rank", "stdout", "debug", "push_to_hub", "hub_model_id",
                           "private")}
    from bertnas.cli.options import hub_repo

    repo = hub_repo(args)
    if repo is not None:  # config keys, so a YAML's push_to_hub / hub_model_id work the same
        values.update(push_to_hub=True, hub_model_id=repo)
    if values.get("fixed_choices"):
        values["fixed_choices"] = dict(values["fixed_choices"])
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

    from bertnas.train.tracking import trackers

    trackers(cfg.report_to)  # a tracker's missing package: one line now, not after the data is loaded
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise UserError("push_to_hub needs a repo id", "pass --push-to-hub USER/NAME or --hub-model-id USER/NAME")
    summary = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        from bertnas.storage.strict_json import dumps

        finish_run(cfg, summary)
        args.result = summary  # what bertnas.pretrain() returns
        print(dumps(summary), file=getattr(args, "stdout", None) or sys.stdout)
    return 0


def finish_run(cfg, summary: dict) -> None:
    """After a run, on the main process: its `training.png`, and the final supernet on the Hub."""
    from pathlib import Path

    from bertnas.storage.plots import plot_log

    plot = plot_log(Path(cfg.output_dir) / "log.jsonl", title="pretrain")
    if plot is not None:
        summary["plot"] = str(plot)
    if cfg.push_to_hub and summary.get("checkpoint"):
        from bertnas.export import push_model_folder

        summary["hub"] = push_model_folder(Path(summary["checkpoint"]) / "model", cfg.hub_model_id,
                                           card_info={"base_model": cfg.init_from_bert, "datasets": cfg.data,
                                                      "kind": "supernet", "objective": cfg.task})


def main(argv: list[str] | None = None) -> int:
    """`recipes/pretrain_supernet.py` (under any launcher): the same errors and exit codes as `bertnas pretrain`."""
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="pretrain_supernet", description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
