"""Load a GLUE task or SQuAD offline from local files in the usual layout, or from the Hub.

Local GLUE layout (the one `download_glue_data.py` writes)::

    <data_dir>/glue/SST-2/{train,dev,test}.tsv
    <data_dir>/glue/MNLI/{train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv
    <data_dir>/squad/v1.1/dev-v1.1.json

`data_dir` may be the folder that holds `glue/` and `squad/`, the `glue/` folder, or the task's own folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import datasets

from glue.common import hub_reachable
from glue.tasks import GlueTask, SquadTask, get_task

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    return Path(os.environ.get("BERTNAS_DATA_DIR", REPO.parent / "shared" / "data"))


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _local_file(split: str) -> str:
    """GLUE layout file of a split: validation -> dev.tsv, validation_matched -> dev_matched.tsv."""
    return split.replace("validation", "dev") + ".tsv"


def _local_files(spec) -> dict[str, str]:
    """split -> file name (relative to the task's folder) of every split the task has."""
    if isinstance(spec, SquadTask):
        return {split: spec.local_file(split) for split in ("train", "validation")}
    splits = ["train", *spec.dev_splits.values(), *spec.test_splits.values()]
    return {split: _local_file(split) for split in splits}


def task_folder(spec, data_dir: str | Path | None) -> Path:
    """Where the task's local files live: `<data_dir>/glue/<Folder>` (or `squad/<version>`), `<data_dir>/<Folder>`,
    or `data_dir` itself."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if isinstance(spec, SquadTask):
        candidates = (root / "squad" / spec.version, root / "squad", root / spec.version, root)
    else:
        candidates = (root / "glue" / spec.folder, root / spec.folder, root)
    for candidate in candidates:
        if candidate.is_dir() and any((candidate / f).exists() for f in _local_files(spec).values()):
            return candidate
    return candidates[0]


def _layout_help(spec) -> str:
    files = ", ".join(_local_files(spec).values())
    if isinstance(spec, SquadTask):
        return f"expected the official SQuAD json in <data-dir>/squad/{spec.version}/ ({files})"
    return f"expected the GLUE download layout <data-dir>/glue/{spec.folder}/ with {files}"


def _read_tsv(path: Path, spec: GlueTask, labelled: bool) -> datasets.Dataset:
    wanted = [*spec.local_text_columns, *([spec.local_label_column] if labelled else [])]
    kwargs = dict(
        data_files=str(path), delimiter="\t", quoting=3,  # GLUE files hold bare '"': no quoting at all
        encoding="utf-8-sig",  # MRPC begins with a byte-order mark
        na_filter=False,  # "NA" / "null" are sentences too
        on_bad_lines="skip",  # QQP's files hold a few broken rows (too many fields); counted below
    )
    if labelled and spec.headerless_columns:
        kwargs.update(header=None, column_names=list(spec.headerless_columns))
    index_col = spec.local_index_column
    kwargs["converters"] = {col: str for col in wanted}  # raw text, no type guessing
    raw = datasets.load_dataset("csv", split="train", **kwargs)
    missing = [col for col in wanted if col not in raw.column_names]
    if missing:
        raise ValueError(f"{path}: columns {missing} not found (the file has {raw.column_names}); "
                         f"{_layout_help(spec)}")
    raw = _drop_broken_rows(raw, path, wanted if labelled else [], has_header=not (labelled and spec.headerless_columns))
    columns = {ours: [str(t) for t in raw[theirs]] for ours, theirs in zip(spec.text_columns, spec.local_text_columns)}
    features = {col: datasets.Value("string") for col in spec.text_columns}
    if labelled:
        columns["label"] = _label_ids(spec, raw[spec.local_label_column], path)
        features["label"] = (datasets.Value("float32") if spec.is_regression
                             else datasets.ClassLabel(names=list(spec.labels)))
    # the row id: the file's index column when it has one (MRPC train/dev do not)
    if index_col and index_col in raw.column_names:
        columns["idx"] = [int(i) for i in raw[index_col]]
    else:
        columns["idx"] = list(range(len(raw)))
    features["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


MAX_BROKEN_ROWS = 0.001  # a few broken rows are the file's (QQP); more means a wrong file or format


def _drop_broken_rows(raw: datasets.Dataset, path: Path, required: list[str], has_header: bool) -> datasets.Dataset:
    """Drop rows that pandas read short (an empty field among `required`: the text and label columns of
    a labelled split; test splits keep every row the GLUE server expects), count those it skipped as
    too long, and fail when they are more than a tiny fraction of the file."""
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip()) - int(has_header)
    if required:
        keep = [i for i, row in enumerate(zip(*(raw[col] for col in required))) if all(str(v) != "" for v in row)]
    else:
        keep = list(range(len(raw)))
    broken = lines - len(keep)
    if broken > max(2, MAX_BROKEN_ROWS * lines):
        raise ValueError(f"{path}: {broken} of {lines} rows are broken (wrong number of tab-separated fields); "
                         "is this a GLUE file in the download layout (tab-separated, one row per line)?")
    if broken:
        logger.warning("%s: skipped %d broken row(s) of %d", path, broken, lines)
    return raw.select(keep) if len(keep) < len(raw) else raw


def _label_ids(spec: GlueTask, values, path) -> list:
    if spec.is_regression:
        try:
            return [float(v) for v in values]
        except ValueError as err:
            raise ValueError(f"{path}: the {spec.name} score column must hold numbers ({err})") from None
    index = spec.local_label_values or {str(i): i for i in range(spec.num_labels)}
    ids = []
    for row, value in enumerate(values):
        value = str(value).strip()
        if value not in index:
            raise ValueError(f"{path} row {row}: label {value!r} is not one of the {spec.name} labels "
                             f"{sorted(index)}; is this the {spec.name} file?")
        ids.append(index[value])
    return ids


def _squad_rows(path: Path) -> dict[str, list]:
    """Flatten the official SQuAD json into the Hub dataset's columns."""
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers", [])
                rows["id"].append(qa["id"])
                rows["title"].append(article.get("title", ""))
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append({"text": [a["text"] for a in answers],
                                        "answer_start": [a["answer_start"] for a in answers]})
    return rows


def load_local(spec, folder: Path, splits=None) -> datasets.DatasetDict:
    """Read the task's splits from its local folder (GLUE tsv files or SQuAD json). Without `splits`:
    the GLUE dev sets are required, other splits read when present; with `splits`: exactly those."""
    squad = isinstance(spec, SquadTask)
    out = {}
    for split, name in _local_files(spec).items():
        if splits is not None and split not in splits:
            continue
        path = folder / name
        if not path.exists():
            if splits is not None or (not squad and split.startswith("validation")):
                raise FileNotFoundError(f"Task {spec.name}: missing {path} ({split} split); {_layout_help(spec)}")
            logger.info("%s: no %s, skipping the %s split", spec.name, path, split)
            continue
        if squad:
            out[split] = datasets.Dataset.from_dict(_squad_rows(path))
        else:
            out[split] = _read_tsv(path, spec, labelled=not split.startswith("test"))
    if not out:
        raise FileNotFoundError(f"Task {spec.name}: no data files in {folder}; {_layout_help(spec)}")
    return datasets.DatasetDict(out)


def load_task(task, data_dir: str | Path | None = None, splits=None) -> datasets.DatasetDict:
    """The task's splits as a DatasetDict in the Hub's column names.

    Local files are used when the task's folder exists under `data_dir` (default: $BERTNAS_DATA_DIR);
    otherwise, when online, the Hub dataset. `splits` restricts (and then requires) the splits read.
    """
    spec = get_task(task) if isinstance(task, str) else task
    folder = task_folder(spec, data_dir)
    if folder.is_dir() and any((folder / f).exists() for f in _local_files(spec).values()):
        return load_local(spec, folder, splits)
    first = next(iter(_local_files(spec).values()))
    where = "pass --data-dir DIR or set BERTNAS_DATA_DIR (the folder that holds glue/ and squad/)"
    if data_dir is not None or _offline():
        why = "" if data_dir is not None else " and the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
        raise FileNotFoundError(f"Task {spec.name}: {folder / first} not found{why}; {where}; {_layout_help(spec)}")
    # datasets retries an unreachable Hub for minutes and ends in a ConnectionError traceback:
    # one short probe first turns that into one line naming the local alternative
    if not hub_reachable():
        raise FileNotFoundError(f"Task {spec.name}: {folder / first} not found and the Hugging Face Hub is "
                                f"unreachable; {where}")
    logger.info("%s: no local files under %s, loading %s from the Hub", spec.name, folder, spec.hub_name)
    if isinstance(spec, SquadTask):
        ds = datasets.load_dataset(spec.hub_name)
    else:
        ds = datasets.load_dataset(spec.hub_name, spec.hub_config)
    if splits is not None:
        ds = datasets.DatasetDict({s: ds[s] for s in splits})
    return ds
