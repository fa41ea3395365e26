"""The aligner's options object (MAGIC-A, `align.Aligner`): what a run's config
(`PretrainConfig.alignment`, from its flat `align_*` / `base_*` keys) hands the aligner."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AlignOptions:
    block_size: int = 2  # chain layers per aligned block
    weight: float = 0.1  # the alignment term's weight against the task loss
    replacement: str = "population"  # none | beat | population: how the base subnet is replaced
    every: int = 100  # steps between base-replacement checks
    top_p: float = 0.3
    tolerance: float = 0.1
    population: int = 8  # subnets scored per check
    normalize: bool = True  # each block's MSE / the base's feature variance
    max_ratio: float | None = 0.5  # cap: weighted alignment <= this x the task loss (None: no cap)
    margin: float = 0.0  # a challenger must beat the base's mean score by more than this
    z: float = 3.0  # ... and by a paired test over held-out batches at this z
    start: int = 0  # steps without alignment first
    ramp: int = 0  # then the weight rises linearly over this many steps

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["AlignOptions"]
