"""Multi-process helpers: active-path gradient all-reduce, weight broadcast and rank checks.

Without DeepSpeed the model is NOT wrapped in DistributedDataParallel: DDP with
`find_unused_parameters` would all-reduce the (zero) gradients of every candidate op that the
step did not use. Instead the gradients that exist (the active path, embeddings and heads)
are flattened into buckets and all-reduced once; parameters outside the path keep
`grad=None`, so AdamW leaves them and their moments untouched.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def all_reduce_active_grads(params, world_size: int, extra: torch.Tensor | None = None,
                            bucket_bytes: int = 256 * 2**20) -> torch.Tensor | None:
    """Average over ranks the gradients that exist, in flat buckets (one all-reduce per bucket;
    one in total for a path below `bucket_bytes`). `extra` (a small float vector of step
    statistics) rides along in the last bucket and is returned summed over ranks.

    Every rank ran the same subnet, so the same parameters hold gradients, in the same order."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    buckets: list[list[torch.Tensor]] = []
    size = 0
    for g in grads:
        if not buckets or size + g.numel() * g.element_size() > bucket_bytes or buckets[-1][0].dtype != g.dtype:
            buckets.append([])
            size = 0
        buckets[-1].append(g)
        size += g.numel() * g.element_size()
    summed_extra = None
    if extra is not None:
        if buckets and buckets[-1][0].dtype == extra.dtype and buckets[-1][0].device == extra.device:
            buckets[-1].append(extra)
        else:
            buckets.append([extra])
    for bucket in buckets:
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat)
        carries_extra = extra is not None and bucket[-1] is extra
        for tensor, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            if carries_extra and tensor is extra:
                summed_extra = reduced.clone()
            else:
                tensor.copy_(reduced.div_(world_size))
    return summed_extra


def broadcast_parameters(module: nn.Module) -> None:
    """Start every rank from rank 0's weights (they are equal by seeding; this makes sure)."""
    import torch.distributed as dist

    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def params_sha256(module: nn.Module) -> str:
    """Hash of every parameter's and buffer's bytes, in name order (equal weights on every rank
    check). 0-dim buffers (BatchNorm's `num_batches_tracked`) are flattened first: `view(uint8)`
    refuses a 0-dim tensor of a wider dtype."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()


__all__ = ["all_reduce_active_grads", "broadcast_parameters", "params_sha256"]
