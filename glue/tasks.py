"""The GLUE and SQuAD tasks: names, columns, labels, splits and official metrics.

Everything else in `glue` reads its task knowledge from here. Column names and label ids follow
the Hugging Face hub datasets (`nyu-mll/glue`, `rajpurkar/squad`, `rajpurkar/squad_v2`), so data
read from a local GLUE folder and data from the hub look the same to the rest of the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean


@dataclass(frozen=True)
class GlueTask:
    name: str  # command-line name, also the `glue` metric config: "sst2"
    folder: str  # folder in the standard GLUE layout: "SST-2"
    text_columns: tuple[str, ...]  # hub column names of the one or two input texts
    labels: tuple[str, ...] | None  # label names in hub id order; None = regression (STS-B)
    metrics: tuple[str, ...]  # keys of the official metric, in reporting order
    # Local GLUE files: the column (header name) holding each text, the label and the row id.
    local_text_columns: tuple[str, ...]
    local_label_column: str
    local_index_column: str | None = "index"
    # Label strings as written in the local files -> label id; None = "0"/"1"... or a float score.
    local_label_values: dict[str, int] | None = None
    # Train/dev files without a header (CoLA): the names of their columns, in order.
    headerless_columns: tuple[str, ...] | None = None
    # Dev splits: name used in results -> split name. One entry is reported without a prefix.
    dev_splits: dict[str, str] = field(default_factory=lambda: {"": "validation"})
    # Test splits: GLUE-server submission file stem -> split name.
    test_splits: dict[str, str] = field(default_factory=dict)
    hub_name: str = "nyu-mll/glue"

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def hub_config(self) -> str:
        return self.name

    @property
    def metric(self) -> tuple[str, str]:
        """(evaluate module name, config) of the official metric."""
        # Namespaced so that evaluate does not mistake this repo's own `glue/` folder for the module.
        return ("evaluate-metric/glue", self.name)


@dataclass(frozen=True)
class SquadTask:
    name: str  # "squad" or "squad_v2"
    version: str  # "v1.1" or "v2.0": folder and file names of the local json
    hub_name: str
    with_negatives: bool  # SQuAD 2.0 has unanswerable questions
    metrics: tuple[str, ...]

    @property
    def metric(self) -> tuple[str, None]:
        return (f"evaluate-metric/{self.name}", None)

    def local_file(self, split: str) -> str:
        prefix = {"train": "train", "validation": "dev"}[split]
        return f"{prefix}-{self.version}.json"


_ENTAIL2 = {"entailment": 0, "not_entailment": 1}

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in [
        GlueTask(
            name="cola",
            folder="CoLA",
            text_columns=("sentence",),
            labels=("unacceptable", "acceptable"),
            metrics=("matthews_correlation",),
            local_text_columns=("sentence",),
            local_label_column="label",
            headerless_columns=("source", "label", "original_label", "sentence"),
            test_splits={"CoLA": "test"},
        ),
        GlueTask(
            name="sst2",
            folder="SST-2",
            text_columns=("sentence",),
            labels=("negative", "positive"),
            metrics=("accuracy",),
            local_text_columns=("sentence",),
            local_label_column="label",
            test_splits={"SST-2": "test"},
        ),
        GlueTask(
            name="mrpc",
            folder="MRPC",
            text_columns=("sentence1", "sentence2"),
            labels=("not_equivalent", "equivalent"),
            metrics=("f1", "accuracy"),
            local_text_columns=("#1 String", "#2 String"),
            local_label_column="Quality",
            test_splits={"MRPC": "test"},
        ),
        GlueTask(
            name="stsb",
            folder="STS-B",
            text_columns=("sentence1", "sentence2"),
            labels=None,
            metrics=("pearson", "spearmanr"),
            local_text_columns=("sentence1", "sentence2"),
            local_label_column="score",
            test_splits={"STS-B": "test"},
        ),
        GlueTask(
            name="qqp",
            folder="QQP",
            text_columns=("question1", "question2"),
            labels=("not_duplicate", "duplicate"),
            metrics=("f1", "accuracy"),
            local_text_columns=("question1", "question2"),
            local_label_column="is_duplicate",
            local_index_column="id",
            test_splits={"QQP": "test"},
        ),
        GlueTask(
            name="mnli",
            folder="MNLI",
            text_columns=("premise", "hypothesis"),
            labels=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            local_text_columns=("sentence1", "sentence2"),
            local_label_column="gold_label",
            local_label_values={"entailment": 0, "neutral": 1, "contradiction": 2},
            dev_splits={"matched": "validation_matched", "mismatched": "validation_mismatched"},
            test_splits={"MNLI-m": "test_matched", "MNLI-mm": "test_mismatched"},
        ),
        GlueTask(
            name="qnli",
            folder="QNLI",
            text_columns=("question", "sentence"),
            labels=("entailment", "not_entailment"),
            metrics=("accuracy",),
            local_text_columns=("question", "sentence"),
            local_label_column="label",
            local_label_values=_ENTAIL2,
            test_splits={"QNLI": "test"},
        ),
        GlueTask(
            name="rte",
            folder="RTE",
            text_columns=("sentence1", "sentence2"),
            labels=("entailment", "not_entailment"),
            metrics=("accuracy",),
            local_text_columns=("sentence1", "sentence2"),
            local_label_column="label",
            local_label_values=_ENTAIL2,
            test_splits={"RTE": "test"},
        ),
        GlueTask(
            name="wnli",
            folder="WNLI",
            text_columns=("sentence1", "sentence2"),
            labels=("not_entailment", "entailment"),  # WNLI files write 0/1 in this order
            metrics=("accuracy",),
            local_text_columns=("sentence1", "sentence2"),
            local_label_column="label",
            test_splits={"WNLI": "test"},
        ),
    ]
}

SQUAD_TASKS: dict[str, SquadTask] = {
    "squad": SquadTask("squad", "v1.1", "rajpurkar/squad", False, ("exact_match", "f1")),
    "squad_v2": SquadTask("squad_v2", "v2.0", "rajpurkar/squad_v2", True, ("exact", "f1", "best_exact", "best_f1")),
}

TASK_NAMES: tuple[str, ...] = tuple(GLUE_TASKS) + tuple(SQUAD_TASKS)

# Spellings people use for the same task ("SST-2", "sts-b", "squad_v1").
_ALIASES = {name.replace("_", ""): name for name in TASK_NAMES}
_ALIASES.update({task.folder.lower().replace("-", ""): task.name for task in GLUE_TASKS.values()})
_ALIASES.update({"squadv1": "squad", "squad11": "squad", "squad20": "squad_v2"})


def get_task(name: str) -> GlueTask | SquadTask:
    """The task called `name` (case, '-' and '_' do not matter); a clear error for others."""
    key = name.lower().replace("-", "").replace("_", "").replace(".", "")
    if key not in _ALIASES:
        raise ValueError(f"Unknown task {name!r}. Choose one of: {', '.join(TASK_NAMES)}.")
    canonical = _ALIASES[key]
    return GLUE_TASKS.get(canonical) or SQUAD_TASKS[canonical]


def task_score(task: str | GlueTask | SquadTask, metrics: dict[str, float]) -> float:
    """One number per task, on a 0-100 scale, as the GLUE leaderboard computes it.

    Tasks with two metrics (MRPC/QQP F1 and accuracy, STS-B Pearson and Spearman) score their
    unweighted mean; MNLI scores the mean of matched and mismatched accuracy. SQuAD scores F1
    (SQuAD 2.0: F1 at the best no-answer threshold when present).
    """
    task = get_task(task) if isinstance(task, str) else task
    if isinstance(task, SquadTask):
        return float(metrics.get("best_f1", metrics["f1"]))
    prefixes = [f"{name}_" if name else "" for name in task.dev_splits]
    values = [metrics[prefix + metric] for prefix in prefixes for metric in task.metrics]
    return 100.0 * mean(values)


def glue_score(results: dict[str, dict[str, float]]) -> float:
    """The GLUE score: the mean of the task scores of the GLUE tasks in `results`.

    `results` maps task name -> its eval metrics. With all nine tasks this is the leaderboard
    score (MNLI counts once); with fewer it is the average over the tasks given, and callers
    should say which tasks it covers.
    """
    scores = [task_score(name, metrics) for name, metrics in results.items() if get_task(name).name in GLUE_TASKS]
    if not scores:
        raise ValueError("glue_score needs the results of at least one GLUE task.")
    return mean(scores)
