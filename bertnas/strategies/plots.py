"""Plots of a strategy run's `log.jsonl`: the mean entropy per simplex of the architecture
weights against the step (`OUT/entropy.png`), and several runs on one plot (DARTS vs GAEA).

    plot_entropy("runs/nb201-darts/log.jsonl", "runs/nb201-darts/entropy.png")
    plot_entropy_runs({"DARTS": "runs/darts/log.jsonl", "GAEA-DARTS": "runs/gaea/log.jsonl"}, "entropy.png")
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path


def entropy_lines(log_path: str | Path) -> list[dict]:
    """The log lines that carry "entropy" (`read_log`: one per step, a resumed run's last)."""
    from bertnas.storage.logs import read_log

    path = Path(log_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the log.jsonl of a strategy run")
    return [r for r in read_log(path) if isinstance(r.get("entropy"), (int, float))]


def _curve(lines: list[dict]) -> tuple[list[int], list[float]]:
    return [int(r["step"]) for r in lines], [float(r["entropy"]) for r in lines]


def read_entropy(log_path: str | Path) -> tuple[list[int], list[float]]:
    """(steps, mean entropy) of a strategy run's log."""
    return _curve(entropy_lines(log_path))


def _uniform_entropy(lines: list[dict]) -> float | None:
    """The mean entropy of uniform weights over the simplices of the first line's `arch_weights`."""
    for record in lines:
        weights = record.get("arch_weights")
        if weights:
            return sum(math.log(len(w)) for w in weights.values()) / len(weights)
    return None


def _draw(curves: Mapping[str, tuple[list, list]], png: str | Path, title: str, max_entropy: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    png = Path(png)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, lw=1.5, label=label)
    if max_entropy is not None:
        ax.axhline(max_entropy, c="0.6", ls="--", lw=1, label=f"uniform ({max_entropy:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("mean entropy per simplex (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, format="png")
    plt.close(fig)
    return png


def plot_entropy(log_path: str | Path, png: str | Path, title: str | None = None) -> Path | None:
    """`png`: the run's mean entropy per simplex against the step, the uniform level dashed.
    Returns None (and draws nothing) when no log line carries "entropy" (RS-WS, SPOS)."""
    lines = entropy_lines(log_path)
    if not lines:
        return None
    title = title or f"architecture-weight entropy: {Path(log_path).parent.name}"
    return _draw({"mean entropy": _curve(lines)}, png, title, _uniform_entropy(lines))


def plot_entropy_runs(runs: Mapping[str, str | Path], png: str | Path,
                      title: str = "architecture-weight entropy") -> Path:
    """Several runs' entropy curves on one plot; `runs`: legend label -> log.jsonl (or its run folder)."""
    curves, uniform = {}, None
    for label, path in runs.items():
        path = Path(path)
        path = path / "log.jsonl" if path.is_dir() else path
        lines = entropy_lines(path)
        if not lines:
            raise ValueError(f"{path} has no 'entropy' field: {label} is not a strategy with architecture weights")
        curves[label] = _curve(lines)
        uniform = uniform if uniform is not None else _uniform_entropy(lines)
    return _draw(curves, png, title, uniform)


__all__ = ["plot_entropy", "plot_entropy_runs", "read_entropy"]
