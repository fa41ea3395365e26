"""Few-shot NAS (Zhao et al., ICML 2021): split a trained supernet on one choice into one child
supernet per candidate of that choice.

Each child starts from the parent's weights (`init_from_supernet`), holds the choice to its
candidate (`fixed_choices`: the sampler draws the other choices as the parent's did) and trains
on for `steps` more steps. Weights no longer serve archs that disagree on the split choice, which
is where a one-shot supernet's co-adaptation hurts its ranking most. An arch is then scored by the
child that holds its candidate (`child_for`).

The split folder holds `few_shot.json` (parent checkpoint, choice, the child of each candidate)
and one run folder per candidate; children train one after another, and an interrupted split
resumes: finished children are skipped, a started one resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from bertnas.core.errors import UserError
from bertnas.pipelines.pretrain import pretrain
from bertnas.spaces.base import Arch
from bertnas.storage import checkpoint as ckpt_lib

logger = logging.getLogger("bertnas.fewshot")

SPLIT_FILE = "few_shot.json"
# a child's own run: these parent options do not carry over
_RUN_ONLY = ("output_dir", "resume_from_checkpoint", "overwrite", "push_to_hub", "hub_model_id")


def split_supernet(parent: str | Path, output_dir: str | Path, *, steps: int, choice: str | None = None,
                   lr: float | None = None, warmup_steps: int | None = None, **overrides) -> dict:
    """Train one child supernet per candidate of `choice` (default: the space's first searchable
    choice) from the supernet at `parent` (a run folder or checkpoint), `steps` steps each, with the
    parent's config otherwise (`lr`, `warmup_steps` and any other config key in `overrides`
    change it; warm-up defaults to 5 % of `steps`). Returns the split record (`few_shot.json`)."""
    from bertnas.tasks import load_task

    if steps < 1:
        raise UserError(f"few-shot children need steps >= 1, got {steps}", "pass --steps 1 or more")
    parent_ckpt = ckpt_lib.verified_checkpoint(parent, option="--parent")
    parent_state = ckpt_lib.read_state(parent_ckpt)
    stored = dict(parent_state.get("config") or {})
    if stored.get("arch") is not None or stored.get("strategy"):
        raise UserError(f"{parent} trained a fixed arch or ran a strategy, not a sampled supernet",
                        "split a supernet trained by `bertnas pretrain` with a sampler")
    space = load_task(parent_ckpt, "cpu").space
    held = dict(stored.get("fixed_choices") or {})
    choice = choice or next((c for c in space.mutable_choices() if c not in held), None)
    if choice not in space.choices:
        raise UserError(f"unknown choice {choice!r} to split on", f"choose one of {', '.join(space.choices)}")
    if choice in held or len(space.choices[choice]) < 2 or choice in space.input_choices:
        raise UserError(f"choice {choice!r} cannot be split: it has one candidate here or is an input choice",
                        f"choose one of {', '.join(c for c in space.mutable_choices() if c not in held)}")
    out = Path(output_dir)
    record = {"method": "few-shot", "parent": str(parent_ckpt), "parent_step": parent_state.get("step"),
              "choice": choice, "steps_per_child": steps, "children": {c: c for c in space.choices[choice]}}
    existing = out / SPLIT_FILE
    if existing.is_file():
        before = json.loads(existing.read_text())
        if (before.get("choice"), before.get("steps_per_child")) != (choice, steps):
            raise UserError(f"{out} holds a split on {before.get('choice')!r} with {before.get('steps_per_child')} "
                            f"steps per child, not {choice!r} with {steps}",
                            "use another --output-dir, or the same choice and steps to resume it")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_lib.write_json_atomic(existing, record)
    base = {k: v for k, v in stored.items() if k not in _RUN_ONLY}
    for candidate, folder in record["children"].items():
        child = out / folder
        if (child / "summary.json").is_file():
            logger.info("few-shot child %s=%s: finished, skipped", choice, candidate)
            continue
        resume = child.is_dir() and bool(ckpt_lib.list_checkpoints(child))
        config = {**base, "output_dir": str(child), "init_from_supernet": str(parent_ckpt),
                  "fixed_choices": {**held, choice: candidate}, "max_steps": steps,
                  "warmup_steps": max(1, steps // 20) if warmup_steps is None else warmup_steps,
                  "resume_from_checkpoint": "latest" if resume else None, "overwrite": not resume,
                  **({"lr": lr} if lr is not None else {}), **overrides}
        logger.info("few-shot child %s=%s: %d steps%s", choice, candidate, steps, " (resumed)" if resume else "")
        pretrain(config)
    return record


def read_split(folder: str | Path) -> dict:
    """The split record of a few-shot folder, with each child's run folder as a Path."""
    path = Path(folder) / SPLIT_FILE
    if not path.is_file():
        raise UserError(f"{folder} holds no {SPLIT_FILE}", "pass the --output-dir of a few-shot split")
    record = json.loads(path.read_text())
    record["children"] = {c: Path(folder) / name for c, name in record["children"].items()}
    return record


def child_for(record: Mapping, arch: Arch | Mapping) -> Path:
    """The run folder of the child supernet that holds `arch` (by its candidate on the split choice)."""
    return record["children"][arch[record["choice"]]]


__all__ = ["SPLIT_FILE", "child_for", "read_split", "split_supernet"]
