"""The NAS-Bench-201 network as a Hugging Face model: supernet (every edge holds every op) or one
fixed cell.

Macro skeleton (Dong & Yang, NAS-Bench-201, 2020): a 3x3 conv stem with BatchNorm, three
stages of N cells with C, 2C and 4C channels joined by residual reduction blocks (ReLU-conv3x3
stride 2-BN, ReLU-conv3x3-BN, shortcut avg-pool 2x2 + conv 1x1), then BatchNorm + ReLU, global
average pooling and a linear classifier. A cell has 4 nodes; node j sums one op over every
edge i -> j (i < j); node 3 is the cell output. Every cell shares the arch (the same 6 edge labels).

Every edge is a choice module with the protocol of `bertnas/spaces/choices.py` (`label`,
`candidates`, `forward(x, op=...)`, `forward_mixed(x, weights=...)`, `candidate_parameters()`),
written here because this file runs as remote code and may import only torch, transformers
and its siblings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from .choice_modules import LayerChoice, PartialChannelChoice, partial_channel_width
from .configuration_nb201 import NB201_EDGES, NB201_OPS, Nb201Config
from .supernet_mixin import SupernetMixin


# ----------------------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------------------


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True,
                 track: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x)))


class Zero(nn.Module):
    """The `none` op: zeros of the input's shape (0 x input, so the graph stays connected)."""

    def forward(self, x):
        return x.mul(0.0)


class AvgPool3x3(nn.Module):
    """`avg_pool_3x3`: the mean over each pixel's 3x3 neighbourhood inside the image (stride 1,
    `nn.AvgPool2d(3, 1, 1, count_include_pad=False)`'s function), computed as a depthwise 3x3
    box filter times the reciprocal neighbour count. On the CPU that is 4-10x faster than
    `avg_pool2d` without padding counts on NCHW tensors (half a NB201 step went there); the
    values agree to float rounding (about 1e-7). No parameters: checkpoints are unchanged."""

    def __init__(self):
        super().__init__()
        self._scale: dict = {}  # (h, w, dtype, device) -> 1 / neighbour count, 1 x 1 x h x w

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[-2], x.shape[-1], x.dtype, x.device)
        if key not in self._scale:
            ones = torch.ones(1, 1, x.shape[-2], x.shape[-1], device=x.device)
            count = F.avg_pool2d(ones, 3, stride=1, padding=1, count_include_pad=True, divisor_override=1)
            self._scale = {key: count.reciprocal().to(x.dtype)}  # one size per edge: keep the last
        return self._scale[key]

    def forward(self, x):
        channels = x.shape[1]
        box = x.new_ones(channels, 1, 3, 3)
        return F.conv2d(x, box, padding=1, groups=channels) * self.scale(x)


def build_op(name: str, channels: int, affine: bool = True, track: bool = True) -> nn.Module:
    """One NB201 op on `channels` channels, stride 1."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, affine, track)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, affine, track)
    if name == "avg_pool_3x3":
        return AvgPool3x3()
    raise ValueError(f"unknown NB201 op {name!r}; ops: {', '.join(NB201_OPS)}")


# ----------------------------------------------------------------------------------------
# Choice module, cell, reduction block
# ----------------------------------------------------------------------------------------


class Nb201Edge(LayerChoice):
    """One cell edge: a `LayerChoice` over NB201 ops (parameters `<path>.ops.<op>.*`); a fixed-arch
    model's edge holds only its op, under the same key, so `extract` is a state-dict subset."""

    def __init__(self, label: str, candidates: Sequence[str], channels: int, affine: bool = True, track: bool = True):
        super().__init__({op: build_op(op, channels, affine, track) for op in candidates}, label)


class Nb201PartialEdge(PartialChannelChoice):
    """A PC-DARTS edge (`config.partial_channels` = k > 1): the ops see 1/k of the channels."""

    def __init__(self, label: str, candidates: Sequence[str], channels: int, affine: bool = True, track: bool = True,
                 k: int = 2):
        width = partial_channel_width(channels, k, label)
        super().__init__({op: build_op(op, width, affine, track) for op in candidates}, label, k)


def build_edge(label, candidates, channels, affine, track, k: int = 1) -> LayerChoice:
    if k == 1:
        return Nb201Edge(label, candidates, channels, affine, track)
    return Nb201PartialEdge(label, candidates, channels, affine, track, k)


class Nb201Cell(nn.Module):
    """4 nodes; node j = sum over i < j of edge_{j}_{i}(node i); returns node 3."""

    def __init__(self, config: Nb201Config, channels: int, candidates_per_edge: Mapping[str, Sequence[str]]):
        super().__init__()
        k = getattr(config, "partial_channels", 1)  # PC-DARTS search networks
        self.edges = nn.ModuleDict({
            label: build_edge(label, candidates_per_edge[label], channels, config.bn_affine,
                              config.bn_track_running_stats, k)
            for label in NB201_EDGES
        })

    def forward(self, x, ops: Mapping[str, str] | None = None, weights: Mapping[str, torch.Tensor] | None = None):
        nodes = [x]
        for j in range(1, 4):
            total = None
            for i in range(j):
                label = f"edge_{j}_{i}"
                edge = self.edges[label]
                out = edge.forward_mixed(nodes[i], weights=weights[label]) if weights is not None else edge(
                    nodes[i], op=ops[label])
                total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


class Nb201ResBlock(nn.Module):
    """Reduction between stages: ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, plus avg-pool 2x2 + conv 1x1."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine, track)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine, track)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                        nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x, ops=None, weights=None):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------


def _arch_from_string(text: str) -> list[str]:
    """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` -> six ops in edge order."""
    nodes = text.strip().split("+")
    ops = []
    for j, node in enumerate(nodes, start=1):
        entries = [e for e in node.strip().strip("|").split("|") if e]
        for i, entry in enumerate(entries):
            op, _, src = entry.partition("~")
            if src != str(i):
                raise ValueError(f"NB201 arch string {text!r}: node {j} entry {entry!r} should read from node {i}")
            ops.append(op)
    return ops


class Nb201PreTrainedModel(PreTrainedModel):
    config_class = Nb201Config
    base_model_prefix = "nb201"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.reset_running_stats()

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {"AutoConfig": "configuration_nb201.Nb201Config",
                                "AutoModelForImageClassification": "modeling_nb201.Nb201ForImageClassification"}
        return super().save_pretrained(save_directory, *args, **kwargs)


class Nb201ForImageClassification(SupernetMixin, Nb201PreTrainedModel):
    """The NB201 network. `config.arch` None: a supernet (`forward(..., arch=...)` runs one path,
    `arch_weights=` a mix); else one fixed cell, run without `arch`."""

    def __init__(self, config: Nb201Config):
        super().__init__(config)
        c, n = config.init_channels, config.cells_per_stage
        affine, track = config.bn_affine, config.bn_track_running_stats
        per_edge = {label: [op] for label, op in zip(NB201_EDGES, config.arch)} if config.arch is not None else {
            label: list(config.candidates) for label in NB201_EDGES}
        self.stem = nn.Sequential(nn.Conv2d(config.num_channels, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c, affine=affine, track_running_stats=track))
        blocks, c_prev = [], c
        for stage, channels in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                blocks.append(Nb201ResBlock(c_prev, channels, affine, track))
            blocks.extend(Nb201Cell(config, channels, per_edge) for _ in range(n))
            c_prev = channels
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev, affine=affine, track_running_stats=track), nn.ReLU())
        self.classifier = nn.Linear(c_prev, config.num_labels)
        self.post_init()

    # -- arch handling (is_supernet, candidate_parameters, extract: SupernetMixin) ---------
    @property
    def choice_labels(self) -> list:
        return list(NB201_EDGES)

    @property
    def dummy_inputs(self) -> dict:
        g = torch.Generator().manual_seed(0)
        size = self.config.image_size
        x = torch.randn(2, self.config.num_channels, size, size, generator=g)
        return {"pixel_values": x.to(self.device)}

    def resolve_arch(self, arch=None) -> tuple[str, ...]:
        """The six edge ops of `arch` (an Arch, a list in edge order, a {label: op} mapping or an
        NB201 arch string); None on a fixed-arch model: its own."""
        if arch is None:
            if self.config.arch is None:
                raise ValueError("This is an NB201 supernet (config.arch is None): pass arch=[op per edge "
                                 f"{', '.join(NB201_EDGES)}] or arch_weights={{edge label: weights}}")
            return tuple(self.config.arch)
        if hasattr(arch, "ops"):
            arch = arch.ops
        if isinstance(arch, str):
            arch = _arch_from_string(arch)
        if isinstance(arch, Mapping):
            missing = [label for label in NB201_EDGES if label not in arch]
            if missing:
                raise ValueError(f"arch is missing the edges {missing}")
            arch = [arch[label] for label in NB201_EDGES]
        ops = tuple(arch)
        if len(ops) != len(NB201_EDGES):
            raise ValueError(f"an NB201 arch has one op per edge ({', '.join(NB201_EDGES)}), got {list(ops)}")
        allowed = self.config.arch if self.config.arch is not None else None
        for label, op in zip(NB201_EDGES, ops):
            if allowed is not None and op != allowed[NB201_EDGES.index(label)]:
                raise ValueError(f"this fixed-arch model runs {list(allowed)}; it cannot run {list(ops)}")
            if op not in self.config.candidates:
                raise ValueError(f"{label}: unknown op {op!r}; candidates: {', '.join(self.config.candidates)}")
        return ops

    def _weights(self, arch_weights) -> dict:
        return self.weights_by_label(arch_weights, NB201_EDGES, unit="edge")

    # -- forward --------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, arch=None, arch_weights=None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"Nb201ForImageClassification.forward() got unexpected arguments {sorted(kwargs)}")
        weights = ops = None
        if arch_weights is not None:
            if arch is not None:
                raise ValueError("pass either arch (one path) or arch_weights (a mix), not both")
            weights = self._weights(arch_weights)
        else:
            ops = dict(zip(NB201_EDGES, self.resolve_arch(arch)))
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        h = self.stem(pixel_values)
        hidden = [h] if output_hidden_states else None
        for block in self.cells:
            h = block(h, ops=ops, weights=weights)
            if hidden is not None:
                hidden.append(h)
        features = F.adaptive_avg_pool2d(self.lastact(h), 1).flatten(1)
        logits = self.classifier(features)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        out = ImageClassifierOutputWithNoAttention(loss=loss, logits=logits,
                                                   hidden_states=tuple(hidden) if hidden is not None else None)
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if use_dict else out.to_tuple()

    # -- subnets --------------------------------------------------------------------------
    def edges(self) -> list[Nb201Edge]:
        """Every edge module of every cell, in forward order (cells share the labels)."""
        return [m for m in self.modules() if isinstance(m, (Nb201Edge, Nb201PartialEdge))]


# save_pretrained copies this file and configuration_nb201.py next to the weights and writes
# auto_map, so AutoModelForImageClassification.from_pretrained(dir, trust_remote_code=True) loads it.
Nb201Config.register_for_auto_class()
Nb201ForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["AvgPool3x3", "Nb201ForImageClassification", "Nb201PreTrainedModel", "Nb201Edge", "Nb201PartialEdge",
           "Nb201Cell", "Nb201ResBlock", "ReLUConvBN", "Zero", "build_edge", "build_op"]
