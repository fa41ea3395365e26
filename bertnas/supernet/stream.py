"""A deterministic, resumable stream of training micro-batches over a map-style dataset.

On a GPU the batches are built ahead by DataLoader workers into pinned memory (so the trainer's
`non_blocking` copies overlap the step); on the CPU they are built in the training thread, which
is fastest there (workers would compete for the same cores). Both give the same batches in the
same order, and the stream's position counts the batches consumed, so resuming is exact either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping

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
                 collate: Callable = collate_rows, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int = 4):
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
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor
        self._ahead: Iterator[dict] | None = None  # the DataLoader's iterator (workers / pinned memory)

    def _permutation(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.dataset), generator=g).tolist())
        return self._order[1]

    def _indices(self, epoch: int, position: int) -> list[int]:
        start = position * self.global_batch + self.rank * self.batch_size
        return self._permutation(epoch)[start:start + self.batch_size]

    def _plan(self, epoch: int, position: int):
        """Index lists of the micro-batches from (epoch, position) on, forever (a DataLoader's batch
        sampler; it runs in the main process)."""
        while True:
            if position >= self.batches_per_epoch:
                epoch, position = epoch + 1, 0
            yield self._indices(epoch, position)
            position += 1

    def next(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        if self.num_workers > 0 or self.pin_memory:
            if self._ahead is None:
                self._ahead = self._loader(self.epoch, self.position)
            self.position += 1
            return next(self._ahead)
        indices = self._indices(self.epoch, self.position)
        self.position += 1
        return self.collate(self.dataset, indices)

    def _loader(self, epoch: int, position: int) -> Iterator[dict]:
        from torch.utils.data import DataLoader

        workers = self.num_workers
        loader = DataLoader(_Indices(), batch_sampler=_Plan(self, epoch, position), num_workers=workers,
                            collate_fn=functools.partial(_collate, self.collate, self.dataset),
                            pin_memory=self.pin_memory, prefetch_factor=self.prefetch_factor if workers else None,
                            persistent_workers=False)
        return iter(loader)

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
        self._ahead = None  # batches built ahead belong to the old position


class _Indices:
    """A DataLoader 'dataset' whose item i is i: the batch sampler's index lists reach the collate
    function whole, which fetches the rows in one indexing call."""

    def __getitem__(self, i):
        return i


class _Plan:
    def __init__(self, stream: BatchStream, epoch: int, position: int):
        self.stream, self.epoch, self.position = stream, epoch, position

    def __iter__(self):
        return self.stream._plan(self.epoch, self.position)


def _collate(collate: Callable, dataset, indices) -> dict:
    return collate(dataset, indices)


__all__ = ["BatchStream", "collate_rows"]
