"""Tasks: data + objective + evaluator + model builder of one kind of supernet training."""

from bertnas.core.lazy import lazy_attributes
from bertnas.tasks.registry import SPACES, TASKS, register_space, register_task, task_class, task_for, task_name

__all__ = ["Task", "SPACES", "TASKS", "register_space", "register_task", "task_class", "task_for", "task_name",
           "load_task"]

# Task imports torch: loaded on first use, so listing tasks and spaces (CLI choices) stays light.
__getattr__, __dir__ = lazy_attributes(__name__, {"Task": "bertnas.tasks.base"})


def load_task(checkpoint, device=None):
    """The task of a training run (its latest checkpoint) or of one checkpoint folder, with its
    trained model loaded in eval mode: what `bertnas search` and `bertnas export` work on.
    `device` None: a GPU when one is visible (search, analyze, the trust report, export and
    compress all score there), else the CPU."""
    from bertnas.storage.checkpoint import find_checkpoint, read_state

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = find_checkpoint(checkpoint)
    state = read_state(ckpt)
    run = state.get("config") or {}
    name = state.get("task") or run.get("task") or run.get("objective") or "mlm"  # objective: older runs
    task = task_class(name).from_checkpoint(ckpt, state, device)
    task.ckpt, task.run_state = ckpt, state
    return task
