"""Which task trains which search space: `--space NAME` (YAML `space:`) -> a registered task.

The BERT chain (`space: bert`, the default) is trained by the task named by `objective` (`mlm`,
`electra`); every other space names the task that builds its supernet, loads its data and
scores its subnets (e.g. image classification for the NAS-Bench-201, DARTS and CNN spaces).
"""

from __future__ import annotations

SPACE_TASKS: dict[str, str] = {}  # space name -> task name (bertnas/tasks/registry.py)
# Modules whose import registers built-in spaces (imported on the first unknown name, so that
# listing spaces or training BERT imports no vision code).
BUILTIN_SPACE_MODULES = ("bertnas.tasks.vision",)


def register_space(name: str, task: str) -> None:
    """`register_space("nb201", "classification")`: `--space nb201` trains with that task."""
    SPACE_TASKS[name] = task


def task_name(space: str, objective: str) -> str:
    """The task of a run: the objective's for the BERT chain, the space's otherwise."""
    if space == "bert":
        return objective
    if space not in SPACE_TASKS:
        import importlib

        for module in BUILTIN_SPACE_MODULES:
            importlib.import_module(module)
    if space not in SPACE_TASKS:
        known = ", ".join(["bert", *sorted(SPACE_TASKS)])
        raise ValueError(f"Unknown space {space!r}; spaces: {known}")
    return SPACE_TASKS[space]


__all__ = ["SPACE_TASKS", "register_space", "task_name"]
