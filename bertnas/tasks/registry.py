"""Task and space registries: a task name -> the `Task` class that trains and scores it, and a
space name (`--space`) -> the task that trains that space.

Built-in entries are lazy ("module:Class"), so listing names (CLI help, config validation)
imports no model code. The BERT chain (`space: bert`) is trained by the task named by the run's
`task` key (`mlm`, `electra`, `distill`); every other space names its task.
"""

from __future__ import annotations

from bertnas.core.registry import Registry

TASKS = Registry("task", lazy={
    "mlm": "bertnas.tasks.bert:MLMTask",
    "electra": "bertnas.tasks.bert:ElectraTask",
    "distill": "bertnas.tasks.distill:DistillTask",  # a BERT teacher into a student supernet (bertnas compress)
    "classification": "bertnas.tasks.vision:ClassificationTask",  # the vision spaces (--space nb201, ...)
})

OBJECTIVE = "objective"  # a space trained by the task the run names (`task`: the BERT chain)
SPACES = Registry("space", {
    "bert": OBJECTIVE,
    "nb201": "classification",
    "darts": "classification",
    "cnn": "classification",
})


def register_task(name: str):
    """Class decorator: `@register_task("my-task")` makes `task: my-task` train it."""
    return TASKS.register(name)


def register_space(name: str, task: str) -> None:
    """`register_space("nb201", "classification")`: `--space nb201` trains with that task."""
    SPACES.register(name, task)


def task_class(name: str) -> type:
    return TASKS.get(name)


def task_name(space: str, task: str) -> str:
    """The task of a run: the one the run names for the BERT chain, the space's otherwise."""
    trained_by = SPACES.get(space)
    return task if trained_by == OBJECTIVE else trained_by


def task_for(space: str, task: str) -> type:
    """The Task class that trains `space` (the BERT chain: the one named by `task`)."""
    return TASKS.get(task_name(space, task))


__all__ = ["SPACES", "TASKS", "register_space", "register_task", "task_class", "task_for", "task_name"]
