"""PC-DARTS (Xu et al. 2020): DARTS where only 1/K of each mixed edge's channels go through the
candidate ops (the rest bypass them, then the channels are shuffled), plus edge normalisation:
a learned weight per node input (`softmax(beta)` over a DARTS node's incoming edges) scales each
edge, and the derived cell ranks edges by op weight x edge weight.

Partial channels are a property of the supernet (its edge ops are built K times narrower:
`space_options.partial_channels: K`, read by the nb201 and darts models); `run_strategy` sets it
from this strategy's `partial_channels` option (default: 4 on nb201 / darts). The BERT chain and
the CNN blocks have no channel-preserving cell edges to split: there the default is K = 1
(PC-DARTS is then DARTS with edge normalisation wherever there are node inputs, i.e. DARTS on
those spaces) and an explicit K > 1 is an error that says so."""

from __future__ import annotations

from bertnas.strategies.darts import Darts

DEFAULT_K = 4  # PC-DARTS' CIFAR-10 setting


class PcDarts(Darts):
    edge_normalisation = True
    defaults = {**Darts.defaults, "partial_channels": None}  # None: DEFAULT_K on nb201 / darts, else 1

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        k = self.options["partial_channels"]
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"strategy option partial_channels must be an integer >= 1, got {k!r}")

    def setup(self, ctx) -> None:
        k = self.options["partial_channels"]
        built = getattr(getattr(ctx.task.model, "config", None), "partial_channels", 1)
        if k is not None and k != built:
            if not self.space.channel_edges:
                raise ValueError(f"PC-DARTS partial channels (partial_channels={k}) need cell edges of channels; this "
                                 f"{type(self.space).__name__} has none: leave partial_channels unset (or 1) for edge "
                                 "normalisation only, or search a cell space (nb201, darts)")
            raise ValueError(f"strategy option partial_channels={k} but the supernet was built with "
                             f"space_options.partial_channels={built}: give the same K to both (run_strategy does)")
        self.options["partial_channels"] = built
        super().setup(ctx)


__all__ = ["DEFAULT_K", "PcDarts"]
