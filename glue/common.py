"""What GLUE (`finetune.py`) and SQuAD (`squad.py`) fine-tuning share: the run settings, the
checks on the model path and maximum length, and the results page."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from bertnas.core.errors import UserError, UserFileError, check_model_source
from bertnas.export import hub_reachable

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
    fp16: bool = False
    logging_steps: int | None = None  # None: a quarter of an epoch
    report_to: str = "none"  # Trainer's trackers (none, all, tensorboard, wandb, mlflow, ...)
    progress: bool = True  # False: Trainer's one-line dicts per logging step instead of a bar
    license: str | None = None  # of the fine-tuned model's card (default: the source model's)


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
    if settings.fp16 and settings.bf16:
        raise UserError("--fp16 and --bf16 both given", "pick one precision")
    if settings.fp16:
        import torch

        if not torch.cuda.is_available():  # Trainer's own refusal is a traceback from inside transformers
            raise UserError("--fp16 needs a CUDA GPU and none is visible", "use --bf16 on CPU, or neither")
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


def trainer_options(settings: Settings, train_rows: int) -> dict:
    """The `TrainingArguments` of precision, logging interval, trackers and progress bar."""
    import torch

    from bertnas.train.tracking import trackers

    names = trackers(settings.report_to)  # a tracker's missing package: one line naming it
    return dict(
        bf16=settings.bf16, fp16=settings.fp16,
        use_cpu=(settings.bf16 or settings.fp16) and not torch.cuda.is_available(),  # CPU autocast, said explicitly
        logging_steps=settings.logging_steps or max(1, math.ceil(train_rows / settings.batch_size) // 4),
        report_to=names or "none", disable_tqdm=not settings.progress,
    )


def finish_finetuned(out_dir: Path, result: dict, spec, log_history: list, model_source: str,
                     license: str | None = None) -> None:
    """`training.png` from the Trainer's log, and the fine-tuned model's card (Hub metadata with a
    model-index of the dev results) in OUT/model/README.md."""
    from bertnas.storage.plots import plot_training

    plot_training(log_history, out_dir / "training.png", title=f"finetune {spec.name}")
    model_dir = out_dir / "model"
    if result.get("model_dir") and model_dir.is_dir():
        (model_dir / "README.md").write_text(finetuned_card(result, spec, model_source, model_dir, license))


def finetuned_card(result: dict, spec, model_source: str, model_dir: Path, license: str | None = None) -> str:
    import json

    from huggingface_hub import EvalResult

    from bertnas.export import _portable, card_metadata
    from glue.tasks import SQUAD_TASKS

    qa = spec.name in SQUAD_TASKS
    pipeline, auto = (("question-answering", "AutoModelForQuestionAnswering") if qa
                      else ("text-classification", "AutoModelForSequenceClassification"))
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    remote = bool(config.get("auto_map"))
    name = model_dir.parent.name
    from_files = getattr(spec, "source", "")  # --train-file: a local file, not a Hub dataset
    from_hub = getattr(spec, "hub_dataset", "")  # --dataset-name: a Hub dataset other than GLUE / SQuAD
    evals = [EvalResult(task_type=pipeline, task_name=spec.name, dataset_type=spec.hub_name,
                        dataset_name=from_files or from_hub or f"{'SQuAD' if qa else 'GLUE'} {spec.name.upper()}",
                        dataset_config=None if qa else spec.hub_config,
                        dataset_split=getattr(spec, "validation_split", "validation"),
                        metric_type=metric, metric_value=round(float(value), 4))
             for metric, value in result["eval"].items()]
    front = card_metadata(pipeline_tag=pipeline, base_model=model_source, datasets=[] if from_files else [spec.hub_name],
                          license=license, inherit_from=model_source,
                          tags=["squad" if qa else "glue", spec.name] if not (from_files or from_hub) else [],
                          eval_results=evals, model_name=name)
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in result["eval"].items())
    settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items() if v is not None and k != "license")
    load = ", trust_remote_code=True" if remote else ""
    return f"""{front}

# {name}: `{_portable(model_source)}` fine-tuned on {spec.name}

Fine-tuned with `bertnas finetune` (transformers `Trainer`) on the {from_files or spec.name} training set
({result['num_train_samples']:,} rows); scores on the validation split:

| metric | value |
|---|---|
{rows}

```python
from transformers import AutoTokenizer, {auto}

tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO"{", trust_remote_code=False" if remote else ""})  # no remote code
model = {auto}.from_pretrained("PATH_OR_REPO"{load})
```

Settings: {settings}. Training time: {result['train_seconds']:.0f} s.
"""
