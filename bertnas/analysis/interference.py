"""Interference: how differently one shared op is trained by subnets that differ elsewhere.

For a fixed supernet checkpoint and a fixed batch (after MAGIC, Xu et al. ICML 2022, §3): take
one layer `g` and an op `o` in it; draw pairs of subnets that both run `o` at layer `g` and
differ in exactly `m` other layers; compute the gradient of the loss with respect to `o`'s
weights under each subnet, flattened, and their cosine similarity. Similarity 1: both subnets
push `o` the same way; 0 or below: they pull it apart (interference). The pairs are split by
what changed:

- `same`: every changed layer swaps an op for another of the same family (mha6 <-> mha12,
  ffn <-> ffn_wide, conv3 <-> conv5; the family is the leading letters of the op name);
- `cross`: every changed layer swaps families (mha <-> ffn, ffn <-> conv, ...);
- `any`: the changed layers take any other op (what uniform sampling does).

Each pair is measured twice on the same subnets: on the task loss alone, and on the MAGIC-A
objective `loss + weight * align_loss(subnet, base)` (`bertnas.supernet.align.Aligner`) with the
checkpoint's base subnet (or a given one). The model is in eval mode, so no dropout noise
enters the gradients: two runs of one subnet give similarity exactly 1.

Works through the Task API only (`task.space`, `task.model`, `task.loss_fn`,
`task.choice_layers()`, `task.align_model()`, `task.heldout()`), so any space's supernet works.
BatchNorm layers (vision spaces) use the running statistics saved in the checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from bertnas.core.errors import UserError
from bertnas.supernet.align import Aligner
from bertnas.supernet.scoring import model_inputs, prepare_batch

KINDS = ("same", "cross", "any")
KIND_LABELS = {"same": "same type", "cross": "cross type", "any": "any change"}


def op_family(op: str) -> str:
    """The op's family: its leading letters (mha12 -> mha, ffn_wide -> ffn, conv5 -> conv,
    nor_conv_3x3 -> nor)."""
    match = re.match(r"[A-Za-z]+", str(op))
    return match.group(0).lower() if match else str(op)


def shared_op_parameters(task, layer_index: int, op: str) -> list[torch.nn.Parameter]:
    """The parameters of candidate `op` of the `layer_index`-th searchable layer."""
    layers = task.choice_layers()
    if not 0 <= layer_index < len(layers):
        raise UserError(f"layer {layer_index} does not exist; the supernet has {len(layers)} searchable layers",
                        f"give --layer between 0 and {len(layers) - 1}")
    layer = layers[layer_index]
    ops = getattr(layer, "ops", None)
    if ops is None:  # a layer that wraps its choice module
        ops = next((m.ops for m in layer.modules() if m is not layer and hasattr(m, "ops")), None)
    if ops is None or op not in ops:
        raise UserError(f"layer {layer_index} has no candidate {op!r}", "pick one of the layer's candidates")
    params = [p for p in ops[op].parameters() if p.requires_grad]
    if not params:
        raise UserError(f"op {op!r} of layer {layer_index} has no trainable weights, so it has no gradient",
                        "pick an op with weights (e.g. a conv or an attention)")
    return params


@dataclass
class Pair:
    m: int
    kind: str
    shared_op: str
    a: object  # Arch
    b: object


def _change(candidates, current, kind: str, families, rng: random.Random):
    """(op for subnet a, op for subnet b) at one layer for a change of `kind`, or None if impossible."""
    fam = {op: families.get(op, op_family(op)) for op in candidates}
    if kind == "same":
        starts = [op for op in candidates if any(o != op and fam[o] == fam[op] for o in candidates)]
        if not starts:
            return None
        first = current if current in starts else rng.choice(starts)
        return first, rng.choice([o for o in candidates if o != first and fam[o] == fam[first]])
    if kind == "cross":
        starts = [op for op in candidates if any(fam[o] != fam[op] for o in candidates)]
        if not starts:
            return None
        first = current if current in starts else rng.choice(starts)
        return first, rng.choice([o for o in candidates if fam[o] != fam[first]])
    others = [o for o in candidates if o != current]
    return (current, rng.choice(others)) if others else None


def draw_pairs(space, layer_name: str, shared_ops, ms, kinds, pairs_per_cell: int, rng: random.Random,
               families: dict | None = None) -> tuple[list[Pair], list[str]]:
    """Pairs of subnets that run `shared_op` at `layer_name` and differ in exactly m other
    layers, `pairs_per_cell` for every (m, kind) that the space allows; plus notes on the rest."""
    families = families or {}
    others = [name for name, cands in space.choices.items() if name != layer_name and len(cands) > 1]
    pairs, notes = [], []
    for m in ms:
        for kind in kinds:
            made = 0
            for i in range(pairs_per_cell * 20):  # a few retries: some draws cannot make a change
                if made == pairs_per_cell:
                    break
                shared_op = shared_ops[(made + i) % len(shared_ops)]
                base = space.sample(rng).replace(**{layer_name: shared_op})
                changed = rng.sample(others, m)
                a_ops, b_ops = {}, {}
                for name in changed:
                    change = _change(space.choices[name], base[name], kind, families, rng)
                    if change is None:
                        break
                    a_ops[name], b_ops[name] = change
                else:
                    a = base.replace(**a_ops)
                    pairs.append(Pair(m, kind, shared_op, a, a.replace(**b_ops)))
                    made += 1
            if made < pairs_per_cell:
                notes.append(f"m={m}, {KIND_LABELS[kind]}: {made} of {pairs_per_cell} pairs (the space does not "
                             "allow more such changes)")
    return pairs, notes


class GradientProbe:
    """Flattened gradients of one op's weights under a subnet, on fixed batches, cached per
    (subnet, aligned)."""

    def __init__(self, task, batches, params, aligner=None):
        self.task, self.batches, self.params, self.aligner = task, batches, params, aligner
        self.cache: dict = {}

    def objective(self, ops: tuple, aligned: bool) -> torch.Tensor:
        total, count = 0.0, 0
        for batch in self.batches:
            loss_sum, n = self.task.loss_fn(self.task.model, batch, ops)
            total, count = total + loss_sum, count + n
        loss = total / max(count, 1)
        if aligned:
            align = 0.0
            for batch in self.batches:
                hidden = self.task.align_model()(**model_inputs(batch), arch=ops, output_hidden_states=True).hidden_states
                align = align + self.aligner.align_loss(self.task.align_model(), batch, hidden)
            loss = loss + self.aligner.weighted(align / len(self.batches), loss)
        return loss

    def gradient(self, arch, aligned: bool = False) -> torch.Tensor:
        ops = tuple(arch.ops) if hasattr(arch, "ops") else tuple(arch)
        key = (ops, aligned)
        if key not in self.cache:
            loss = self.objective(ops, aligned)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
            flat = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, self.params)]
            self.cache[key] = torch.cat(flat).detach().double().cpu()
        return self.cache[key]


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    norm = float(u.norm() * v.norm())
    return float(u @ v) / norm if norm > 0 else math.nan


def summarise(values) -> dict:
    values = [v for v in values if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "sem": math.nan}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": mean, "std": std, "sem": std / math.sqrt(n)}


def default_aligner(task, base_arch=None, weight: float | None = None, block_size: int | None = None):
    """An `Aligner` for the MAGIC-A objective at this checkpoint: the run's base subnet, block
    size and weight when it trained with alignment, else `base_arch` (or a seeded random subnet,
    as the trainer picks one) with the config's or MAGIC-A's default weight and blocks."""
    state = getattr(task, "run_state", None) or {}
    config = state.get("config") or {}
    saved = state.get("aligner") or {}
    if base_arch is None:
        base_arch = saved.get("base_arch") or config.get("base_arch")
    if base_arch is None:
        base_arch = task.space.sample(random.Random(int(config.get("seed", 0)) + 7))
    return Aligner(task.space, base_arch, block_size=int(block_size or saved.get("block_size")
                                                         or config.get("align_block_size") or 2),
                   weight=float(weight if weight is not None else config.get("align_weight") or 0.1),
                   replacement="none", max_ratio=config.get("align_max_ratio", 0.5), start=0, ramp=0)


def gradient_interference(task, batches=None, layer: int = 0, shared_ops=None, max_m: int | None = None,
                          pairs: int = 8, seed: int = 0, kinds=KINDS, align: bool = True, aligner=None,
                          families: dict | None = None, progress: bool = True) -> dict:
    """Cosine similarity of the shared op's gradient between subnet pairs, by m and kind, with
    and without the MAGIC-A term (see the module doc). `batches`: prepared batches (default: the
    task's first held-out batch). Returns {"settings", "rows", "pairs", "notes"}."""
    from tqdm.auto import tqdm


    space = task.space
    names = list(space.choices)
    if not 0 <= layer < len(names):
        raise UserError(f"layer {layer} does not exist; the space has {len(names)} choices",
                        f"give --layer between 0 and {len(names) - 1}")
    layer_name = names[layer]
    others = [n for n in names if n != layer_name and len(space.choices[n]) > 1]
    if not others:
        raise UserError("no other layer has a choice, so no two subnets differ around the shared op",
                        "analyse a supernet with at least two searchable layers")
    ms = list(range(1, min(max_m or len(others), len(others)) + 1))
    shared_ops = list(shared_ops or space.choices[layer_name])
    param_sets = {op: shared_op_parameters(task, layer, op) for op in shared_ops}
    if pairs < 2:
        raise UserError(f"pairs={pairs} gives no spread", "use at least 2 pairs per cell")
    device = next(task.model.parameters()).device
    if batches is None:
        held, _ = task.heldout(eval_batches=1)
        batches = held[:1]
    batches = [prepare_batch(b, device) for b in batches]
    if align and aligner is None:
        aligner = default_aligner(task)
    rng = random.Random(seed)
    drawn, notes = draw_pairs(space, layer_name, shared_ops, ms, kinds, pairs, rng, families)
    probes = {op: GradientProbe(task, batches, params, aligner if align else None) for op, params in param_sets.items()}
    task.model.eval()  # no dropout: a subnet's gradient is a fixed vector
    records = []
    for pair in tqdm(drawn, desc="interference pairs", disable=not progress):
        probe = probes[pair.shared_op]
        record = {"m": pair.m, "kind": pair.kind, "shared_op": pair.shared_op, "a": pair.a.to_list(),
                  "b": pair.b.to_list(), "cos": cosine(probe.gradient(pair.a), probe.gradient(pair.b))}
        if align:
            record["cos_aligned"] = cosine(probe.gradient(pair.a, True), probe.gradient(pair.b, True))
        records.append(record)
    rows = []
    for aligned in ((False, True) if align else (False,)):
        field = "cos_aligned" if aligned else "cos"
        for kind in kinds:
            for m in ms:
                values = [r[field] for r in records if r["m"] == m and r["kind"] == kind]
                if values:
                    rows.append({"m": m, "kind": kind, "aligned": aligned, **summarise(values)})
    settings = {"layer": layer, "layer_name": layer_name, "shared_ops": shared_ops, "ms": ms, "pairs": pairs,
                "seed": seed, "kinds": list(kinds), "batches": len(batches),
                "batch_rows": sum(int(next(iter(b.values())).shape[0]) for b in batches),
                "checkpoint": str(getattr(task, "ckpt", "")) or None,
                "align": ({"base_arch": aligner.base_arch.to_list(), "weight": aligner.weight,
                           "block_size": aligner.block_size} if align else None)}
    return {"settings": settings, "rows": rows, "pairs": records, "notes": notes}


def interference_table(result: dict) -> str:
    """Markdown: one row per m, mean +- standard error (n pairs) per kind, without / with alignment."""
    rows = result["rows"]
    aligned_flags = sorted({r["aligned"] for r in rows})
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    header = ["m"] + [f"{KIND_LABELS[k]}{' (aligned)' if a else ''}" for a in aligned_flags for k in kinds]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in result["settings"]["ms"]:
        cells = [str(m)]
        for a in aligned_flags:
            for k in kinds:
                row = next((r for r in rows if r["m"] == m and r["kind"] == k and r["aligned"] == a), None)
                cells.append(f"{row['mean']:.3f} ± {row['sem']:.3f} ({row['n']})" if row and row["n"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_interference(result: dict, path: str | Path, title: str | None = None) -> Path:
    """Mean cosine similarity against m, one line per kind; dashed: with the MAGIC-A term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = {"same": "tab:blue", "cross": "tab:red", "any": "tab:gray"}
    for aligned in (False, True):
        for kind in KINDS:
            rows = [r for r in result["rows"] if r["kind"] == kind and r["aligned"] == aligned and r["n"]]
            if not rows:
                continue
            ax.errorbar([r["m"] for r in rows], [r["mean"] for r in rows], yerr=[r["sem"] for r in rows],
                        color=colors[kind], linestyle="--" if aligned else "-", marker="o", capsize=3,
                        label=f"{KIND_LABELS[kind]}{' + MAGIC-A term' if aligned else ''}")
    ax.set_xlabel("m (other layers that differ)")
    ax.set_ylabel("cosine similarity of the shared op's gradient")
    ax.set_xticks(result["settings"]["ms"])
    if min((r["mean"] for r in result["rows"] if r["n"]), default=1.0) < 0.1:
        ax.axhline(0.0, color="black", linewidth=0.5)  # only when near: else it flattens the curves
    ax.set_title(title or f"Interference at {result['settings']['layer_name']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_interference(result: dict, output_dir: str | Path) -> dict:
    """OUT/interference.json, interference.md (the table) and interference.png."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "interference.json").write_text(json.dumps(result, indent=2))
    (out / "interference.md").write_text(interference_table(result) + "\n")
    plot_interference(result, out / "interference.png")
    return {"json": str(out / "interference.json"), "table": str(out / "interference.md"),
            "plot": str(out / "interference.png")}
