"""What GLUE (`finetune.py`) and SQuAD (`squad.py`) fine-tuning share: the run settings, the
checks on the model path and maximum length, and the results page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Settings:
    """One fine-tuning run's hyper-parameters (a grid varies lr, epochs and batch_size)."""

    lr: float = 5e-5
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 64
    warmup_steps: int = 0
    weight_decay: float = 0.01
    max_length: int = 128
    seed: int = 42
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    bf16: bool = False


def check_model_path(model_name: str) -> None:
    """A local folder must hold a checkpoint; an export of several subnets holds one per sub-folder."""
    path = Path(model_name)
    if not path.is_dir() or (path / "config.json").is_file():
        return  # a checkpoint folder, or a Hub id
    inner = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
    hint = f"; it holds checkpoints in {inner}: pass one of them, e.g. {path / inner[0]}" if inner else ""
    raise FileNotFoundError(f"--model {model_name}: no config.json in this folder{hint}")


def capped_max_length(requested: int, model, tokenizer) -> int:
    """`requested`, lowered to what the model's position embeddings and its tokenizer can hold (a small
    searched subnet may have fewer positions than the 128/384 default)."""
    limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [n for n in limits if isinstance(n, int) and n < 1_000_000]  # tokenizers without a limit say 1e30
    limit = min(limits, default=None)
    if limit is not None and requested > limit:
        logger.warning("max length %d > the model's limit of %d tokens; using %d", requested, limit, limit)
        requested = limit
    return requested


def results_markdown(result: dict) -> str:
    eval_results = result["eval"]
    lines = [
        f"# {result['task']} fine-tuning of `{result['model']}`",
        "",
        "| task | " + " | ".join(eval_results) + " | score | train samples | train s |",
        "|---|" + "---|" * (len(eval_results) + 3),
        f"| {result['task']} | " + " | ".join(f"{v:.4f}" for v in eval_results.values())
        + f" | {result['score']:.2f} | {result['num_train_samples']} | {result['train_seconds']:.0f} |",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()),
    ]
    if len(result.get("grid", [])) > 1:
        lines += ["", "| grid lr | epochs | batch | score |", "|---|---|---|---|"]
        lines += [f"| {g['settings']['lr']} | {g['settings']['epochs']} | {g['settings']['batch_size']} | {g['score']:.2f} |"
                  for g in result["grid"]]
    return "\n".join(lines) + "\n"


def remove_if_empty(folder: Path) -> None:
    """Trainer creates its output_dir even when it saves nothing there; do not leave it behind empty."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
