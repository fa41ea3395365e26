"""`training.png`: the curves of a run (loss, its task and alignment terms, the learning rate).

Read from a pre-training run's `log.jsonl` (`plot_log`) or from any list of per-step records
(`plot_training`, e.g. transformers' `Trainer.state.log_history`). Noisy per-step losses are
drawn faintly with a moving average on top, as a loss curve in TensorBoard would be.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TRAINING_PLOT = "training.png"
# loss-like fields drawn on the loss panel: the total, then the terms it is made of (task terms,
# distillation MSE / KD terms, MAGIC-A's alignment)
LOSS_SUFFIXES = ("_loss", "_mse", "_kd")
LR_KEYS = ("lr", "learning_rate")


def read_log(path: str | Path) -> list[dict]:
    """The records of a `log.jsonl` (a torn last line, from a killed run, is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _series(records: list[dict], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for i, r in enumerate(records):
        value = r.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(r.get("step", i + 1))
            ys.append(float(value))
    return xs, ys


def _smooth(ys: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training(records: list[dict], path: str | Path, title: str = "training") -> Path | None:
    """Loss panel (every loss-like field present) and learning-rate panel; None when nothing to plot."""
    keys = ["loss"] + sorted({k for r in records for k in r if k != "loss" and k.endswith(LOSS_SUFFIXES)})
    losses = [(k, *_series(records, k)) for k in keys]
    losses = [(k, xs, ys) for k, xs, ys in losses if ys and not (k == "align_loss" and not any(ys))]
    lr = next(((k, *_series(records, k)) for k in LR_KEYS if _series(records, k)[1]), None)
    if not losses and lr is None:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    top = max((max(ys) for _, _, ys in losses), default=0.0)
    small = None  # terms far below the total (MAGIC-A's weighted alignment) get their own scale
    handles = []
    for i, (key, xs, ys) in enumerate(losses):
        color, target = f"C{i}", ax
        if key != "loss" and top > 0 and max(abs(y) for y in ys) < 0.05 * top:
            small = small or ax.twinx()
            target = small
        window = max(1, len(ys) // 50)
        if window > 1:
            target.plot(xs, ys, color=color, alpha=0.25, lw=0.8)
        handles += target.plot(xs, _smooth(ys, window), color=color, lw=1.6,
                               label=key + (" (right axis)" if target is small else "")
                               + (f" (mean of {window})" if window > 1 else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: loss and its terms")
    if handles:
        ax.legend(handles=handles, fontsize=8)
    ax = axes[1]
    if lr is not None:
        ax.plot(lr[1], lr[2], color="C3")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_log(log_path: str | Path, path: str | Path | None = None, title: str = "pretrain") -> Path | None:
    """`training.png` beside a run's `log.jsonl` (or at `path`)."""
    log_path = Path(log_path)
    if not log_path.is_file():
        return None
    return plot_training(read_log(log_path), path or log_path.parent / TRAINING_PLOT, title=title)


__all__ = ["TRAINING_PLOT", "read_log", "plot_training", "plot_log"]
