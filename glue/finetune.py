"""Fine-tune any Hugging Face checkpoint on one GLUE task with the transformers `Trainer`.

Writes `OUT/results.json` (`{"task", "model", "eval": {metric: value}, ...}` plus the settings and
timings), `OUT/results.md`, the fine-tuned model (`OUT/model/`, `save_pretrained` layout; the best
grid point's; `save_model=False` / `--no-save-model` skips it) and the GLUE-server prediction files
(`OUT/SST-2.tsv`, ...) when the task has a test split. `max_train_samples` / `max_eval_samples`
subset the raw rows before tokenising. `--grid-lr` / `--grid-epochs` / `--grid-batch-size` run every combination and keep
the one with the best dev score.

`Settings` (and the helpers both this module and `squad.py` use) live in `common.py`.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from bertnas.storage import strict_json

from glue.common import (Settings, capped_max_length, check_model_path, check_settings, finish_finetuned, remove_if_empty,
                         results_markdown, save_finetuned, trainer_options)
from glue.data import load_task
from glue.metrics import load_metric
from glue.squad import finetune_squad
from glue.tasks import GLUE_TASKS as GLUE_NAMES
from glue.tasks import GlueTask, SquadTask, get_task, task_score

logger = logging.getLogger(__name__)


def _load_model_and_tokenizer(spec: GlueTask, model_name: str, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name, trust_remote_code=trust_remote_code)
    config_kwargs = {"num_labels": spec.num_labels}
    if spec.is_regression:
        config_kwargs["problem_type"] = "regression"
    else:
        config_kwargs["id2label"] = dict(enumerate(spec.labels))
        config_kwargs["label2id"] = {label: i for i, label in enumerate(spec.labels)}
    config = AutoConfig.from_pretrained(model_name, trust_remote_code=trust_remote_code, **config_kwargs)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name, config=config, trust_remote_code=trust_remote_code,
        ignore_mismatched_sizes=True,  # a checkpoint with another task's head gets a fresh one
    )
    return model, tokenizer


def tokenize_splits(spec: GlueTask, dataset, tokenizer, max_length: int):
    """Tokenise every split (no padding: the collator pads each batch to its longest row)."""

    def encode(batch):
        texts = [batch[col] for col in spec.text_columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    keep = {"label"}
    return {
        split: ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c not in keep],
                      desc=f"tokenising {spec.name} {split}")
        for split, ds in dataset.items()
    }


def subsample(ds, n: int | None, seed: int, shuffle: bool):
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n)) if shuffle else ds.select(range(n))


def predictions_from_logits(spec: GlueTask, logits) -> np.ndarray:
    logits = logits[0] if isinstance(logits, tuple) else logits
    return logits.squeeze(-1) if spec.is_regression else logits.argmax(-1)


def submission_label(spec: GlueTask, prediction) -> str:
    """A prediction as the GLUE server wants it: the label string of the task's files, a 0-5 score for STS-B."""
    if spec.is_regression:
        return f"{min(max(float(prediction), 0.0), 5.0):.3f}"
    if spec.local_label_values:
        names = {i: text for text, i in spec.local_label_values.items()}
        return names[int(prediction)]
    return str(int(prediction))


def write_submission(spec: GlueTask, stem: str, indices, predictions, out_dir: Path) -> Path:
    """The GLUE server's file for one test split (`OUT/SST-2.tsv`): `index\tprediction`."""
    path = out_dir / f"{stem}.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        for idx, pred in zip(indices, predictions):
            f.write(f"{int(idx)}\t{submission_label(spec, pred)}\n")
    return path


def subset_splits(spec: GlueTask, dataset, settings: Settings) -> dict:
    """The raw splits, training rows subsampled (random, by seed) and dev rows cut (the first N)
    before anything is tokenised; test splits whole."""
    dev = set(spec.dev_splits.values())
    out = {}
    for split, ds in dataset.items():
        if split == "train":
            ds = subsample(ds, settings.max_train_samples, settings.seed, shuffle=True)
        elif split in dev:
            ds = subsample(ds, settings.max_eval_samples, settings.seed, shuffle=False)
        out[split] = ds
    return out


def train_once(spec: GlueTask, model_name: str, dataset, settings: Settings, out_dir: Path,
               trust_remote_code: bool = False, predict_test: bool = True, hub_metrics: bool = False,
               keep_model: bool = False) -> dict:
    """One fine-tuning run: train, score every dev split, predict the test splits (kept in memory).
    `keep_model`: the result holds the trained model and tokenizer under "_model" / "_tokenizer"."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    set_seed(settings.seed)
    model, tokenizer = _load_model_and_tokenizer(spec, model_name, trust_remote_code)
    settings = replace(settings, max_length=capped_max_length(settings.max_length, model, tokenizer))
    encoded = tokenize_splits(spec, subset_splits(spec, dataset, settings), tokenizer, settings.max_length)
    train = encoded["train"]
    metric = load_metric(getattr(spec, "metric_task", spec.name), hub=hub_metrics)  # files: the metric of their kind

    def compute_metrics(eval_pred):
        preds = predictions_from_logits(spec, eval_pred.predictions)
        return metric.compute(predictions=preds, references=eval_pred.label_ids)

    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"),
        learning_rate=settings.lr,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
        eval_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps host-to-GPU copies
        **trainer_options(settings, len(train)),
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=compute_metrics)
    start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    eval_results = {}
    for name, split in spec.dev_splits.items():
        scores = trainer.evaluate(encoded[split], metric_key_prefix="eval")
        prefix = f"{name}_" if name else ""  # MNLI: matched_accuracy, mismatched_accuracy
        for name in spec.metrics:
            eval_results[prefix + name] = float(scores[f"eval_{name}"])
    eval_seconds = time.perf_counter() - start

    test_predictions = {}
    if predict_test:
        for stem, split in spec.test_splits.items():
            if split in encoded:
                ds = encoded[split].remove_columns([c for c in ("label",) if c in encoded[split].column_names])
                preds = predictions_from_logits(spec, trainer.predict(ds).predictions)
                test_predictions[stem] = (list(dataset[split]["idx"]), preds.tolist())
    kept = {"_model": model, "_tokenizer": tokenizer} if keep_model else {}
    train_output_log = trainer.state.log_history
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {
        **kept,
        "eval": eval_results,
        "score": task_score(spec, eval_results),
        "settings": asdict(settings),
        "num_train_samples": len(train),
        "train_loss": float(train_output.training_loss),
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "test_predictions": test_predictions,
        "log_history": list(train_output_log),
    }


def finetune(task: str, model: str, output_dir: str | Path, settings: Settings | None = None,
             data_dir: str | Path | None = None, grid: dict | None = None, trust_remote_code: bool = False,
             predict_test: bool = True, save_model: bool = True, hub_metrics: bool = False, dataset=None) -> dict:
    """Fine-tune `model` on `task` (one run, or each point of `grid` = {"lr": [...], "epochs": [...],
    "batch_size": [...]}) and write the result files (and, with `save_model`, the best run's model
    in `output_dir/model/`) into `output_dir`. Returns the results dict."""
    spec = task if isinstance(task, GlueTask) else get_task(task)  # a GlueTask: e.g. read from --train-file
    if isinstance(spec, SquadTask):
        return finetune_squad(spec.name, model, output_dir, settings or Settings(), data_dir, trust_remote_code,
                              save_model=save_model, hub_metrics=hub_metrics)
    check_model_path(model)
    settings = settings or Settings()
    grid = {k: v for k, v in (grid or {}).items() if v}
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    for point in points:  # every grid point, before any data is loaded
        check_settings(replace(settings, **point))
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    needed = ["train", *spec.dev_splits.values()]
    dataset = load_task(spec, data_dir, splits=needed) if dataset is None else dataset
    if predict_test and spec.test_splits and spec.name in GLUE_NAMES:
        try:  # test splits are optional (only needed for the GLUE-server files)
            dataset.update(load_task(spec, data_dir, splits=list(spec.test_splits.values())))
        except (FileNotFoundError, KeyError, ValueError) as err:
            logger.info("%s: no test split (%s); no GLUE-server file written", spec.name, err)

    runs, best = [], None
    for i, point in enumerate(points):
        run_settings = replace(settings, **point)
        logger.info("%s run %d/%d: %s", spec.name, i + 1, len(points), point or "single run")
        run = train_once(spec, model, dataset, run_settings, out_dir, trust_remote_code, predict_test,
                         hub_metrics=hub_metrics, keep_model=save_model)
        trained = (run.pop("_model", None), run.pop("_tokenizer", None))
        logger.info("%s run %d/%d: dev %s (score %.4f) in %.0f s", spec.name, i + 1, len(points),
                    run["eval"], run["score"], run["train_seconds"])
        runs.append(run)
        if best is None or run["score"] > best["score"]:
            best = run
            if save_model:  # the best run so far replaces the saved model
                save_finetuned(*trained, out_dir / "model")
        del trained

    result = {
        "task": spec.name,
        "model": str(model),
        "eval": best["eval"],
        "score": best["score"],
        "settings": best["settings"],
        "num_train_samples": best["num_train_samples"],
        "train_loss": best["train_loss"],
        "train_seconds": best["train_seconds"],
        "eval_seconds": best["eval_seconds"],
        "total_seconds": round(sum(r["train_seconds"] + r["eval_seconds"] for r in runs), 2),
        "grid": [{"settings": r["settings"], "eval": r["eval"], "score": r["score"],
                  "train_seconds": r["train_seconds"]} for r in runs],
        "prediction_files": [],
        "model_dir": str(out_dir / "model") if save_model else None,
    }
    for stem, (indices, preds) in best["test_predictions"].items():
        result["prediction_files"].append(write_submission(spec, stem, indices, preds, out_dir).name)
    (out_dir / "results.json").write_text(strict_json.dumps(result, indent=2) + "\n")  # a NaN metric: null
    (out_dir / "results.md").write_text(results_markdown(result))
    finish_finetuned(out_dir, result, spec, best["log_history"], model, settings.license)
    remove_if_empty(out_dir / "trainer")
    return result
