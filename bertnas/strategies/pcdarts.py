"""PC-DARTS (Xu et al. 2020): DARTS where only 1/K of each mixed edge's channels go through the
candidate ops (the rest bypass it, then the channels are shuffled), plus edge normalisation: a
learned weight per node input (`softmax(beta)` over a DARTS node's incoming edges) scales each
edge, and the derived cell ranks edges by op weight x edge weight.

Partial channels are a property of the supernet (its edge ops are built K times narrower), so the
vision space is built with `space_options.partial_channels: K` (`run_strategy` sets it from this
strategy's `partial_channels` option); spaces with edges of channels (nb201, darts) support it.
The BERT chain and the CNN blocks have no channel-preserving edges to split: there PC-DARTS
needs `partial_channels: 1` (then it is DARTS, with edge normalisation where there are node
inputs) and says so otherwise."""

from __future__ import annotations

from . import register_strategy
from .darts import Darts

PARTIAL_CHANNEL_SPACES = ("nb201", "darts")


@register_strategy("pcdarts")
class PcDarts(Darts):
    edge_normalisation = True
    defaults = {**Darts.defaults, "partial_channels": 4}

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        k = self.options["partial_channels"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"strategy option partial_channels must be an integer >= 1, got {k!r}")

    def setup(self, trainer) -> None:
        k = self.options["partial_channels"]
        built = getattr(trainer.task.model, "partial_channels", 1)
        if k != built:
            space = trainer.cfg.space
            if space not in PARTIAL_CHANNEL_SPACES:
                raise ValueError(f"PC-DARTS partial channels (partial_channels={k}) need channel edges; the "
                                 f"{space!r} supernet has none: pass --strategy-option partial_channels=1 (edge "
                                 f"normalisation only) or use a space of {', '.join(PARTIAL_CHANNEL_SPACES)}")
            raise ValueError(f"strategy option partial_channels={k} but the supernet was built with "
                             f"space_options.partial_channels={built}: give the same K to both (run_strategy does)")
        super().setup(trainer)


__all__ = ["PARTIAL_CHANNEL_SPACES", "PcDarts"]
