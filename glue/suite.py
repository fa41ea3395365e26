"""Fine-tune one checkpoint on several tasks and write a combined table with the GLUE average.

    python recipes/finetune_glue.py --tasks sst2,mrpc,rte --model PATH_OR_ID --output-dir OUT \\
        [--max-train-samples 4000] [--override rte:epochs=2 --override mrpc:max_train_samples=2000]

Every `bertnas finetune` option applies to all tasks; `--override TASK:option=value` changes one
option (its dest name: max_train_samples, epochs, lr, batch_size, ...) for one task. Each task
writes `OUT/<task>/results.json`; the suite writes `OUT/summary.json` and `OUT/results.md`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from glue.cli import add_arguments, run_task
from glue.tasks import GLUE_TASKS, get_task, glue_score

logger = logging.getLogger(__name__)


def _parse_override(text: str) -> tuple[str, str, object]:
    try:
        task, assignment = text.split(":", 1)
        key, value = assignment.split("=", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--override wants TASK:option=value, got {text!r}") from None
    try:
        parsed = json.loads(value)  # numbers, true/false, null
    except json.JSONDecodeError:
        parsed = value
    return get_task(task).name, key.replace("-", "_"), parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recipes/finetune_glue.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", required=True, help="comma-separated, e.g. sst2,mrpc,rte,cola,stsb")
    parser.add_argument("--override", action="append", type=_parse_override, default=[],
                        help="TASK:option=value, e.g. rte:epochs=2 (repeatable)")
    add_arguments(parser, single_task=False)
    return parser


def summary_markdown(model: str, results: dict[str, dict], command: str) -> str:
    lines = [f"# Fine-tuning `{model}`", "", f"Command: `{command}`", "",
             "| task | dev metrics | score | train samples | epochs | lr | train s |", "|---|---|---|---|---|---|---|"]
    for task, r in results.items():
        metrics = ", ".join(f"{k} {100 * v:.2f}" if get_task(task).name in GLUE_TASKS else f"{k} {v:.2f}"
                            for k, v in r["eval"].items())
        s = r["settings"]
        lines.append(f"| {task} | {metrics} | {r['score']:.2f} | {r['num_train_samples']} | {s['epochs']:g} | "
                     f"{s['lr']:g} | {r['train_seconds']:.0f} |")
    glue_tasks = [t for t in results if t in GLUE_TASKS]
    if glue_tasks:
        score = glue_score({t: results[t]["eval"] for t in glue_tasks})
        lines += ["", f"GLUE average over {', '.join(glue_tasks)} ({len(glue_tasks)} of 9 tasks): **{score:.2f}**"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, out_stream=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tasks = [get_task(t).name for t in args.tasks.split(",") if t.strip()]
    out = Path(args.output_dir)
    results = {}
    start = time.perf_counter()
    for task in tasks:
        task_args = copy.copy(args)
        for name, key, value in args.override:
            if name == task:
                if not hasattr(task_args, key):
                    raise SystemExit(f"--override {name}:{key}=...: no option {key!r}")
                setattr(task_args, key, value)
        task_args.task = task
        logger.info("=== %s ===", task)
        results[task] = run_task(task_args, task, out / task)
    command = "python recipes/finetune_glue.py " + " ".join(shlex.quote(a) for a in argv)
    summary = {
        "model": args.model,
        "tasks": {t: {k: r[k] for k in ("eval", "score", "settings", "num_train_samples", "train_seconds", "eval_seconds")}
                  for t, r in results.items()},
        "total_seconds": round(time.perf_counter() - start, 1),
        "command": command,
    }
    glue_tasks = [t for t in results if t in GLUE_TASKS]
    if glue_tasks:
        summary["glue_average"] = glue_score({t: results[t]["eval"] for t in glue_tasks})
        summary["glue_average_tasks"] = glue_tasks
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(summary_markdown(args.model, results, command))
    print((out / "results.md").read_text(), file=out_stream or sys.stdout)
    return summary


def run_recipe(argv: list[str] | None = None) -> int:
    """`recipes/finetune_glue.py` (under any launcher): a refusal is one `error:` line and exit 2,
    as in `bertnas finetune`; the results table alone goes to stdout."""
    from bertnas.cli import execute

    def run(args):
        main(args.argv, out_stream=args.stdout)
        return 0

    return execute(run, argparse.Namespace(argv=sys.argv[1:] if argv is None else argv))
