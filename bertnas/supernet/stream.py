"""A deterministic, resumable stream of training micro-batches over a map-style dataset."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from bertnas.storage.checkpoint import CheckpointError


def collate_rows(dataset, indices) -> dict:
    """Rows `indices` of a map-style dataset (a `datasets.Dataset`, or anything whose
    `dataset[list]` gives a mapping column -> values) as a dict of stacked tensors."""
    rows = dataset[list(indices)]
    batch = {}
    for key, value in rows.items():
        if isinstance(value, torch.Tensor):
            batch[key] = value
        elif isinstance(value, (list, tuple)) and value and not isinstance(value[0], str):
            batch[key] = torch.stack([torch.as_tensor(v) for v in value])
    return batch


class BatchStream:
    """Micro-batches over a map-style dataset of fixed-size rows.

    Each epoch visits the rows in a permutation seeded by (seed, epoch). Global micro-batch i
    of an epoch is rows [i*B*W, (i+1)*B*W) of that permutation and rank r takes its r-th
    slice of B rows, so the stream is the same for any run with the same seed and world size,
    and resuming needs only (epoch, position)."""

    def __init__(self, dataset, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 collate: Callable = collate_rows):
        self.dataset = dataset
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.collate = collate
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = len(dataset) // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training split has {len(dataset)} rows, fewer than one global batch of "
                f"{batch_size} x {world_size} processes; use more data, a smaller --batch-size or --seq-len"
            )
        self.epoch = 0
        self.position = 0
        self._order = None

    def _permutation(self) -> list[int]:
        if self._order is None or self._order[0] != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._order = (self.epoch, torch.randperm(len(self.dataset), generator=g).tolist())
        return self._order[1]

    def next(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        start = self.position * self.global_batch + self.rank * self.batch_size
        indices = self._permutation()[start:start + self.batch_size]
        self.position += 1
        return self.collate(self.dataset, indices)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "world_size": self.world_size, "rows": len(self.dataset)}

    def load_state_dict(self, state: Mapping) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "world_size", "rows"):
            if key in state and state[key] != mine[key]:
                raise CheckpointError(
                    f"the checkpoint's data stream had {key}={state[key]}, this run has {mine[key]}; resume with the "
                    "same data, --batch-size, --seed and number of processes to continue exactly"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


__all__ = ["BatchStream", "collate_rows"]
