"""Extractive question answering (SQuAD v1.1 / v2.0) with `AutoModelForQuestionAnswering` and `Trainer`.

A long context is cut into windows of `max_length` tokens that overlap by `doc_stride` tokens; each
window ("feature") keeps the character offsets of its context tokens. After prediction,
`postprocess_predictions` maps every example back to one answer string: over all its windows, the
`n_best` highest start and end logits are paired into spans (inside the context, end >= start,
at most `max_answer_len` tokens) and the best-scoring span wins. For SQuAD 2.0 the [CLS] position is
the "no answer" span; the question is left unanswered when its null score beats the best span.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from glue.common import (capped_max_length, check_model_path, check_settings, finish_finetuned, remove_if_empty,
                         results_markdown, save_finetuned, trainer_options)
from glue.data import load_task
from glue.metrics import load_metric
from glue.tasks import SquadTask, get_task, task_score

logger = logging.getLogger(__name__)


def prepare_train_features(examples, tokenizer, max_length: int, doc_stride: int):
    """Tokenise (question, context) pairs into windows with `start_positions` / `end_positions`
    (token indices of the answer, or 0 = [CLS] when the window does not hold it / v2 no answer)."""
    questions = [q.lstrip() for q in examples["question"]]  # leading spaces only waste the window
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=max_length,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offsets_all):
        answers = examples["answers"][sample_map[i]]
        seq_ids = enc.sequence_ids(i)
        if not answers["answer_start"]:  # SQuAD 2.0 unanswerable: point at [CLS]
            starts.append(0)
            ends.append(0)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        ctx = [k for k, s in enumerate(seq_ids) if s == 1]
        first, last = ctx[0], ctx[-1]
        if offsets[first][0] > start_char or offsets[last][1] < end_char:  # answer not in this window
            starts.append(0)
            ends.append(0)
            continue
        start_tok = first
        while start_tok <= last and offsets[start_tok][0] <= start_char:
            start_tok += 1
        end_tok = last
        while end_tok >= first and offsets[end_tok][1] >= end_char:
            end_tok -= 1
        starts.append(start_tok - 1)
        ends.append(end_tok + 1)
    enc["start_positions"] = starts
    enc["end_positions"] = ends
    return enc


def prepare_eval_features(examples, tokenizer, max_length: int, doc_stride: int):
    """Windows as for training, plus `example_id` and offsets (None outside the context)."""
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=max_length,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        seq_ids = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq_ids[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


def postprocess_predictions(examples, features, start_logits, end_logits, n_best: int = 20,
                            max_answer_len: int = 30, version_2: bool = False) -> list[dict]:
    """Answer text per example from the windows' start/end logits (a pure function).

    examples: rows with "id" and "context"; features: rows with "example_id" and "offset_mapping"
    (a (start_char, end_char) pair per token, None for tokens outside the context); start_logits /
    end_logits: [num_features, seq_len]. Returns the `squad` / `squad_v2` metric's predictions:
    [{"id", "prediction_text"}] (v2 adds "no_answer_probability", the sigmoid of null score minus
    best span score, so a threshold on it is a threshold on the score gap).
    """
    by_example: dict[str, list[int]] = {}
    for i, feature in enumerate(features):
        by_example.setdefault(feature["example_id"], []).append(i)
    predictions = []
    for example in examples:
        best_text, best_score = "", -math.inf
        null_score = math.inf
        for i in by_example.get(example["id"], []):
            start, end = np.asarray(start_logits[i]), np.asarray(end_logits[i])
            offsets = features[i]["offset_mapping"]
            null_score = min(null_score, float(start[0] + end[0]))  # [CLS] span of the window
            top_starts = np.argsort(start)[::-1][:n_best]
            top_ends = np.argsort(end)[::-1][:n_best]
            for s in top_starts:
                for e in top_ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_len:
                        continue
                    score = float(start[s] + end[e])
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[s][0]:offsets[e][1]]
        prediction = {"id": example["id"], "prediction_text": best_text}
        if version_2:
            gap = null_score - best_score if best_score > -math.inf else math.inf
            prediction["no_answer_probability"] = float(1.0 / (1.0 + math.exp(-min(max(gap, -50.0), 50.0))))
            if gap > 0:  # the null span beats every real span: no answer
                prediction["prediction_text"] = ""
        predictions.append(prediction)
    return predictions


def finetune_squad(task: str, model: str, output_dir, settings, data_dir=None, trust_remote_code: bool = False,
                   doc_stride: int = 128, n_best: int = 20, max_answer_len: int = 30, save_model: bool = True,
                   hub_metrics: bool = False) -> dict:
    """Fine-tune `model` for extractive QA and score the dev set; writes results.json / results.md,
    `predictions.json` ({id: answer text}) and (`save_model`) the model in `OUT/model/`. Without a
    local train file (offline), fails clearly."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments, default_data_collator, set_seed

    spec = get_task(task)
    if not isinstance(spec, SquadTask):
        raise ValueError(f"{task!r} is not a SQuAD task")
    check_model_path(model)
    check_settings(settings)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(settings.seed)
    dataset = load_task(spec, data_dir, splits=["train", "validation"])
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    qa_model = AutoModelForQuestionAnswering.from_pretrained(model, trust_remote_code=trust_remote_code)
    settings = replace(settings, max_length=capped_max_length(settings.max_length, qa_model, tokenizer))
    stride = min(doc_stride, settings.max_length // 2)

    train_examples = dataset["train"]
    if settings.max_train_samples is not None and settings.max_train_samples < len(train_examples):
        train_examples = train_examples.shuffle(seed=settings.seed).select(range(settings.max_train_samples))
    eval_examples = dataset["validation"]
    if settings.max_eval_samples is not None and settings.max_eval_samples < len(eval_examples):
        eval_examples = eval_examples.select(range(settings.max_eval_samples))
    train_features = train_examples.map(
        prepare_train_features, batched=True, remove_columns=train_examples.column_names,
        fn_kwargs=dict(tokenizer=tokenizer, max_length=settings.max_length, doc_stride=stride), desc="train windows")
    eval_features = eval_examples.map(
        prepare_eval_features, batched=True, remove_columns=eval_examples.column_names,
        fn_kwargs=dict(tokenizer=tokenizer, max_length=settings.max_length, doc_stride=stride), desc="dev windows")

    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), learning_rate=settings.lr, num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.eval_batch_size,
        warmup_steps=settings.warmup_steps, weight_decay=settings.weight_decay, seed=settings.seed,
        eval_strategy="no", save_strategy="no", dataloader_pin_memory=torch.cuda.is_available(),
        **trainer_options(settings, len(train_features)),
    )
    trainer = Trainer(model=qa_model, args=args, train_dataset=train_features, data_collator=default_data_collator)
    start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    model_inputs = eval_features.remove_columns(["example_id", "offset_mapping"])
    start_logits, end_logits = trainer.predict(model_inputs).predictions[:2]
    predictions = postprocess_predictions(eval_examples, eval_features, start_logits, end_logits,
                                          n_best=n_best, max_answer_len=max_answer_len,
                                          version_2=spec.with_negatives)
    metric = load_metric(spec.name, hub=hub_metrics)
    references = [{"id": ex["id"], "answers": ex["answers"]} for ex in eval_examples]
    scores = metric.compute(predictions=predictions, references=references)
    eval_seconds = time.perf_counter() - start

    settings_dict = {**settings.__dict__, "doc_stride": stride, "n_best": n_best, "max_answer_len": max_answer_len}
    eval_results = {name: float(scores[name]) for name in spec.metrics if name in scores}
    result = {
        "task": spec.name,
        "model": str(model),
        "eval": eval_results,
        "score": task_score(spec, eval_results),
        "settings": settings_dict,
        "num_train_samples": len(train_examples),
        "num_train_features": len(train_features),
        "train_loss": float(train_output.training_loss),
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "model_dir": str(out_dir / "model") if save_model else None,
    }
    if save_model:
        save_finetuned(qa_model, tokenizer, out_dir / "model")
    (out_dir / "predictions.json").write_text(json.dumps({p["id"]: p["prediction_text"] for p in predictions}, indent=1))
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "results.md").write_text(results_markdown(result))
    finish_finetuned(out_dir, result, spec, trainer.state.log_history, model, settings.license)
    remove_if_empty(out_dir / "trainer")
    return result
