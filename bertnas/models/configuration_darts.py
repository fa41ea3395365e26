"""Configuration of the DARTS cell supernet (and of every fixed-genotype network cut from it).

Copied next to exported models and loaded as remote code: imports only transformers.
"""

from transformers import PretrainedConfig

# The DARTS operation set, in the order of the DARTS paper's code (`none` first).
DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class DartsNasConfig(PretrainedConfig):
    r"""A DARTS network: a stem, `num_cells` cells (reduction cells at 1/3 and 2/3 of the depth,
    each doubling the channels and halving the resolution), global pooling and a classifier.

    Each cell has 2 input nodes (the outputs of the two previous cells) and `steps` intermediate
    nodes; node j may take any of the nodes before it through an edge carrying one of
    `candidates`; the cell outputs the concatenation of its intermediate nodes. All normal cells
    share one genotype, all reduction cells another.

    Args:
        init_channels (`int`): C, the channels of the first cells (36 in the DARTS CIFAR-10
            evaluation network, 48 on ImageNet, 16 in the search network).
        num_cells (`int`): number of cells (20 for CIFAR-10 evaluation, 14 ImageNet, 8 search).
        steps (`int`): intermediate nodes per cell (4).
        stem_multiplier (`int`): the CIFAR stem outputs `stem_multiplier * C` channels (3).
        dataset (`str`): `"cifar10"` (one 3x3 stem conv, resolution kept) or `"imagenet"`
            (two stride-2 stems: resolution / 8 before the first cell).
        image_size (`int`): input resolution, for FLOP counts (32 / 224).
        candidates (`list[str]`): the ops of every edge (`DARTS_OPS`).
        arch (`dict`, *optional*): None for a supernet (every edge holds every candidate); for a
            fixed-genotype network, the arch: `{"<cell>_node_<j>": [two inputs], "<cell>_edge_<i>_<j>":
            op}` for cell in normal / reduce (edges that are not inputs of their node hold `none`).
        auxiliary (`bool`): add the auxiliary classifier after the 2/3 reduction cell (training only).
        auxiliary_weight (`float`): its loss weight (0.4).
        drop_path_prob (`float`): probability of dropping an edge's output (not identities) per
            example in training; recipes schedule it (`model.drop_path_prob`).
        num_channels (`int`): image channels (3).
        affine (`bool`): learnable BatchNorm scale and shift in the ops (True for evaluation
            networks; the DARTS search network uses False).
    """

    model_type = "darts_nas"

    def __init__(
        self,
        init_channels=16,
        num_cells=8,
        steps=4,
        stem_multiplier=3,
        dataset="cifar10",
        image_size=32,
        candidates=DARTS_OPS,
        arch=None,
        auxiliary=False,
        auxiliary_weight=0.4,
        drop_path_prob=0.0,
        affine=True,
        num_labels=None,
        num_channels=3,
        **kwargs,
    ):
        if num_labels is None and kwargs.get("id2label") is None:
            num_labels = 10
        if num_labels is not None:  # a saved config restores it from id2label
            kwargs["num_labels"] = num_labels
        super().__init__(**kwargs)
        if dataset not in ("cifar10", "imagenet"):
            raise ValueError(f"dataset must be 'cifar10' or 'imagenet', got {dataset!r}")
        unknown = [c for c in candidates if c not in DARTS_OPS]
        if unknown or len(set(candidates)) != len(candidates) or not candidates:
            raise ValueError(f"candidates must be distinct names out of {list(DARTS_OPS)}, got {list(candidates)}")
        if num_cells < 3:
            raise ValueError(f"num_cells must be >= 3 (normal and reduction cells), got {num_cells}")
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (each node keeps two distinct inputs), got {steps}")
        if init_channels % 2:
            raise ValueError(f"init_channels must be even (factorized reduction halves it), got {init_channels}")
        self.init_channels = init_channels
        self.num_cells = num_cells
        self.steps = steps
        self.stem_multiplier = stem_multiplier
        self.dataset = dataset
        self.image_size = image_size
        self.candidates = list(candidates)
        self.arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(arch).items()} \
            if arch is not None else None
        self.auxiliary = auxiliary
        self.auxiliary_weight = auxiliary_weight
        self.drop_path_prob = drop_path_prob
        self.affine = affine
        self.num_channels = num_channels


__all__ = ["DartsNasConfig", "DARTS_OPS"]
