"""Optimizer parameter groups and the learning-rate schedule of supernet training."""

from __future__ import annotations

from torch import nn


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights. Shared (tied) parameters
    appear once."""
    norm_params = {id(p) for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in norm_params or name.endswith("bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_linear_decay(warmup_steps: int, total_steps: int):
    """LR factor of optimizer step `step` (0-based): rises linearly to 1 at the last warmup step,
    then falls linearly, reaching 0 just after `total_steps` (no step runs at LR 0).

    transformers' `get_linear_schedule_with_warmup` runs step 0 at LR 0, which would waste the
    first sampled subnet's update; otherwise the shape is the same."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / (total_steps - warmup_steps + 1))

    return factor


__all__ = ["param_groups", "warmup_linear_decay"]
