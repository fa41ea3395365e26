"""Reading score sets for `bertnas analyze ranking`: a supernet's scores and a ground truth.

A source is one of
- a `results.json` / `evaluated.json` of `bertnas search`: a JSON list of `{"arch", "score", ...}`
  (another value field with `field=`, e.g. "params");
- a JSON mapping arch -> value (`{"mha12,ffn,conv3,ffn": 0.81, ...}`; an arch is written as in
  `bertnas.analysis.ranking.arch_key`: ops joined by ",", a JSON list, or an NB201 string);
- `nb201:<dataset>` (`nb201:cifar10`, `nb201:cifar100`, `nb201:imagenet16-120`): the real
  NAS-Bench-201 200-epoch test accuracy of every arch (`bertnas.spaces.nb201.Nb201Benchmark`).

Every loaded set carries its direction (`higher_is_better`) and where it came from: given
explicitly, read from the file (an entry's `higher_is_better`, or its `metric` name: a loss,
error or perplexity is lower-is-better, an accuracy higher-is-better), or the role's default (a
supernet's scores are losses, lower is better; a truth is an accuracy, higher is better).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bertnas.core.errors import UserError, UserFileError

from bertnas.analysis.ranking import arch_key

NB201_PREFIX = "nb201:"
DEFAULT_HIGHER_IS_BETTER = {"scores": False, "truth": True}
LOWER_WORDS = ("loss", "err", "perplexity", "ppl", "latency")
HIGHER_WORDS = ("acc", "f1", "precision", "recall", "auc")


@dataclass
class ScoreSet:
    """arch key -> value, the direction of the values, and a description of the source."""

    values: dict
    higher_is_better: bool
    direction_from: str  # "given" | "file" | "default"
    source: str
    metric: str | None = None


def direction_of_metric(metric: str | None) -> bool | None:
    """True / False when the metric name says which way is better, else None."""
    if not metric:
        return None
    name = str(metric).lower()
    if any(word in name for word in LOWER_WORDS):
        return False
    if any(word in name for word in HIGHER_WORDS):
        return True
    return None


def _nb201(spec: str) -> ScoreSet:
    from bertnas.spaces.nb201 import DATASETS, Nb201Benchmark

    dataset = spec[len(NB201_PREFIX):].strip() or "cifar10"
    if dataset not in DATASETS:
        raise UserError(f"unknown NB201 dataset {dataset!r} in {spec!r}",
                        f"use one of {', '.join(NB201_PREFIX + d for d in DATASETS)}")
    bench = Nb201Benchmark()
    values = {arch_key(text): bench.rows[index][dataset] for text, index in bench.by_string.items()}
    return ScoreSet(values, True, "file", f"NAS-Bench-201 {dataset} test accuracy, 200 epochs ({bench.path})",
                    metric=f"{dataset}_test_accuracy")


def _read_json(path: Path):
    if not path.exists():
        raise UserFileError(f"{path} does not exist", "give a results.json / evaluated.json, a JSON mapping "
                                                      "arch -> value, or nb201:cifar10")
    if path.is_dir():
        for name in ("evaluated.json", "results.json"):  # a search output folder: every scored arch
            if (path / name).is_file():
                return _read_json(path / name)
        raise UserFileError(f"{path} is a folder without evaluated.json or results.json",
                            "give the JSON file itself")
    try:
        return json.loads(path.read_text()), path
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err})", "give a JSON list of {\"arch\", \"score\"} or a "
                                                             "mapping arch -> value") from None


def _from_list(data: list, path: Path, field: str):
    values, metrics, flags = {}, set(), set()
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "arch" not in entry:
            raise UserError(f"{path}: entry {i} is {str(entry)[:60]!r}, not an object with \"arch\"",
                            "give a list of {\"arch\": [...], \"score\": ...} (bertnas search's results.json)")
        if field not in entry:
            raise UserError(f"{path}: entry {i} has no field {field!r} (fields: {', '.join(entry)})",
                            "choose the value field (e.g. --scores-field / --truth-field)")
        key = arch_key(entry["arch"])
        if key in values and values[key] != entry[field]:
            raise UserError(f"{path}: arch {entry['arch']} appears twice with different {field}",
                            "give each arch once")
        values[key] = entry[field]
        if entry.get("metric") and field == "score":
            metrics.add(str(entry["metric"]))
        if "higher_is_better" in entry:
            flags.add(bool(entry["higher_is_better"]))
    metric = next(iter(metrics)) if len(metrics) == 1 else (field if field != "score" else None)
    higher = next(iter(flags)) if len(flags) == 1 else None
    return values, metric, higher


def load_values(source: str | Path, role: str = "scores", field: str = "score",
                higher_is_better: bool | None = None) -> ScoreSet:
    """A `ScoreSet` from a file or `nb201:<dataset>` (see the module doc). `role` ("scores" or
    "truth") only picks the default direction; `higher_is_better` overrides any direction."""
    if role not in DEFAULT_HIGHER_IS_BETTER:
        raise ValueError(f"role must be 'scores' or 'truth', got {role!r}")
    spec = str(source)
    if spec.startswith(NB201_PREFIX):
        loaded = _nb201(spec)
    else:
        data, path = _read_json(Path(spec).expanduser())
        if isinstance(data, list):
            values, metric, higher = _from_list(data, path, field)
        elif isinstance(data, dict):
            values, metric, higher = {arch_key(k): v for k, v in data.items()}, None, None
        else:
            raise UserError(f"{path} holds a JSON {type(data).__name__}", "give a list of {\"arch\", \"score\"} "
                                                                         "or a mapping arch -> value")
        if not values:
            raise UserError(f"{path} holds no archs", "score some archs first (bertnas search)")
        if higher is None:
            higher = direction_of_metric(metric)
        loaded = ScoreSet(values, bool(higher) if higher is not None else DEFAULT_HIGHER_IS_BETTER[role],
                          "file" if higher is not None else "default", str(path), metric)
    if higher_is_better is not None:
        loaded.higher_is_better, loaded.direction_from = bool(higher_is_better), "given"
    return loaded


def check_truth_fits(truth: str | Path | None, space: str, checkpoint, option: str = "--truth") -> None:
    """A built-in truth belongs to one space: NAS-Bench-201 accuracies against another space's
    supernet would share no arch (found only after the search). Checked before any work."""
    if truth is None or not str(truth).startswith(NB201_PREFIX) or space == "nb201":
        return
    raise UserError(f"{option} {truth} holds NAS-Bench-201 accuracies but {checkpoint} is a supernet of the "
                    f"{space!r} space", "give a truth of this supernet's archs (a JSON mapping arch -> value, or a "
                    "results list), or an NB201 checkpoint")


def direction_word(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"
