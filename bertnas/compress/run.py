"""`compress(...)`: a teacher BERT -> small searched, distilled BERTs, one per budget.

    OUT/supernet/     the distillation run (checkpoints, log.jsonl; resumable)
    OUT/<budget>/     the winner of each budget: save_pretrained folder + model card
    OUT/summary.json  {budget: {arch, params, params_total, flops, val_loss, teacher_val_loss, ...}}

Stages, each with a progress bar: (1) checks, all before any training: the teacher is a BERT, the
recipe's student space can be built, every budget is reachable (else the smallest reachable size
is named); (2) distillation of the student supernet through the pre-training loop (task
`distill`, `bertnas/tasks/distill.py`: block-wise MSE against the teacher, MAGIC-T walk sampling,
optional MAGIC-A, checkpoints and exact resume); (3) per budget, block-wise progressive shrinking
(the lookup table of block losses against the teacher's blocks, combined under the budget, the
top T rescored whole; `bertnas/search/shrinking.py`) or evolution; (4) export of each winner
(plain `bert` layout for `[mha<h>, ffn] x L` at full embedding width, remote code otherwise) with
its CPU latency, MLM loss and the teacher's on the same held-out batches.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

from bertnas.core.errors import Interrupted, UserError, UserFileError
from bertnas.compress.budgets import check_budgets, parse_budgets
from bertnas.storage import strict_json
from bertnas.storage.checkpoint import check_output_dir, output_lock

logger = logging.getLogger("bertnas.compress")
SUPERNET_DIR = "supernet"
SUMMARY_FILE = "summary.json"

# The recipe: four sections; a YAML file (--config) overrides key by key.
DEFAULT_RECIPE = {
    "student": {
        "hidden_size": None,  # None: the teacher's
        "num_layers": None,  # chain layers; None: 2 x the teacher's layers (one per sublayer)
        "embedding_size": None,  # None: the hidden size; smaller: factorised embeddings
        "candidates": None,  # None: `default_candidates` for the width
        "init": "importance",  # importance (teacher slices by activation importance) | random
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "distill": {"block_weight": 1.0, "final_weight": 0.0, "logits_weight": 1.0, "mlm_weight": 0.1,
                "temperature": 1.0, "blocks": None},
    "train": {"seq_len": 128, "batch_size": 8, "lr": 5e-4, "warmup_steps": 10, "sampler": "walk", "walk_k": 1,
              "align": False, "save_steps": 100, "eval_batches": 4, "seed": 42},
    "search": {"method": "shrinking", "candidates_per_block": 64, "top_k": 5, "eval_batches": 8,
               "population": 16, "generations": 8, "parents": 4, "mutation_k": 1,
               "max_flops": None, "max_latency_ms": None, "latency_seq_len": None, "device": None},
}


def load_recipe(config: str | Path | dict | None, **overrides) -> dict:
    """DEFAULT_RECIPE updated by the YAML file (or mapping) `config`, then by `overrides`
    ({"section.key": value}); unknown sections and keys are errors."""
    from bertnas.train.config import read_yaml

    recipe = copy.deepcopy(DEFAULT_RECIPE)
    given = config if isinstance(config, dict) else (read_yaml(config) if config else {})
    for section, values in given.items():
        if section not in recipe:
            raise UserError(f"unknown recipe section {section!r}", f"sections: {', '.join(recipe)}")
        if not isinstance(values, dict):
            raise UserError(f"recipe section {section!r} must be a mapping", f"write {section}: then indented key: value lines")
        if section == "train":  # any pre-training option; `load_config` checks the names
            recipe[section].update(values)
            continue
        for key, value in values.items():
            if key not in recipe[section]:
                raise UserError(f"unknown recipe key {section}.{key}", f"known: {', '.join(recipe[section])}")
            recipe[section][key] = value
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        recipe[section][key] = value
    return recipe


def teacher_config(teacher: str):
    """The teacher's `BertConfig` (read without weights); a clear error for anything else."""
    from transformers import AutoConfig, BertConfig

    try:
        config = AutoConfig.from_pretrained(teacher)
    except (OSError, ValueError) as err:
        raise UserFileError(f"--teacher {teacher}: no readable config.json ({str(err).splitlines()[0]})",
                            "give a local BERT folder (config.json + weights) or a Hub id") from None
    if not isinstance(config, BertConfig):
        raise UserError(f"--teacher {teacher} is a {config.model_type!r} model, not a BERT",
                        "bertnas compress distils Hugging Face BERTs (model_type 'bert', e.g. all-MiniLM-L6-v2)")
    return config


def student_space_config(t_config, student: dict):
    """The student supernet's `BertNasConfig` (no weights): what the budget checks run on."""
    from bertnas.models.student import default_candidates, student_config

    hidden = student["hidden_size"] or t_config.hidden_size
    layers = student["num_layers"] or 2 * t_config.num_hidden_layers
    head = t_config.hidden_size // t_config.num_attention_heads
    head = head if hidden % head == 0 else hidden  # else one head of the full width
    candidates = student["candidates"] or default_candidates(hidden, head_size=head)
    try:
        return student_config(t_config, hidden, layers, candidates, student["embedding_size"])
    except ValueError as err:
        raise UserError(f"the recipe's student cannot be built: {err}", "fix the student: section") from None


def _train_config(teacher, corpus, steps, output_dir, recipe, space_config, resume, overwrite, progress) -> dict:
    s = recipe["student"]
    model = {"hidden_size": space_config.hidden_size, "num_hidden_layers": space_config.num_hidden_layers,
             "candidates": list(space_config.candidates),
             "hidden_dropout_prob": s["hidden_dropout_prob"],
             "attention_probs_dropout_prob": s["attention_probs_dropout_prob"]}
    distill = {k: v for k, v in recipe["distill"].items() if v is not None}
    if s["embedding_size"] is not None:
        distill["embedding_size"] = s["embedding_size"]
    distill["init"] = s["init"]
    return {**recipe["train"], "task": "distill", "init_from_bert": teacher, "tokenizer": teacher,
            "data": corpus, "max_steps": steps, "output_dir": str(output_dir), "model": model,
            "space_options": distill, "resume_from_checkpoint": resume, "overwrite": overwrite or None,
            "progress": progress}


def cpu_latency_ms(model, seq_len: int, device: str = "cpu") -> float:
    """Milliseconds per forward of one sequence of `seq_len` tokens (the fastest round, as the latency table)."""
    import torch

    from bertnas.search.latency import measure_ms

    model = model.to(device).eval()
    ids = torch.randint(5, model.config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        return measure_ms(lambda: model(input_ids=ids), device, repeats=3, min_time_s=0.05)


def _search_one(task, space, evaluator, scorer, label, budget, recipe, table, seq_len, progress):
    from bertnas.search.constraints import Constraints
    from bertnas.search.evolution import evolution_search
    from bertnas.search.shrinking import blockwise_search

    o = recipe["search"]
    # The space counts embeddings into params; the budget is the rest, so it is added on top.
    constraints = Constraints(max_params=budget + space.embedding_params(), max_flops=o["max_flops"],
                              max_latency_ms=o["max_latency_ms"], seq_len=seq_len, latency_table=table)
    seed = int(recipe["train"].get("seed", 0))
    if o["method"] == "shrinking":
        outcome = blockwise_search(space, scorer, task.block_ranges(), constraints,
                                   candidates_per_block=int(o["candidates_per_block"]), top_k=int(o["top_k"]),
                                   score_fn=evaluator, seed=seed, progress=progress)
    else:
        outcome = evolution_search(space, evaluator, constraints, population=int(o["population"]),
                                   generations=int(o["generations"]), parents=int(o["parents"]),
                                   mutation_k=int(o["mutation_k"]), seed=seed, progress=progress)
    return outcome.results[0]


def _card_provenance(teacher, label, budget, entry, steps, corpus, method) -> dict:
    from bertnas.search.constraints import human

    latency = entry["latency_ms"]
    # a local corpus by its folder / file name: the card may be pushed to the Hub
    text = Path(corpus).name if corpus and Path(corpus).exists() else corpus or "the built-in corpus"
    return {
        "teacher": teacher,
        "budget (non-embedding parameters)": f"{label} ({budget:,})",
        "non-embedding parameters": f"{entry['params']:,} ({human(entry['params'])})",
        "parameters of the exported model": f"{entry['params_total']:,}",
        "FLOPs per sequence": f"{entry['flops']:,} ({human(entry['flops'])}, {entry['seq_len']} tokens)",
        "CPU latency": f"{latency:.2f} ms per sequence of {entry['seq_len']} tokens (batch 1, this machine)",
        "held-out MLM loss": f"{entry['val_loss']:.4f} (teacher on the same batches: {entry['teacher_val_loss']:.4f})",
        "held-out distillation loss": f"{entry['distill_loss']:.4f} (normalised hidden-state MSE to the teacher)",
        "distillation": f"{steps} steps on {text}",
        "search": method,
    }


def compress(teacher: str, budgets="5M,10M,30M,60M", corpus: str | None = "builtin", steps: int = 1000,
             output_dir: str | Path = "compressed", config=None, resume_from_checkpoint: str | None = None,
             method: str | None = None, max_flops=None, max_latency_ms: float | None = None, seq_len: int | None = None,
             batch_size: int | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Distil `teacher` into a student supernet on `corpus` for `steps` steps, search it per budget
    of non-embedding parameters and export each winner; returns the summary (also OUT/summary.json).
    See the module doc."""
    from bertnas.search.constraints import Constraints, InfeasibleBudget

    labels = parse_budgets(budgets)
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}", "e.g. --steps 1000")
    recipe = load_recipe(config, **{"search.method": method, "search.max_flops": max_flops,
                                    "search.max_latency_ms": max_latency_ms, "train.seq_len": seq_len,
                                    "train.batch_size": batch_size})
    if recipe["search"]["method"] not in ("shrinking", "evolution"):
        raise UserError(f"search method {recipe['search']['method']!r} is not one of shrinking, evolution",
                        "pass --method shrinking or --method evolution")
    corpus = None if corpus in (None, "builtin") else corpus
    out = check_output_dir(output_dir)
    # -- 1. checks, before any training ------------------------------------------------------
    t_config = teacher_config(teacher)
    space_config = student_space_config(t_config, recipe["student"])
    check_budgets(labels, space_config)
    from bertnas.spaces import BertSpace

    train_seq_len = int(recipe["train"]["seq_len"])
    flops_seq_len = int(recipe["search"]["latency_seq_len"] or train_seq_len)
    if recipe["search"]["max_flops"] is not None:
        try:
            Constraints(max_flops=recipe["search"]["max_flops"], seq_len=flops_seq_len).check_feasible(BertSpace(space_config))
        except InfeasibleBudget as err:
            raise UserError(f"--max-flops: {err}") from None
    for label in labels:
        folder = out / label
        if folder.exists() and any(folder.iterdir()) and not (folder / ".bertnas-export.json").is_file():
            raise UserFileError(f"{folder} exists and was not written by bertnas compress",
                                "give another --output-dir or move it away")
    # -- 2. distillation ---------------------------------------------------------------------
    from bertnas.pipelines.pretrain import pretrain

    train_cfg = _train_config(teacher, corpus, steps, out / SUPERNET_DIR, recipe, space_config,
                              resume_from_checkpoint, overwrite, progress)
    if int(os.environ.get("RANK", "0")) != 0:
        run = _distill(pretrain, train_cfg, out)
        return {}  # under accelerate launch: search and export on the main process
    # Two compressions into one OUT would export over each other's winners and summary.
    with output_lock(out):
        run = _distill(pretrain, train_cfg, out)
        # -- 3. search per budget, 4. export ---------------------------------------------------
        return search_and_export(out, labels, recipe, teacher, steps, corpus, flops_seq_len, progress, run)


def _distill(pretrain, train_cfg: dict, out: Path) -> dict:
    """The distillation run; a stop on a signal names the compress command that continues it
    (the pre-training hint would name OUT/supernet as --output-dir, which compress reads as OUT)."""
    try:
        return pretrain(train_cfg)
    except Interrupted as err:
        head = str(err).split("; continue with", 1)[0]
        raise Interrupted(f"{head}; continue with the same `bertnas compress` command plus "
                          f"--resume-from-checkpoint latest (--output-dir {out})", err.signum) from None


def search_and_export(out: Path, labels: dict, recipe: dict, teacher: str, steps: int, corpus, seq_len: int,
                      progress: bool = True, run: dict | None = None) -> dict:
    """Stages 3 and 4 on the distillation run in OUT/supernet (its latest checkpoint)."""
    from tqdm.auto import tqdm

    from bertnas.export import export_arch
    from bertnas.search.constraints import InfeasibleBudget
    from bertnas.search.latency import build_latency_table
    from bertnas.tasks import load_task
    from bertnas.storage.checkpoint import verified_checkpoint
    from bertnas.models.student import non_embedding_params

    o = recipe["search"]
    task = load_task(verified_checkpoint(out / SUPERNET_DIR), o["device"])
    space = task.space
    batches, heldout = task.heldout(eval_batches=int(o["eval_batches"]), seq_len=int(recipe["train"]["seq_len"]))
    evaluator = task.evaluator(batches)
    scorer = task.block_scorer(batches)
    table = None
    if o["max_latency_ms"] is not None:
        # latency budgets are for the device named (the CPU unless told); scoring runs on a GPU when present
        table = build_latency_table(task.model.config, [seq_len], device=o["device"] or "cpu", progress=progress)
        table.save(out / "latency_table.json")
    summary = {}
    exports = tqdm(list(labels.items()), desc="search + export", unit="budget", disable=not progress)
    for label, budget in exports:
        exports.set_postfix(budget=label, refresh=True)
        try:
            best = _search_one(task, space, evaluator, scorer, label, budget, recipe, table, seq_len, progress)
        except InfeasibleBudget as err:  # e.g. a latency bound only the measured table shows to be too tight
            raise UserError(f"budget {label}: {err}",
                            f"raise the budget or the bounds, then rerun with --resume-from-checkpoint latest "
                            f"(the distillation in {out / SUPERNET_DIR} is kept)") from None
        ops = list(best.arch.ops)
        fixed = task.model.extract(ops)
        val_loss, teacher_val_loss = task.mlm_losses(batches, ops)
        entry = {
            "arch": ops,
            "params": non_embedding_params(task.model.config, ops),
            "params_total": sum(p.numel() for p in fixed.parameters()),
            "flops": int(space.flops(best.arch, seq_len)),
            "val_loss": val_loss,
            "teacher_val_loss": teacher_val_loss,
            "distill_loss": float(best.score),
            "latency_ms": cpu_latency_ms(fixed, seq_len),
            "seq_len": seq_len,
            "budget": budget,
        }
        if entry["params"] > budget:  # the search's constraint makes this impossible; a bug if it fires
            raise RuntimeError(f"{label}: the winner {ops} has {entry['params']} > {budget} parameters")
        method = (f"block-wise progressive shrinking ({o['candidates_per_block']} candidates per block, top "
                  f"{o['top_k']} rescored whole)" if o["method"] == "shrinking" else
                  f"evolution (population {o['population']}, {o['generations']} generations)")
        prov = _card_provenance(teacher, label, budget, entry, steps, corpus, method)
        folder = export_arch(task.model, space, task.processing_class, best.arch, out / label, prov, seq_len, overwrite=True)
        entry["layout"] = json.loads((folder / "config.json").read_text()).get("model_type")
        summary[label] = entry
    summary_path = out / SUMMARY_FILE
    tmp = summary_path.with_name(SUMMARY_FILE + ".tmp")
    tmp.write_text(strict_json.dumps(summary, indent=2) + "\n")
    tmp.replace(summary_path)
    return summary


__all__ = ["compress", "search_and_export", "load_recipe", "DEFAULT_RECIPE", "cpu_latency_ms"]
