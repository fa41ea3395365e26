"""Optimizer parameter groups and the learning-rate schedule of supernet training."""

from __future__ import annotations

import math

import torch
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


def warmup_cosine_decay(warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """LR factor of optimizer step `step` (0-based): the same warm-up as `warmup_linear_decay`,
    then min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2 with t = (step - warmup) / (total -
    warmup): step `warmup_steps` runs at the full LR, the last step (total - 1) just above
    min_ratio (torch's CosineAnnealingLR with T_max = total - warmup, eta_min = min_ratio * lr,
    as DARTS and NB201 step it once per epoch, here once per step)."""
    span = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * (1.0 + math.cos(math.pi * t)) / 2.0

    return factor


OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("linear", "cosine")


def build_optimizer(groups: list[dict], options) -> torch.optim.Optimizer:
    """The weights' optimizer of `options.optimizer` over `groups` (`options`: the run's
    `cfg.optim`, or anything with its names): AdamW (betas, eps) or SGD with `sgd_momentum` /
    `sgd_nesterov`; each group keeps its own weight decay."""
    name = getattr(options, "optimizer", "adamw")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=options.lr, betas=(options.adam_beta1, options.adam_beta2),
                                 eps=options.adam_epsilon)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=options.lr, momentum=options.sgd_momentum, nesterov=options.sgd_nesterov)
    raise ValueError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")


def lr_factor(cfg):
    """The LR factor function of `cfg.lr_schedule` (for `LambdaLR`)."""
    name = getattr(cfg, "lr_schedule", "linear")
    if name == "linear":
        return warmup_linear_decay(cfg.warmup_steps, cfg.max_steps)
    if name == "cosine":
        return warmup_cosine_decay(cfg.warmup_steps, cfg.max_steps, getattr(cfg, "lr_min", 0.0) / cfg.lr)
    raise ValueError(f"lr_schedule {name!r} is not one of {', '.join(LR_SCHEDULES)}")


# ----------------------------------------------------------------------------------------
# Per-candidate groups (DeepSpeed): off-path candidates stay bit-identical
# ----------------------------------------------------------------------------------------
# ZeRO-1/2 flatten each parameter group and let AdamW step the whole flat partition, with zero
# gradients where a parameter got none: candidates off the path would get weight decay and a
# step from their stale momentum every step. With one group per candidate, the groups off this
# step's path get lr = 0 and weight_decay = 0, so AdamW's update of their weights is exactly 0
# (`p * (1 - 0 * 0)`, then `p - 0 * m / (sqrt(v) + eps)`).


def candidate_param_groups(module: nn.Module, weight_decay: float, choice_layers) -> list[dict]:
    """AdamW groups split by owner: one (decay, no-decay) pair for the shared parameters and one
    per candidate of each choice layer. Each group records its owner under "choice" / "candidate"
    (None for shared) and its configured decay under "initial_weight_decay"."""
    owner = {}
    for layer in choice_layers:
        for op, params in layer.candidate_parameters().items():
            for _, p in params:
                owner[id(p)] = (layer.label, op)
    groups: dict[tuple, dict] = {}
    for group in param_groups(module, weight_decay):
        for p in group["params"]:
            label, op = owner.get(id(p), (None, None))
            key = (label, op, group["weight_decay"])
            if key not in groups:
                groups[key] = {"params": [], "weight_decay": group["weight_decay"], "choice": label,
                               "candidate": op, "initial_weight_decay": group["weight_decay"]}
            groups[key]["params"].append(p)
    return list(groups.values())


def gate_param_groups(param_groups_, arch, lrs) -> None:
    """Before an optimizer step on `arch`: groups of candidates off the path get lr = 0 and no
    weight decay; every other group gets its scheduled LR (`lrs`, one per group) and its
    configured decay."""
    for group, lr in zip(param_groups_, lrs):
        chosen = arch[group["choice"]] if group.get("choice") is not None else None
        on_path = chosen is None or (group["candidate"] in chosen if isinstance(chosen, tuple)
                                     else group["candidate"] == chosen)
        group["lr"] = lr if on_path else 0.0
        group["weight_decay"] = group.get("initial_weight_decay", group["weight_decay"]) if on_path else 0.0


__all__ = ["param_groups", "warmup_linear_decay", "warmup_cosine_decay", "build_optimizer", "lr_factor", "candidate_param_groups", "gate_param_groups"]
