"""Option spellings of transformers users: every command also takes `TrainingArguments`' names.

`add_hf_aliases(parser)`, called after a command's options are added, makes
- each `--some-option` answer to `--some_option` too (not shown in `--help`), and
- the `TrainingArguments` names answer for the command's own option (`HF_NAMES`, shown in
  `--help` next to ours): `--learning_rate` is `--lr`, `--per_device_train_batch_size` is
  `--batch-size`, `--save_total_limit` is `--keep-last`, ...

`add_precision_flags` adds `--bf16` / `--fp16` as spellings of `--mixed-precision bf16 / fp16`.
Both spellings set the same destination, so a YAML config and `--set` keep working unchanged.
This is what `transformers.HfArgumentParser` gives for dataclass fields, without moving every
option into a dataclass.
"""

from __future__ import annotations

import argparse

# TrainingArguments name -> the bertnas option it is an alias of (where the command has it)
HF_NAMES = {
    "--output_dir": "--output-dir",
    "--learning_rate": "--lr",
    "--per_device_train_batch_size": "--batch-size",
    "--per_device_eval_batch_size": "--eval-batch-size",
    "--num_train_epochs": "--epochs",
    "--save_total_limit": "--keep-last",
    "--logging_steps": "--logging-steps",
    "--report_to": "--report-to",
    "--push_to_hub": "--push-to-hub",
    "--hub_model_id": "--hub-model-id",
    "--hub_private_repo": "--private",
    "--max_steps": "--max-steps",
    "--save_steps": "--save-steps",
    "--warmup_steps": "--warmup-steps",
    "--weight_decay": "--weight-decay",
    "--max_grad_norm": "--max-grad-norm",
    "--gradient_accumulation_steps": "--gradient-accumulation-steps",
    "--resume_from_checkpoint": "--resume-from-checkpoint",
    "--overwrite_output_dir": "--overwrite",
    "--disable_tqdm": "--no-progress",
}


def _all_actions(parser: argparse.ArgumentParser):
    return parser._option_string_actions  # shared by the parser and its argument groups


def add_hf_aliases(parser: argparse.ArgumentParser) -> None:
    """Register the underscore spellings (hidden) and TrainingArguments' names (shown) of every
    option `parser` has."""
    table = _all_actions(parser)
    for hf, ours in HF_NAMES.items():
        action = table.get(ours)
        if action is not None and hf not in table:
            action.option_strings.append(hf)  # shown in --help beside ours
            table[hf] = action
    for name, action in list(table.items()):
        if name.startswith("--") and "-" in name[2:]:
            alias = "--" + name[2:].replace("-", "_")
            table.setdefault(alias, action)  # parsed, not listed


def add_precision_flags(group, dest: str = "mixed_precision") -> None:
    """`--bf16` / `--fp16`: TrainingArguments' spellings of `--mixed-precision bf16 / fp16`."""
    group.add_argument("--bf16", dest=dest, action="store_const", const="bf16",
                       help="bf16 mixed precision (= --mixed-precision bf16)")
    group.add_argument("--fp16", dest=dest, action="store_const", const="fp16",
                       help="fp16 mixed precision (= --mixed-precision fp16)")


def add_tracking_options(group, logging_default=None) -> None:
    """`--report-to`, `--logging-steps`: the run's trackers and logging interval."""
    from bertnas.train.tracking import REPORT_TO

    group.add_argument("--report-to", metavar="TRACKER",
                       help=f"experiment tracker through accelerate: {', '.join(REPORT_TO)} (each needs its own "
                            "package; all: every one installed)")
    group.add_argument("--logging-steps", type=int, default=logging_default,
                       help="steps per tracker row and per console line (without a progress bar)")


def add_hub_options(group) -> None:
    """`--push-to-hub [REPO_ID]` (a bare flag takes --hub-model-id), `--hub-model-id`, `--private`."""
    group.add_argument("--push-to-hub", nargs="?", const=True, default=None, metavar="REPO_ID",
                       help="upload the result to the Hugging Face Hub (needs `hf auth login` or HF_TOKEN); the repo "
                            "is REPO_ID or --hub-model-id")
    group.add_argument("--hub-model-id", metavar="REPO_ID", help="the Hub repo of --push-to-hub")
    group.add_argument("--private", action="store_true", default=None, help="create the Hub repo private")


def hub_repo(args: argparse.Namespace) -> str | None:
    """The repo id to push to, or None; `--push-to-hub` without a repo id needs --hub-model-id."""
    from bertnas.core.errors import UserError

    push, repo = getattr(args, "push_to_hub", None), getattr(args, "hub_model_id", None)
    if push in (None, False):
        if repo:
            raise UserError("--hub-model-id names the repo of --push-to-hub", "add --push-to-hub, or drop it")
        return None
    if push is True:
        if not repo:
            raise UserError("--push-to-hub needs a repo id", "pass --push-to-hub USER/NAME or --hub-model-id USER/NAME")
        return repo
    return push


__all__ = ["HF_NAMES", "add_hf_aliases", "add_precision_flags", "add_tracking_options", "add_hub_options",
           "hub_repo"]
