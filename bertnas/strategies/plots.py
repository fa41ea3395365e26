"""Plots of a strategy run's `log.jsonl`: the mean entropy per simplex of the architecture
weights against the step (`OUT/entropy.png`), and several runs on one plot (DARTS vs GAEA).

    plot_entropy("runs/nb201-darts/log.jsonl", "runs/nb201-darts/entropy.png")
    plot_entropy_runs({"DARTS": "runs/darts/log.jsonl", "GAEA-DARTS": "runs/gaea/log.jsonl"}, "entropy.png")
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path


def read_entropy(log_path: str | Path) -> tuple[list[int], list[float]]:
    """(steps, mean entropy) of the log lines that carry "entropy"; a resumed run's repeated
    steps keep their last line."""
    path = Path(log_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the log.jsonl of a strategy run")
    by_step: dict[int, float] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not JSON ({err})") from None
        if isinstance(record.get("entropy"), (int, float)) and "step" in record:
            by_step[int(record["step"])] = float(record["entropy"])
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


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


def _uniform_entropy(log_path: Path) -> float | None:
    """The mean entropy of uniform weights over the simplices of the run's first `arch_weights`."""
    for line in Path(log_path).read_text().splitlines():
        weights = json.loads(line).get("arch_weights") if line.strip() else None
        if weights:
            return sum(math.log(len(w)) for w in weights.values()) / len(weights)
    return None


def plot_entropy(log_path: str | Path, png: str | Path, title: str | None = None) -> Path | None:
    """`png`: the run's mean entropy per simplex against the step, the uniform level dashed.
    Returns None (and draws nothing) when no log line carries "entropy" (RS-WS, SPOS)."""
    steps, values = read_entropy(log_path)
    if not steps:
        return None
    title = title or f"architecture-weight entropy: {Path(log_path).parent.name}"
    return _draw({"mean entropy": (steps, values)}, png, title, _uniform_entropy(Path(log_path)))


def plot_entropy_runs(runs: Mapping[str, str | Path], png: str | Path,
                      title: str = "architecture-weight entropy") -> Path:
    """Several runs' entropy curves on one plot; `runs`: legend label -> log.jsonl (or its run folder)."""
    curves, uniform = {}, None
    for label, path in runs.items():
        path = Path(path)
        path = path / "log.jsonl" if path.is_dir() else path
        steps, values = read_entropy(path)
        if not steps:
            raise ValueError(f"{path} has no 'entropy' field: {label} is not a strategy with architecture weights")
        curves[label] = (steps, values)
        uniform = uniform if uniform is not None else _uniform_entropy(path)
    return _draw(curves, png, title, uniform)


__all__ = ["plot_entropy", "plot_entropy_runs", "read_entropy"]
