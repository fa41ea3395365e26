"""Search results: ranked candidates, `results.json`, the Pareto front and `pareto.png`.

`OUT/results.json` is a JSON list, best first, of
`{"arch": [op, ...], "score": ..., "params": ..., "flops": ..., "latency_ms": ..., "rank": 1, "metric": ...}`
(plus method-specific fields, e.g. "bin" for progressive shrinking). `OUT/evaluated.json`
lists every arch the search scored, in the same format; `OUT/search.json` records the
settings, checkpoint, held-out set and timings; `OUT/pareto.png` plots params against score
for every evaluated arch with the Pareto front highlighted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from bertnas.core.errors import UserError
from bertnas.storage import strict_json

logger = logging.getLogger("bertnas.search")

RESULTS_FILE = "results.json"
EVALUATED_FILE = "evaluated.json"
SEARCH_FILE = "search.json"
PLOT_FILE = "pareto.png"


@dataclass
class Candidate:
    """One scored arch with its costs; `extra` holds method-specific fields ("bin", ...)."""

    arch: object  # an Arch (or a tuple of op names)
    score: float
    params: int
    flops: int
    latency_ms: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ops(self) -> tuple:
        return tuple(self.arch.ops) if hasattr(self.arch, "ops") else tuple(self.arch)

    def to_dict(self) -> dict:
        return {"arch": list(self.ops), "score": self.score, "params": self.params, "flops": self.flops,
                "latency_ms": self.latency_ms, **self.extra}


def make_candidate(space, constraints, arch, score: float, **extra) -> Candidate:
    costs = constraints.costs(space, arch)
    return Candidate(arch, float(score), costs["params"], costs["flops"], costs["latency_ms"], dict(extra))


def is_finite(candidate: Candidate) -> bool:
    try:
        return math.isfinite(float(candidate.score))
    except (TypeError, ValueError):
        return False


def rank(candidates, higher_is_better: bool = False) -> list[Candidate]:
    """Best first; ties broken by fewer params, then by the arch (a stable, total order).
    Candidates whose score is not a finite number (a diverged supernet's NaN loss) are left out:
    NaN compares false with everything, so sorting them would put them anywhere, even first."""
    sign = -1.0 if higher_is_better else 1.0
    candidates = list(candidates)
    for c in candidates:
        if not is_finite(c):
            _LEFT_OUT[c.ops] = c.score
    return sorted((c for c in candidates if is_finite(c)), key=lambda c: (sign * c.score, c.params, c.ops))


# Archs `rank` left out since the search began (`start_ranking`), reported by `write_results`:
# the methods rank many times, one warning per search is enough.
_LEFT_OUT: dict = {}


def start_ranking() -> None:
    """Forget the archs left out by earlier searches in this process."""
    _LEFT_OUT.clear()


def pareto_front(candidates, higher_is_better: bool = False) -> list[Candidate]:
    """Candidates no other candidate beats on both params (fewer) and score (better), by params."""
    sign = -1.0 if higher_is_better else 1.0
    front, best = [], float("inf")
    for c in sorted((c for c in candidates if is_finite(c)), key=lambda c: (c.params, sign * c.score)):
        if sign * c.score < best:
            front.append(c)
            best = sign * c.score
    return front


def check_finite_scores(finite: int, left_out: dict, metric: str) -> None:
    """No ranking of a diverged supernet: an error when no arch has a finite score, a warning
    naming how many were left out otherwise."""
    if not left_out:
        return
    ops, score = next(iter(left_out.items()))
    if not finite:
        raise UserError(f"every one of the {len(left_out)} scored archs has a non-finite {metric} (e.g. {score}): "
                        "the supernet's weights diverged, so no ranking means anything",
                        "retrain the supernet (e.g. with a lower --lr) and search the new checkpoint")
    logger.warning("%d of %d scored archs have a non-finite %s (e.g. %s: %s); they are left out of the ranking "
                   "and the Pareto front", len(left_out), finite + len(left_out), metric, list(ops), score)


def to_entries(ranked, metric: str, higher_is_better: bool | None = None) -> list[dict]:
    direction = {} if higher_is_better is None else {"higher_is_better": bool(higher_is_better)}
    return [{**c.to_dict(), "rank": i + 1, "metric": metric, **direction} for i, c in enumerate(ranked)]


def batch_stderr(batch_scores) -> float | None:
    """The noise of a held-out score: the standard error of its per-batch values (None for one
    batch). Two archs whose scores differ by less than about twice this are not told apart."""
    values = [float(v) for v in batch_scores]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5




def plot_pareto(path: str | Path, evaluated, results, metric: str, higher_is_better: bool = False,
                title: str | None = None) -> Path:
    """params (x) vs score (y): every evaluated arch, the returned results, and the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path = Path(path)
    front = pareto_front(evaluated, higher_is_better)
    largest = max((c.params for c in evaluated), default=0)
    scale, unit = (1e6, "M") if largest >= 1e6 else (1e3, "k")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter([c.params / scale for c in evaluated], [c.score for c in evaluated], s=12, c="0.7",
               label=f"evaluated ({len(evaluated)})")
    ax.scatter([c.params / scale for c in results], [c.score for c in results], s=22, c="tab:blue",
               label=f"results ({len(results)})")
    noisy = [c for c in results if c.extra.get("score_stderr") is not None]
    if noisy:  # held-out noise: +- 2 standard errors over the batches
        ax.errorbar([c.params / scale for c in noisy], [c.score for c in noisy],
                    yerr=[2 * c.extra["score_stderr"] for c in noisy], fmt="none", ecolor="tab:blue", alpha=0.5,
                    capsize=2, label="results +- 2 s.e. (held-out batches)")
    ax.plot([c.params / scale for c in front], [c.score for c in front], "o-", c="tab:red", ms=5, lw=1.5,
            label=f"Pareto front ({len(front)})", drawstyle="steps-post")
    if results:
        best = results[0]
        ax.scatter([best.params / scale], [best.score], s=120, marker="*", c="gold", edgecolors="k", zorder=5,
                   label="best")
    ax.ticklabel_format(useOffset=False)
    ax.set_xlabel(f"parameters ({unit}, backbone)")
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(title or "Search results")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_results(output_dir: str | Path, results, evaluated, metric: str, higher_is_better: bool = False,
                  meta: dict | None = None) -> dict:
    """Write results.json, evaluated.json, search.json and pareto.png; returns their paths."""
    evaluated = list(evaluated)
    left_out = {**_LEFT_OUT, **{c.ops: c.score for c in evaluated if not is_finite(c)}}
    _LEFT_OUT.clear()
    check_finite_scores(len([c for c in evaluated if is_finite(c)]), left_out, metric)
    results = [c for c in results if is_finite(c)]
    evaluated = [c for c in evaluated if is_finite(c)]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = to_entries(results, metric, higher_is_better)
    paths = {"results": out / RESULTS_FILE, "evaluated": out / EVALUATED_FILE, "search": out / SEARCH_FILE,
             "plot": out / PLOT_FILE}
    paths["results"].write_text(strict_json.dumps(entries, indent=2) + "\n")
    paths["evaluated"].write_text(strict_json.dumps(to_entries(rank(evaluated, higher_is_better), metric,
                                                               higher_is_better), indent=2) + "\n")
    front = pareto_front(evaluated, higher_is_better)
    summary = {**(meta or {}), "metric": metric, "higher_is_better": higher_is_better,
               "num_results": len(entries), "num_evaluated": len(evaluated), "num_non_finite": len(left_out),
               "pareto_front": [c.to_dict() for c in front]}
    paths["search"].write_text(strict_json.dumps(summary, indent=2, default=str) + "\n")
    plot_pareto(paths["plot"], evaluated, results, metric, higher_is_better,
                title=f"{summary.get('method', 'search')}: {len(evaluated)} archs scored")
    return paths


def load_results(path: str | Path) -> list[dict]:
    """Entries of a results.json (or of a search output folder), checked for the needed fields."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Results file {path} does not exist; run `bertnas search ... --output-dir DIR` "
                                "and pass DIR/results.json")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} must hold a non-empty JSON list of ranked entries (as bertnas search writes)")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "arch" not in entry:
            raise ValueError(f"{path}: entry {i} has no 'arch'; expected {{'arch': [...], 'score': ...}}")
    return entries


__all__ = ["Candidate", "make_candidate", "rank", "is_finite", "check_finite_scores", "start_ranking", "pareto_front",
           "to_entries", "batch_stderr", "plot_pareto", "write_results",
           "load_results", "RESULTS_FILE", "EVALUATED_FILE", "SEARCH_FILE", "PLOT_FILE"]
