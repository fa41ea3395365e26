"""The CNN chain space: ProxylessNAS / MobileNetV2 inverted-residual blocks (kernel 3/5/7,
expansion 3/6, skip where the block keeps its shape) with the ProxylessNAS / OFA ImageNet stem,
stage widths and head, or SPOS ShuffleNetV2 blocks (kernel 3/5/7, xception, skip).

The space is the per-block choices of a `CnnNasConfig` (`models/configuration_cnn.py`); its
cost model reads the same conv specs the modules are built from, so `params(arch)` /
`flops(arch)` are exact without building anything (FLOPs: 2 per multiply-add of convolutions
and the classifier, as `torch.utils.flop_counter.FlopCounterMode` counts; halve them for the
multiply-adds papers quote as "FLOPs").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bertnas.models.configuration_cnn import CnnNasConfig
from bertnas.spaces.base import SearchSpace


class CnnSpace(SearchSpace):
    """Per block `block_<i>` its candidates (a layer choice); `params` / `flops` of the fixed-arch network."""

    def __init__(self, config: CnnNasConfig | None = None, **config_kwargs):
        from bertnas.models.modeling_cnn import block_plans

        self.config = config if config is not None else CnnNasConfig(**config_kwargs)
        self.plans = block_plans(self.config)
        super().__init__({plan.label: plan.candidates for plan in self.plans})

    def params(self, arch) -> int:
        from bertnas.models.modeling_cnn import cnn_cost

        return cnn_cost(self.config, self.arch(arch).ops)[0]

    def flops(self, arch, image_size: int | None = None) -> int:
        """FLOPs per image at `image_size` (default `config.image_size`; a size that is not a
        multiple of 32, e.g. the constraint checker's sequence length, is ignored)."""
        from bertnas.models.modeling_cnn import cnn_cost

        config = self.config
        if isinstance(image_size, int) and image_size != config.image_size and image_size % 32 == 0:
            config = CnnNasConfig(**{**config.to_dict(), "image_size": image_size})
        return cnn_cost(config, self.arch(arch).ops)[1]


SPACE_OPTIONS = ("block_type", "stem_channels", "first_block_channels", "stage_channels", "stage_depths",
                 "stage_strides", "last_channels", "kernel_sizes", "expand_ratios", "xception", "allow_skip", "dropout")


def build_supernet(space_options: Mapping[str, Any] | None = None, num_classes: int = 1000, arch=None,
                   image_shape=(3, 224, 224)):
    """(model, CnnSpace) for the vision task (`bertnas/tasks/vision.py`): the supernet, or with
    `arch` (one candidate per block) that arch's network; `space_options` are `CnnNasConfig`
    layout fields (default: the ProxylessNAS mobile layout; `block_type: shufflenet` for SPOS)."""
    from bertnas.models.modeling_cnn import CnnNasForImageClassification

    options = dict(space_options or {})
    unknown = sorted(set(options) - set(SPACE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown cnn space_options {unknown}; known: {', '.join(SPACE_OPTIONS)}")
    config = CnnNasConfig(num_labels=num_classes, num_channels=image_shape[0], image_size=image_shape[-1], **options)
    space = CnnSpace(config)
    if arch is not None:
        config.arch = list(space.arch(arch).ops)
    return CnnNasForImageClassification(config), space


__all__ = ["CnnSpace", "build_supernet"]
