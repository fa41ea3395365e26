"""GLUE and SQuAD fine-tuning of any Hugging Face checkpoint (`bertnas finetune`)."""

from glue.tasks import GLUE_TASKS, SQUAD_TASKS, TASK_NAMES, GlueTask, SquadTask, get_task, glue_score, task_score

__all__ = ["GLUE_TASKS", "SQUAD_TASKS", "TASK_NAMES", "GlueTask", "SquadTask", "get_task", "glue_score", "task_score"]
