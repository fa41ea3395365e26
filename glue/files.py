"""Any sequence classification or regression task from local files, as transformers' `run_glue.py`
takes them: `bertnas finetune --train-file train.csv --validation-file dev.csv`.

CSV, TSV and JSON / JSON Lines files with a header (JSON: one object per row). The text columns are
`--text-columns a,b` (one or two), else found by name (`sentence1` + `sentence2`, `sentence`, `text`,
`question` + `context`, ...), else the first one or two string columns; the label column is
`--label-column` (default `label`). Integer or string labels make a classification task (label
names: the training file's distinct values, sorted; scored by accuracy, plus F1 for two labels);
labels with fractions make a regression (Pearson and Spearman). The task is named after the
training file's stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertnas.core.errors import UserError
from glue.tasks import GlueTask

PAIRS = (("sentence1", "sentence2"), ("question", "sentence"), ("question", "context"), ("premise", "hypothesis"),
         ("question1", "question2"), ("text_a", "text_b"))
SINGLES = ("sentence", "text", "review", "content")
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass(frozen=True)
class FileTask(GlueTask):
    """A task read from files; scored with the GLUE metric module of the same kind of task."""

    metric_task: str = "sst2"  # the local glue metric config: sst2 (accuracy), mrpc (F1 + accuracy), stsb
    source: str = ""  # the training file's name, for results and the model card

    @property
    def metric(self) -> tuple[str, str]:
        return ("evaluate-metric/glue", self.metric_task)

    @property
    def hub_config(self) -> str | None:
        return None


def _format(path: Path) -> str:
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{path}: unknown file type {path.suffix!r}", "give a .csv, .tsv, .json or .jsonl file")
    return FORMATS[path.suffix.lower()]


def _read(path: Path):
    import datasets

    if not path.is_file():
        raise UserError(f"{path} does not exist", "give an existing .csv, .tsv, .json or .jsonl file")
    kind = _format(path)
    kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per small file would bury the one-line errors that follow
    try:
        return datasets.load_dataset(kind, data_files=str(path), split="train", **kwargs)
    finally:
        if shown:
            datasets.enable_progress_bars()


def _text_columns(ds, given, label: str, path: Path) -> tuple[str, ...]:
    columns = [c for c in ds.column_names if c != label]
    if given:
        missing = [c for c in given if c not in ds.column_names]
        if missing:
            raise UserError(f"{path}: no column(s) {missing} (it has {ds.column_names})", "fix --text-columns")
        return tuple(given)
    for pair in PAIRS:
        if all(c in columns for c in pair):
            return pair
    for single in SINGLES:
        if single in columns:
            return (single,)
    strings = [c for c in columns if getattr(ds.features[c], "dtype", None) in ("string", "large_string")]
    if not strings:
        raise UserError(f"{path}: no text column found among {ds.column_names}", "name them: --text-columns COL[,COL2]")
    return tuple(strings[:2])


def load_files(train_file, validation_file, text_columns=None, label_column: str = "label"):
    """(FileTask, DatasetDict with train / validation in GLUE's column layout: texts, label, idx)."""
    import datasets

    train_path, dev_path = Path(train_file), Path(validation_file) if validation_file else None
    if dev_path is None:
        raise UserError("--train-file needs --validation-file (the scores are on it)",
                        "pass --validation-file DEV.csv")
    for path in (train_path, dev_path):  # both checked before either is read
        _format(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist", "give an existing .csv, .tsv, .json or .jsonl file")
    raw = {"train": _read(train_path), "validation": _read(dev_path)}
    for split, ds in raw.items():
        if label_column not in ds.column_names:
            raise UserError(f"{train_path if split == 'train' else dev_path}: no label column {label_column!r} "
                            f"(it has {ds.column_names})", "name it: --label-column COL")
    texts = _text_columns(raw["train"], text_columns, label_column, train_path)
    values = raw["train"][label_column]
    regression = any(isinstance(v, float) and not float(v).is_integer() for v in values)
    if regression:
        labels, metric_task, metrics = None, "stsb", ("pearson", "spearmanr")
    else:
        labels = tuple(sorted({str(v) for v in values}, key=lambda s: (not s.lstrip("-").isdigit(),
                                                                         int(s) if s.lstrip("-").isdigit() else 0, s)))
        metric_task, metrics = ("mrpc", ("f1", "accuracy")) if len(labels) == 2 else ("sst2", ("accuracy",))
        if len(labels) < 2:
            raise UserError(f"{train_path}: the label column {label_column!r} holds one value",
                            "give a file with at least two classes")
    spec = FileTask(name=train_path.stem, folder=str(train_path.parent), text_columns=texts, labels=labels,
                    metrics=metrics, local_text_columns=texts, local_label_column=label_column, test_splits={},
                    hub_name=train_path.name, metric_task=metric_task, source=train_path.name)
    index = {name: i for i, name in enumerate(labels or ())}
    out = {}
    for split, ds in raw.items():
        columns = {c: [str(t) for t in ds[c]] for c in texts}
        if regression:
            columns["label"] = [float(v) for v in ds[label_column]]
        else:
            unknown = sorted({str(v) for v in ds[label_column]} - set(index))
            if unknown:
                raise UserError(f"{dev_path}: labels {unknown[:5]} are not in the training file",
                                "give files with the same label set")
            columns["label"] = [index[str(v)] for v in ds[label_column]]
        columns["idx"] = list(range(len(ds)))
        features = {c: datasets.Value("string") for c in texts}
        features["label"] = (datasets.Value("float32") if regression
                             else datasets.ClassLabel(names=[str(x) for x in labels]))
        features["idx"] = datasets.Value("int32")
        out[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return spec, datasets.DatasetDict(out)


__all__ = ["FileTask", "load_files"]
