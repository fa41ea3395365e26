"""Task registry: a name (the run's `objective`) -> the Task class that trains and scores it.

Entries may be "module:Class" strings, resolved on first use, so listing the names (CLI help,
config validation) imports no model code.
"""

from __future__ import annotations

import importlib

TASKS: dict[str, str | type] = {
    "mlm": "bertnas.tasks.bert:MLMTask",
    "electra": "bertnas.tasks.bert:ElectraTask",
    "distill": "bertnas.tasks.distill:DistillTask",  # a BERT teacher into a student supernet (bertnas compress)
    "classification": "bertnas.tasks.vision:ClassificationTask",  # the vision spaces (--space nb201, ...)
}


def register_task(name: str):
    """Class decorator: `@register_task("my-objective")` makes `objective: my-objective` train it."""

    def decorate(cls):
        cls.name = name
        TASKS[name] = cls
        return cls

    return decorate


def task_class(name: str) -> type:
    if name not in TASKS:
        raise ValueError(f"Unknown objective / task {name!r}; registered: {', '.join(sorted(TASKS))}")
    entry = TASKS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = TASKS[name] = getattr(importlib.import_module(module), attr)
    return entry


__all__ = ["TASKS", "register_task", "task_class"]
