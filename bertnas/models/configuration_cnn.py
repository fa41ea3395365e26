"""Configuration of the CNN chain supernet (MobileNetV2 / ProxylessNAS inverted residuals, or
ShuffleNetV2 blocks as in SPOS) and of every fixed-arch network cut from it.

Copied next to exported models and loaded as remote code: imports only transformers.
"""

from transformers import PretrainedConfig

# ProxylessNAS (mobile) / OFA-ProxylessNAS ImageNet layout and the SPOS ShuffleNetV2 1.0x layout.
DEFAULTS = {
    "mbconv": dict(stem_channels=32, first_block_channels=16, stage_channels=[24, 40, 80, 96, 192, 320],
                   stage_depths=[4, 4, 4, 4, 4, 1], stage_strides=[2, 2, 2, 1, 2, 1], last_channels=1280,
                   kernel_sizes=[3, 5, 7], expand_ratios=[3, 6], dropout=0.0),
    "shufflenet": dict(stem_channels=16, first_block_channels=None, stage_channels=[64, 160, 320, 640],
                       stage_depths=[4, 4, 8, 4], stage_strides=[2, 2, 2, 2], last_channels=1024,
                       kernel_sizes=[3, 5, 7], expand_ratios=None, dropout=0.1),
}


class CnnNasConfig(PretrainedConfig):
    r"""A chain of searchable blocks between a fixed stem and head.

    `block_type="mbconv"`: the ProxylessNAS mobile / OFA-ProxylessNAS ImageNet network: a 3x3
    stride-2 stem conv (32), a fixed MBConv1 3x3 block (16), stages of inverted-residual blocks
    (widths 24, 40, 80, 96, 192, 320; depths 4, 4, 4, 4, 4, 1; the first block of a stage strided),
    a 1x1 conv to 1280, global pooling, dropout and a classifier; ReLU6. Candidates per block:
    `k<kernel>_e<expansion>` for every kernel size and expansion ratio, and `skip` (the block is
    left out) where the block keeps its shape (not the first of a stage).

    `block_type="shufflenet"`: the SPOS ShuffleNetV2 1.0x network: a 3x3 stride-2 stem conv (16),
    3x3 max pooling, stages of ShuffleNetV2 blocks (widths 64, 160, 320, 640; depths 4, 4, 8, 4;
    the first block of a stage strided), a 1x1 conv to 1024, global pooling, dropout 0.1, a
    classifier without bias. Candidates: `shuffle_k<kernel>`, `xception` and `skip` (stride-1 blocks).

    Args:
        arch (`list[str]`, *optional*): None for a supernet; one candidate per block for a fixed-arch model.
        image_size (`int`): input resolution, for FLOP counts (224).
        xception (`bool`), allow_skip (`bool`): include those candidates.
        Layout fields default to the block type's published layout (`DEFAULTS`).
    """

    model_type = "cnn_nas"

    def __init__(self, block_type="mbconv", stem_channels=None, first_block_channels=None, stage_channels=None,
                 stage_depths=None, stage_strides=None, last_channels=None, kernel_sizes=None, expand_ratios=None,
                 xception=True, allow_skip=True, dropout=None, image_size=224, arch=None, num_labels=None, num_channels=3, **kwargs):
        if num_labels is None and kwargs.get("id2label") is None:
            num_labels = 1000
        if num_labels is not None:  # a saved config restores it from id2label
            kwargs["num_labels"] = num_labels
        super().__init__(**kwargs)
        if block_type not in DEFAULTS:
            raise ValueError(f"block_type must be one of {list(DEFAULTS)}, got {block_type!r}")
        given = dict(stem_channels=stem_channels, first_block_channels=first_block_channels,
                     stage_channels=stage_channels, stage_depths=stage_depths, stage_strides=stage_strides,
                     last_channels=last_channels, kernel_sizes=kernel_sizes, expand_ratios=expand_ratios,
                     dropout=dropout)
        for key, value in given.items():
            value = DEFAULTS[block_type][key] if value is None else value
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else value)
        self.block_type = block_type
        if not (len(self.stage_channels) == len(self.stage_depths) == len(self.stage_strides)):
            raise ValueError("stage_channels, stage_depths and stage_strides need one entry per stage")
        if block_type == "shufflenet" and any(c % 2 for c in self.stage_channels):
            raise ValueError(f"ShuffleNetV2 stage widths must be even, got {self.stage_channels}")
        self.xception = xception
        self.allow_skip = allow_skip
        self.image_size = image_size
        self.num_channels = num_channels
        self.arch = list(arch) if arch is not None else None


__all__ = ["CnnNasConfig", "DEFAULTS"]
