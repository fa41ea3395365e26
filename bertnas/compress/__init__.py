"""`bertnas compress`: small searched BERTs distilled from a big one."""

from bertnas.models.student import (
    StudentInit,
    default_candidates,
    embedding_params,
    load_teacher,
    non_embedding_params,
    smallest_arch,
    student_supernet,
    total_params,
)

__all__ = ["StudentInit", "default_candidates", "embedding_params", "load_teacher", "non_embedding_params", "smallest_arch",
           "student_supernet", "total_params"]
