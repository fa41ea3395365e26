"""Architecture-weight sparsity over training, from a strategy run's `log.jsonl` (DARTS, GAEA, ...).

Each logged step of a strategy with architecture weights carries `arch_weights` ({label:
{candidate: weight}}, one simplex per choice) and `entropy` (their mean entropy in nats). This
module turns them into: the mean entropy per simplex against the step, each simplex's entropy
as a fraction of its maximum (log of its number of candidates: 1 = uniform, 0 = one-hot), and
at the last step the leading candidate and its weight per choice. A run whose weights stay near
uniform has not decided; one that turned one-hot early has stopped exploring (DARTS's known
failure; GAEA is meant to become sparse, but gradually). Reading and the single-curve plot of
the mean are in `bertnas.strategies.plots`; this adds the per-simplex view.
"""

from __future__ import annotations

import math
from pathlib import Path

from bertnas.core.errors import UserError, UserFileError


def simplex_entropy(weights: dict) -> float:
    """Entropy in nats of one simplex {candidate: weight} (weights renormalised to sum 1)."""
    values = [float(w) for w in weights.values()]
    total = sum(values)
    if total <= 0 or any(v < 0 for v in values):
        raise UserError(f"architecture weights {weights} are not a distribution", "log softmax-ed weights")
    return -sum((v / total) * math.log(v / total) for v in values if v > 0)


def entropy_over_training(log_path: str | Path) -> dict:
    """{"steps", "mean_entropy", "mean_normalized", "per_choice": {label: [normalized, ...]},
    "uniform_entropy", "final": {label: {"op", "weight", "normalized_entropy"}}} from a log.jsonl.
    Steps with `arch_weights` are recomputed from the weights; steps with only `entropy` keep it."""
    path = Path(log_path)
    path = path / "log.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise UserFileError(f"{path} does not exist", "give the log.jsonl of a strategy run (--log RUN/log.jsonl)")
    from bertnas.storage.logs import read_log

    # read_log keeps a resumed run's last line per step and skips a line cut by a kill.
    by_step = {int(r["step"]): r for r in read_log(path)
               if "arch_weights" in r or isinstance(r.get("entropy"), (int, float))}
    if not by_step:
        raise UserError(f"{path} has no step with 'arch_weights' or 'entropy'",
                        "this run has no architecture weights (SPOS / MAGIC-T sample subnets instead); give the "
                        "log of a DARTS / GAEA / RL strategy run")
    steps, means, normalized, uniform = [], [], [], None
    per_choice: dict[str, list] = {}
    final = {}
    for step in sorted(by_step):
        record = by_step[step]
        weights = record.get("arch_weights")
        steps.append(step)
        if weights:
            ents = {label: simplex_entropy(w) for label, w in weights.items()}
            maxes = {label: math.log(len(w)) if len(w) > 1 else 1.0 for label, w in weights.items()}
            uniform = sum(math.log(len(w)) for w in weights.values()) / len(weights)
            means.append(sum(ents.values()) / len(ents))
            normalized.append(sum(ents[label] / maxes[label] for label in ents) / len(ents))
            for label in weights:
                per_choice.setdefault(label, []).append(ents[label] / maxes[label])
            final = {label: {"op": max(w, key=lambda op: float(w[op])), "weight": max(float(v) for v in w.values()),
                             "normalized_entropy": ents[label] / maxes[label]} for label, w in weights.items()}
        else:
            means.append(float(record["entropy"]))
            normalized.append(means[-1] / uniform if uniform else math.nan)
    return {"log": str(path), "steps": steps, "mean_entropy": means, "mean_normalized": normalized,
            "per_choice": per_choice, "uniform_entropy": uniform, "final": final}


def plot_entropy_analysis(result: dict, path: str | Path) -> Path:
    """Each simplex's entropy as a fraction of uniform (thin) and their mean (thick) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = result["steps"]
    for label, values in result["per_choice"].items():
        if len(values) == len(steps):
            ax.plot(steps, values, linewidth=0.7, alpha=0.5)
    ax.plot(steps, result["mean_normalized"], color="black", linewidth=2, label="mean over choices")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8, label="uniform")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("entropy / log(candidates)")
    ax.set_title("architecture-weight entropy per choice")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
