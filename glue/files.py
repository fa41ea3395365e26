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

import os
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
    source: str = ""  # the training file's name (or a local dataset folder's), for results and the model card
    hub_dataset: str = ""  # a Hub dataset's id (--dataset-name), for the model card's datasets and model-index
    dataset_config: str | None = None  # its configuration (--dataset-config)
    validation_split: str = "validation"  # the split scored (--validation-split), for the model-index

    @property
    def metric(self) -> tuple[str, str]:
        return ("evaluate-metric/glue", self.metric_task)

    @property
    def hub_config(self) -> str | None:
        return self.dataset_config if self.hub_dataset else None


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
    train_path, dev_path = Path(train_file), Path(validation_file) if validation_file else None
    if dev_path is None:
        raise UserError("--train-file needs --validation-file (the scores are on it)",
                        "pass --validation-file DEV.csv")
    for path in (train_path, dev_path):  # both checked before either is read
        _format(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist", "give an existing .csv, .tsv, .json or .jsonl file")
    raw = {"train": _read(train_path), "validation": _read(dev_path)}
    return build_task(raw, {"train": train_path, "validation": dev_path}, text_columns, label_column,
                      name=train_path.stem, folder=str(train_path.parent), hub_name=train_path.name,
                      source=train_path.name)


def _quiet_load(*args, **kwargs):
    """`datasets.load_dataset` without a progress bar per split (they would bury a one-line error)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(*args, **kwargs)
    finally:
        if shown:
            datasets.enable_progress_bars()


def load_dataset_columns(name: str, config: str | None = None, train_split: str = "train",
                         validation_split: str = "validation", text_columns=None, label_column: str = "label"):
    """(FileTask, DatasetDict) of a `datasets` dataset, as transformers' `run_glue.py --dataset_name`:
    a Hub id (`stanfordnlp/imdb`, `glue` with config `sst2`), a local folder written by
    `save_to_disk`, or a local folder of data files. Its `train_split` / `validation_split` (slices
    allowed, `train[:1000]`) and columns; a ClassLabel label column keeps its names. Offline, or
    with the Hub unreachable, a Hub id is one line naming the local alternatives."""
    import datasets

    from bertnas.core.errors import hub_offline, looks_like_path
    from glue.common import hub_reachable

    local = Path(name).expanduser()
    where = {"train": f"{name} [{train_split}]", "validation": f"{name} [{validation_split}]"}
    if local.is_dir():
        try:
            if (local / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
                saved = datasets.load_from_disk(str(local))
                raw = {"train": _split(saved, train_split, name), "validation": _split(saved, validation_split, name)}
            else:
                raw = {"train": _quiet_load(str(local), config, split=train_split),
                       "validation": _quiet_load(str(local), config, split=validation_split)}
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise UserError(f"--dataset-name {name}: {_first_line(err)}",
                            "check --train-split / --validation-split (and --dataset-config)") from None
        return build_task(raw, where, text_columns, label_column, name=local.name, folder=str(local),
                          hub_name=local.name, source=local.name, validation_split=validation_split)
    if looks_like_path(name) or local.suffix in (".csv", ".tsv", ".json", ".jsonl"):
        raise UserError(f"--dataset-name {name} does not exist",
                        "give a Hub dataset id, a local dataset folder, or files with --train-file / --validation-file")
    offline = hub_offline() or os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or not hub_reachable():
        why = "the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else "the Hugging Face Hub is unreachable"
        raise UserError(f"--dataset-name {name} is not a local folder and {why}",
                        "give a local dataset folder (save_to_disk) as --dataset-name, or --train-file / "
                        "--validation-file, or go online")
    try:
        raw = {"train": _quiet_load(name, config, split=train_split),
               "validation": _quiet_load(name, config, split=validation_split)}
    except Exception as err:  # noqa: BLE001 - unknown name or config, a missing split: one line
        raise UserError(f"--dataset-name {name}{f' --dataset-config {config}' if config else ''} could not be "
                        f"loaded ({type(err).__name__}: {_first_line(err)})",
                        "check the dataset id, its config and --train-split / --validation-split") from None
    slug = name.replace("/", "-") + (f"-{config}" if config else "")
    return build_task(raw, where, text_columns, label_column, name=slug, folder="", hub_name=name, source="",
                      hub_dataset=name, dataset_config=config, validation_split=validation_split)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _split(saved, split: str, name: str):
    import datasets

    if isinstance(saved, datasets.Dataset):
        raise UserError(f"--dataset-name {name} holds one split, not a DatasetDict",
                        "save a DatasetDict with train and validation splits, or give --train-file / --validation-file")
    if split not in saved:
        raise UserError(f"--dataset-name {name} has no split {split!r} (it has {sorted(saved)})",
                        "name them with --train-split / --validation-split")
    return saved[split]


def build_task(raw: dict, where: dict, text_columns, label_column: str, *, name: str, folder: str, hub_name: str,
               source: str, hub_dataset: str = "", dataset_config: str | None = None,
               validation_split: str = "validation"):
    """(FileTask, DatasetDict) of raw train / validation Datasets (`where`: how to name each in errors)."""
    import datasets

    for split, ds in raw.items():
        if label_column not in ds.column_names:
            raise UserError(f"{where[split]}: no label column {label_column!r} (it has {ds.column_names})",
                            "name it: --label-column COL")
        if len(ds) == 0:
            raise UserError(f"{where[split]} holds no rows", "give a split with rows")
    texts = _text_columns(raw["train"], text_columns, label_column, where["train"])
    feature = raw["train"].features[label_column]
    named = isinstance(feature, datasets.ClassLabel)  # a datasets label column: its own names and ids
    values = raw["train"][label_column]
    regression = not named and any(isinstance(v, float) and not float(v).is_integer() for v in values)
    if regression:
        labels, metric_task, metrics = None, "stsb", ("pearson", "spearmanr")
    else:
        labels = tuple(feature.names) if named else tuple(sorted(
            {str(v) for v in values}, key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s)))
        metric_task, metrics = ("mrpc", ("f1", "accuracy")) if len(labels) == 2 else ("sst2", ("accuracy",))
        if len(labels) < 2:
            raise UserError(f"{where['train']}: the label column {label_column!r} holds one value",
                            "give a training set with at least two classes")
    spec = FileTask(name=name, folder=folder, text_columns=texts, labels=labels, metrics=metrics,
                    local_text_columns=texts, local_label_column=label_column, test_splits={}, hub_name=hub_name,
                    metric_task=metric_task, source=source, hub_dataset=hub_dataset, dataset_config=dataset_config,
                    validation_split=validation_split)
    index = {label: i for i, label in enumerate(labels or ())}
    out = {}
    for split, ds in raw.items():
        missing = [c for c in texts if c not in ds.column_names]
        if missing:
            raise UserError(f"{where[split]}: no column(s) {missing} (it has {ds.column_names})",
                            "give splits with the same columns")
        columns = {c: [str(t) for t in ds[c]] for c in texts}
        if regression:
            columns["label"] = [float(v) for v in ds[label_column]]
        elif named:
            ids = [int(v) for v in ds[label_column]]
            if any(not 0 <= i < len(labels) for i in ids):
                raise UserError(f"{where[split]}: rows without a label (-1) in {label_column!r}",
                                "use a labelled split (a test split of the Hub has none)")
            columns["label"] = ids
        else:
            unknown = sorted({str(v) for v in ds[label_column]} - set(index))
            if unknown:
                raise UserError(f"{where[split]}: labels {unknown[:5]} are not in the training set",
                                "give splits with the same label set")
            columns["label"] = [index[str(v)] for v in ds[label_column]]
        columns["idx"] = list(range(len(ds)))
        features = {c: datasets.Value("string") for c in texts}
        features["label"] = (datasets.Value("float32") if regression
                             else datasets.ClassLabel(names=[str(x) for x in labels]))
        features["idx"] = datasets.Value("int32")
        out[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return spec, datasets.DatasetDict(out)


__all__ = ["FileTask", "load_files", "load_dataset_columns", "build_task"]
