"""Tasks: data + objective + evaluator + model builder of one kind of supernet training."""

from bertnas.tasks.base import Task
from bertnas.tasks.registry import TASKS, register_task, task_class

__all__ = ["Task", "TASKS", "register_task", "task_class", "load_task"]


def load_task(checkpoint, device="cpu") -> Task:
    """The task of a training run (its latest checkpoint) or of one checkpoint folder, with its
    trained model loaded in eval mode: what `bertnas search` and `bertnas export` work on."""
    from bertnas.train.checkpoint import find_checkpoint, read_state

    ckpt = find_checkpoint(checkpoint)
    state = read_state(ckpt)
    name = state.get("task") or (state.get("config") or {}).get("objective") or "mlm"
    task = task_class(name).from_checkpoint(ckpt, state, device)
    task.ckpt, task.run_state = ckpt, state
    return task
