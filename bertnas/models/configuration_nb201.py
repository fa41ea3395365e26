"""Configuration of the NAS-Bench-201 network (supernet or one fixed cell).

Imports only transformers: it is copied next to saved weights and runs as remote code.
"""

from __future__ import annotations

from transformers import PretrainedConfig

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_NODES = 4  # node 0 is the cell input, node 3 its output
# Edge labels in NB201 arch-string order: node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2.
NB201_EDGES = tuple(f"edge_{j}_{i}" for j in range(1, NB201_NODES) for i in range(j))


class Nb201Config(PretrainedConfig):
    """The NB201 macro skeleton and its cell.

    Args:
        init_channels: C, the channels of the first stage (NB201: 16); stages have C, 2C, 4C.
        cells_per_stage: N, cells per stage (NB201: 5); a residual reduction block sits between stages.
        candidates: the ops of every edge (default the five NB201 ops).
        arch: None for the supernet, else one op per edge (`NB201_EDGES` order): a fixed cell.
        num_labels: classes of the classifier (CIFAR-10: 10).
        num_channels: input image channels.
        image_size: input resolution (FLOP counts; the network itself takes any size).
        bn_affine / bn_track_running_stats: BatchNorm options of every op.
        image_mean / image_std: the normalisation the model was trained with (per channel,
            pixels in [0, 1]); inputs must be normalised this way.
    """

    model_type = "nb201"

    def __init__(self, init_channels: int = 16, cells_per_stage: int = 5, candidates=NB201_OPS, arch=None,
                 num_channels: int = 3, image_size: int = 32, bn_affine: bool = True,
                 bn_track_running_stats: bool = True, image_mean=(0.4914, 0.4822, 0.4465),
                 image_std=(0.2470, 0.2435, 0.2616), **kwargs):
        if "num_labels" not in kwargs and "id2label" not in kwargs:  # a saved config carries id2label
            kwargs["num_labels"] = 10
        super().__init__(**kwargs)
        candidates = list(candidates)
        unknown = [op for op in candidates if op not in NB201_OPS]
        if unknown or not candidates:
            raise ValueError(f"Nb201Config: unknown candidates {unknown}; the NB201 ops are {list(NB201_OPS)}")
        if arch is not None:
            arch = list(arch)
            if len(arch) != len(NB201_EDGES):
                raise ValueError(f"Nb201Config: arch needs one op per edge ({', '.join(NB201_EDGES)}), got {arch}")
            bad = [op for op in arch if op not in candidates]
            if bad:
                raise ValueError(f"Nb201Config: arch ops {bad} are not candidates {candidates}")
        if init_channels < 1 or cells_per_stage < 0:
            raise ValueError(f"Nb201Config: init_channels >= 1 and cells_per_stage >= 0, got {init_channels}, "
                             f"{cells_per_stage}")
        self.init_channels = int(init_channels)
        self.cells_per_stage = int(cells_per_stage)
        self.candidates = candidates
        self.arch = arch
        self.num_channels = num_channels
        self.image_size = image_size
        self.bn_affine = bn_affine
        self.bn_track_running_stats = bn_track_running_stats
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)


__all__ = ["Nb201Config", "NB201_OPS", "NB201_EDGES", "NB201_NODES"]
