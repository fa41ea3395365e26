"""`bertnas finetune`: fine-tune any Hugging Face checkpoint on a GLUE task or SQuAD.

    bertnas finetune --task sst2 --model PATH_OR_ID --output-dir OUT [--data-dir DIR]
    bertnas finetune --train-file train.csv --validation-file dev.csv --model PATH_OR_ID --output-dir OUT
    bertnas finetune --dataset-name stanfordnlp/imdb --validation-split test --model PATH_OR_ID --output-dir OUT
        [--max-train-samples N] [--epochs E] [--lr LR] [--grid-lr 2e-5,5e-5 --grid-epochs 2,3]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bertnas.core.errors import UserError
from glue.tasks import SQUAD_TASKS, TASK_NAMES


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser, single_task: bool = True) -> None:
    """The `bertnas finetune` options (`single_task=False` leaves out --task, for multi-task recipes)."""
    if single_task:
        parser.add_argument("--task", type=str.lower, choices=list(TASK_NAMES),
                            help="GLUE task or squad / squad_v2 (or --train-file / --validation-file)")
        g = parser.add_argument_group("any classification / regression task from files (instead of --task)")
        g.add_argument("--train-file", help="training rows: .csv, .tsv, .json or .jsonl with a header")
        g.add_argument("--validation-file", help="scored rows, same columns")
        g.add_argument("--text-columns", type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
                       help="one or two text columns, e.g. sentence1,sentence2 (default: found by name)")
        g.add_argument("--label-column", default="label", help="the label column (fractions: a regression)")
        g = parser.add_argument_group("any classification / regression task from a datasets dataset (instead of --task)")
        g.add_argument("--dataset-name", help="a Hub dataset id (e.g. stanfordnlp/imdb), or a local folder "
                                              "(save_to_disk, or data files); columns: --text-columns / --label-column")
        g.add_argument("--dataset-config", help="the dataset's configuration (e.g. --dataset-name glue --dataset-config sst2)")
        g.add_argument("--train-split", default="train", help="split trained on (slices work: train[:2000])")
        g.add_argument("--validation-split", default="validation", help="split scored")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an earlier fine-tuning's results and model in --output-dir")
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--output-dir", required=True, help="where results.json, results.md and predictions go")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding glue/<TASK>/*.tsv and squad/ (default: $BERTNAS_DATA_DIR, else ../shared/data "
                             "beside the repository; the Hub when the task's files are not there)")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    parser.add_argument("--epochs", type=float, default=3.0, help="training epochs (> 0; fractions allowed)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="scoring batch size")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument("--max-length", type=int, default=None,
                        help="max tokens per input (default: 128, 384 for SQuAD; capped by the model's positions)")
    parser.add_argument("--seed", type=int, default=42, help="seed of training and of the --max-train-samples subset")
    parser.add_argument("--max-train-samples", type=int, default=None, help="random training subset of this size, taken before tokenising (default: every row)")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="score only the first N dev rows (default: every row)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    parser.add_argument("--fp16", action="store_true", help="fp16 mixed precision")
    parser.add_argument("--no-test-predictions", action="store_true",
                        help="skip the GLUE-server prediction files (saves the test-set forward passes)")
    parser.add_argument("--grid-lr", type=_floats, default=None, help="e.g. 2e-5,5e-5: try each, keep the best dev score")
    parser.add_argument("--grid-epochs", type=_floats, default=None, help="e.g. 2,3")
    parser.add_argument("--grid-batch-size", type=_ints, default=None, help="e.g. 16,32")
    parser.add_argument("--doc-stride", type=int, default=128, help="SQuAD: overlap between windows of a long context")
    parser.add_argument("--n-best", type=int, default=20, help="SQuAD: start/end candidates considered")
    parser.add_argument("--max-answer-length", type=int, default=30, help="SQuAD: longest answer in tokens")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own modeling code")
    parser.add_argument("--no-save-model", dest="save_model", action="store_false",
                        help="do not save the fine-tuned model (default: OUT/model/, save_pretrained layout)")
    parser.add_argument("--hub-metrics", action="store_true",
                        help="score with the Hub's `evaluate` metric code (remote code) instead of the local modules")
    from bertnas.cli.options import add_hf_aliases, add_hub_options, add_tracking_options

    g = parser.add_argument_group("logging, model card and the Hub")
    add_tracking_options(g)
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (Trainer's one-line dicts per --logging-steps instead)")
    g.add_argument("--license", help="license in the fine-tuned model's card (default: the source model's)")
    add_hub_options(g)
    add_hf_aliases(parser)


def settings_from_args(args: argparse.Namespace, task: str):
    from glue.common import Settings

    is_qa = isinstance(task, str) and task in SQUAD_TASKS
    return Settings(
        lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        max_length=args.max_length or (384 if is_qa else 128), seed=args.seed,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, bf16=args.bf16,
        fp16=getattr(args, "fp16", False), logging_steps=getattr(args, "logging_steps", None),
        report_to=getattr(args, "report_to", None) or "none", progress=getattr(args, "progress", True),
        license=getattr(args, "license", None),
    )


def run_task(args: argparse.Namespace, task: str, output_dir) -> dict:
    """Fine-tune on one task with the options in `args`; returns the results dict."""
    from dataclasses import replace

    from glue.common import check_model_path, check_settings

    settings = settings_from_args(args, task)
    check_model_path(args.model)  # before the heavy imports: bad input fails in a fraction of a second
    for lr in args.grid_lr or [settings.lr]:
        for epochs in args.grid_epochs or [settings.epochs]:
            for batch_size in args.grid_batch_size or [settings.batch_size]:
                check_settings(replace(settings, lr=lr, epochs=epochs, batch_size=batch_size))
    import bertnas.models  # noqa: F401 - registers model_type "bertnas" with the Auto classes (exported subnets)
    from glue.finetune import finetune

    if isinstance(task, str) and task in SQUAD_TASKS:
        from glue.squad import finetune_squad

        return finetune_squad(task, args.model, output_dir, settings, args.data_dir, args.trust_remote_code,
                              doc_stride=args.doc_stride, n_best=args.n_best, max_answer_len=args.max_answer_length,
                              save_model=getattr(args, "save_model", True),
                              hub_metrics=getattr(args, "hub_metrics", False))
    grid = {"lr": args.grid_lr, "epochs": args.grid_epochs, "batch_size": args.grid_batch_size}
    return finetune(task, args.model, output_dir, settings, args.data_dir, grid, args.trust_remote_code,
                    predict_test=not args.no_test_predictions, save_model=getattr(args, "save_model", True),
                    hub_metrics=getattr(args, "hub_metrics", False), dataset=getattr(args, "dataset", None))


def check_output_dir(output_dir, overwrite: bool) -> None:
    """An earlier fine-tuning's results (and model) in `output_dir` are replaced only with --overwrite."""
    from pathlib import Path

    from bertnas.core.errors import UserFileExistsError

    done = Path(output_dir) / "results.json"
    if done.is_file() and not overwrite:
        raise UserFileExistsError(f"{output_dir} already holds a fine-tuning result (results.json)",
                                  "pass --overwrite to replace it, or another --output-dir")


def run(args: argparse.Namespace) -> dict:
    from bertnas.storage.checkpoint import check_output_dir as check_folder, output_lock

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    check_folder(args.output_dir)
    check_output_dir(args.output_dir, getattr(args, "overwrite", False))
    from bertnas.cli.options import hub_repo
    from bertnas.train.tracking import trackers

    repo = hub_repo(args)  # bad Hub or tracker options fail before any loading
    trackers(getattr(args, "report_to", None))
    if repo is not None and not getattr(args, "save_model", True):
        raise UserError("--push-to-hub uploads the fine-tuned model; --no-save-model does not keep it",
                        "drop --no-save-model")
    task = args.task
    given = [flag for flag, value in (("--task", task), ("--train-file", getattr(args, "train_file", None)),
                                      ("--dataset-name", getattr(args, "dataset_name", None))) if value]
    if len(given) > 1:
        raise UserError(f"give one of {', '.join(given)}, not both", "drop all but one of them")
    if getattr(args, "dataset_config", None) and not getattr(args, "dataset_name", None):
        raise UserError("--dataset-config goes with --dataset-name", "add --dataset-name NAME, or drop it")
    if getattr(args, "train_file", None):
        from glue.files import load_files

        task, args.dataset = load_files(args.train_file, args.validation_file, args.text_columns, args.label_column)
    elif getattr(args, "dataset_name", None):
        from glue.files import load_dataset_columns

        task, args.dataset = load_dataset_columns(args.dataset_name, args.dataset_config, args.train_split,
                                                  args.validation_split, args.text_columns, args.label_column)
    elif task is None:
        raise UserError("no task", "pass --task sst2 (GLUE / SQuAD), --train-file TRAIN --validation-file DEV or "
                                   "--dataset-name NAME")
    # Two fine-tunings into one folder would overwrite each other's model and results.
    with output_lock(args.output_dir):
        check_output_dir(args.output_dir, getattr(args, "overwrite", False))  # again, now that we hold it
        result = run_task(args, task, args.output_dir)
    args.result = result  # what bertnas.finetune() returns
    if repo is not None:
        from bertnas.export import push_model_folder

        result["hub"] = push_model_folder(result["model_dir"], repo, private=bool(getattr(args, "private", False)))
    print(json.dumps({"task": result["task"], "eval": result["eval"], "train_seconds": result["train_seconds"],
                      "model_dir": result.get("model_dir")}), file=getattr(args, "stdout", None) or sys.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="python -m glue.cli", description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
