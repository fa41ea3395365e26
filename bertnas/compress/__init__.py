"""`bertnas compress`: small searched BERTs distilled from a big one."""

from bertnas.core.lazy import lazy_attributes

# Imported on first use: `import bertnas` imports this package (bertnas.compress(...) is the command).
_LAZY = {name: "bertnas.models.student" for name in (
    "StudentInit", "default_candidates", "embedding_params", "load_teacher", "non_embedding_params", "smallest_arch",
    "student_supernet", "total_params")}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = ["StudentInit", "default_candidates", "embedding_params", "load_teacher", "non_embedding_params", "smallest_arch",
           "student_supernet", "total_params"]
