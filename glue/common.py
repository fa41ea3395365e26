"""What GLUE (`finetune.py`) and SQuAD (`squad.py`) fine-tuning share: the run settings, the
checks on the model path and maximum length, and the results page."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from bertnas.core.errors import UserError, UserFileError, check_model_source

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


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hub's endpoint answers at all (any HTTP status) within `timeout` seconds."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def check_model_path(model_name: str) -> None:
    """A local folder must hold a checkpoint; an export of several subnets holds one per sub-folder;
    a bertnas pre-training run (or one of its checkpoints) must be exported first; a Hub id needs
    the Hub online."""
    check_model_source(model_name, "--model")
    path = Path(model_name)
    if not path.is_dir():
        if path.exists():
            raise UserError(f"--model {model_name} is a file", "give a checkpoint folder (config.json, weights)")
        if not hub_reachable():  # transformers would retry for minutes, then print a traceback
            raise UserError(f"--model {model_name} is not a local folder and the Hugging Face Hub is unreachable",
                            "give a local checkpoint folder (e.g. an exported subnet), or go online")
        return  # a Hub id
    ckpt = path if (path / "state.json").is_file() and (path / "model").is_dir() else None
    if ckpt is None and any(p.name.startswith("checkpoint-") and (p / "state.json").is_file() for p in path.iterdir()):
        ckpt = path
    if ckpt is not None:
        raise UserError(f"--model {model_name} is a bertnas pre-training run, not a model",
                        f"export a subnet first (bertnas export --checkpoint {model_name} --arch OPS --output-dir "
                        "exports/subnet) and fine-tune that folder")
    if (path / "config.json").is_file():
        return
    inner = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
    hint = f"it holds checkpoints in {inner}: pass one of them, e.g. {path / inner[0]}" if inner else \
        "give a folder holding config.json and the weights"
    raise UserFileError(f"--model {model_name}: no config.json in this folder", hint)


def check_settings(settings: Settings) -> None:
    """Values that would train nothing or die in torch: clear errors before any loading."""
    if not (settings.epochs > 0 and math.isfinite(settings.epochs)):
        raise UserError(f"--epochs must be > 0, got {settings.epochs}",
                        "pass e.g. --epochs 3 (with 0 the untrained model would be scored)")
    for name in ("batch_size", "eval_batch_size", "max_length"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(settings, name)}",
                            f"pass --{name.replace('_', '-')} 1 or more")
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}",
                            f"leave --{name.replace('_', '-')} out to use every row")
    if settings.lr <= 0:
        raise UserError(f"--lr must be > 0, got {settings.lr}", "e.g. --lr 5e-5")
    if settings.warmup_steps < 0:
        raise UserError(f"--warmup-steps must be >= 0, got {settings.warmup_steps}", "e.g. --warmup-steps 0")


def save_finetuned(model, tokenizer, folder: Path) -> Path:
    """The fine-tuned model in the standard `save_pretrained` layout (written into a temporary
    folder, then renamed into place)."""
    import shutil

    from bertnas.storage.checkpoint import swap_folder

    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    swap_folder(tmp, folder, folder.with_name(f".old-{folder.name}"))
    return folder


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
