"""DARTS cell supernet and the fixed-genotype evaluation networks cut from it (Hugging Face conventions).

A network is a stem, `config.num_cells` cells and a classifier. A cell's node j (2 .. steps+1)
sums two of the nodes before it, each through an edge op. In the supernet every edge (i, j)
holds all of `config.candidates` (a `LayerChoice` of `choice_modules.py`, labelled `<cell>_edge_<i>_<j>`)
and every node an input choice (`DartsInputChoice`, labelled `<cell>_node_<j>`, 2 of its j
predecessors); all normal cells share one set of labels (one genotype), all reduction cells
another. An arch maps every label to its value: the node's two inputs, and per edge its op,
`none` on edges that are not inputs of their node.

`forward(pixel_values, arch=...)` runs one path; `forward(pixel_values, arch_weights=...)` the
mixed ops of DARTS / GDAS / PC-DARTS (per edge label a weight over the candidates; per node
label optionally a weight over its inputs, default: every edge counts once, as in DARTS). A
one-hot weight per edge (`none` on the edges off the path) gives the path exactly.
A fixed-genotype model (`config.arch`) holds only the path's ops, under the supernet's names,
so `extract` is a state-dict subset; with `auxiliary` and `drop_path_prob` it is the DARTS
evaluation network.

This file is copied next to saved models and runs as remote code: it imports only torch,
transformers and its sibling configuration file.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .choice_modules import LayerChoice, PartialChannelChoice, check_weights, partial_channel_width, weighted_sum
from .configuration_darts import DartsNasConfig
from .supernet_mixin import SupernetMixin


# -- ops ---------------------------------------------------------------------------------------
class Zero(nn.Module):
    """The `none` op: zeros of the output's shape (strided like the other ops)."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return (x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]).mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) k x k, pointwise 1 x 1, BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv with dilation 1 (the first strided)."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
                         DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    """Halves the resolution: two stride-2 1 x 1 convs on offset grids, concatenated, BN."""

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def build_op(name, channels, stride, affine=True):
    """The module of DARTS op `name` on `channels` channels (stride 2 on reduction edges)."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)
    kind, _, size = name.rpartition("_")
    k = int(size.split("x")[0])
    if kind == "sep_conv":
        return SepConv(channels, channels, k, stride, k // 2, affine)
    if kind == "dil_conv":
        return DilConv(channels, channels, k, stride, k - 1, 2, affine)
    raise ValueError(f"Unknown DARTS op {name!r}")


# -- costs (exact, without building) ----------------------------------------------------------
# FLOPs count 2 per multiply-add of convolutions and linear layers (what
# torch.utils.flop_counter.FlopCounterMode counts); BN, ReLU, pooling and additions are free.
def conv_out(size, kernel, stride, padding, dilation=1):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _factorized_reduce_cost(c_in, c_out, size, affine):
    out = conv_out(size, 1, 2, 0)
    return 2 * c_in * (c_out // 2) + (2 * c_out if affine else 0), 2 * 2 * c_in * (c_out // 2) * out * out


def op_cost(name, channels, stride, size, affine=True):
    """(parameters, FLOPs) of op `name` on a `channels` x `size` x `size` input."""
    c, bn = channels, (2 * channels if affine else 0)
    out = conv_out(size, 3, stride, 1)
    if name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0, 0
    if name == "skip_connect":
        return (0, 0) if stride == 1 else _factorized_reduce_cost(c, c, size, affine)
    k = int(name.rpartition("_")[2].split("x")[0])
    if name.startswith("sep_conv"):
        return 2 * (c * k * k + c * c) + 2 * bn, 4 * c * out * out * (k * k + c)
    if name.startswith("dil_conv"):
        return c * k * k + c * c + bn, 2 * c * out * out * (k * k + c)
    raise ValueError(f"Unknown DARTS op {name!r}")


@dataclass(frozen=True)
class CellPlan:
    """Where a cell sits: input channels (two previous cells), its C, resolutions of its inputs."""

    c_prev_prev: int
    c_prev: int
    channels: int
    reduction: bool
    reduction_prev: bool
    size_prev_prev: int
    size_prev: int


def cell_plans(config):
    """One `CellPlan` per cell, plus (channels of the last cell, index of the cell the auxiliary head reads)."""
    c, size = config.init_channels, config.image_size
    if config.dataset == "cifar10":
        c_pp = c_p = config.stem_multiplier * c
        s_pp = s_p = size
        reduction_prev = False
    else:
        s_pp = conv_out(conv_out(size, 3, 2, 1), 3, 2, 1)
        s_p = conv_out(s_pp, 3, 2, 1)
        c_pp = c_p = c
        reduction_prev = True
    plans, n = [], config.num_cells
    for i in range(n):
        reduction = i in (n // 3, 2 * n // 3)
        if reduction:
            c *= 2
        plans.append(CellPlan(c_pp, c_p, c, reduction, reduction_prev, s_pp, s_p))
        s_pp, s_p = s_p, (conv_out(s_p, 3, 2, 1) if reduction else s_p)
        c_pp, c_p = c_p, config.steps * c
        reduction_prev = reduction
    return plans, c_p, 2 * n // 3


def darts_choices(config):
    """label -> (candidates, n_chosen or None) for every choice, in the space's order: per cell
    type (normal, reduce) and node j, the node's input choice then its incoming edges."""
    choices = {}
    for cell in ("normal", "reduce"):
        for j in range(2, config.steps + 2):
            choices[f"{cell}_node_{j}"] = (tuple(str(i) for i in range(j)), 2)
            for i in range(j):
                choices[f"{cell}_edge_{i}_{j}"] = (tuple(config.candidates), None)
    return choices


def darts_cost(config, arch):
    """(parameters, FLOPs per image at `config.image_size`) of the fixed-genotype network of `arch`
    (a dict label -> value), without the auxiliary head (which only runs in training)."""
    plans, c_last, _ = cell_plans(config)
    c, size, affine = config.init_channels, config.image_size, config.affine
    if config.dataset == "cifar10":
        cs = config.stem_multiplier * c
        params, flops = 9 * config.num_channels * cs + 2 * cs, 2 * cs * 9 * config.num_channels * size * size
    else:
        s1, s2 = conv_out(size, 3, 2, 1), conv_out(conv_out(size, 3, 2, 1), 3, 2, 1)
        s3 = conv_out(s2, 3, 2, 1)
        params = 9 * config.num_channels * (c // 2) + c + 9 * (c // 2) * c + 2 * c + 9 * c * c + 2 * c
        flops = 2 * 9 * config.num_channels * (c // 2) * s1 * s1 + 2 * 9 * (c // 2) * c * s2 * s2 + 2 * 9 * c * c * s3 * s3
    bn = 2 if affine else 0
    for plan in plans:
        cc = plan.channels
        if plan.reduction_prev:
            p, f = _factorized_reduce_cost(plan.c_prev_prev, cc, plan.size_prev_prev, affine)
        else:
            p, f = plan.c_prev_prev * cc + bn * cc, 2 * plan.c_prev_prev * cc * plan.size_prev_prev ** 2
        params, flops = params + p + plan.c_prev * cc + bn * cc, flops + f + 2 * plan.c_prev * cc * plan.size_prev ** 2
        cell = "reduce" if plan.reduction else "normal"
        for j in range(2, config.steps + 2):
            for i in arch[f"{cell}_node_{j}"]:
                stride = 2 if plan.reduction and int(i) < 2 else 1
                # intermediate nodes of a reduction cell are already at the reduced size
                size = conv_out(plan.size_prev, 3, 2, 1) if plan.reduction and int(i) >= 2 else plan.size_prev
                p, f = op_cost(arch[f"{cell}_edge_{i}_{j}"], cc, stride, size, affine)
                params, flops = params + p, flops + f
    return params + c_last * config.num_labels + config.num_labels, flops + 2 * c_last * config.num_labels


def auxiliary_head_params(config):
    _, _, at = cell_plans(config)
    c_aux = config.steps * cell_plans(config)[0][at].channels
    bn768 = 2 * 768 if config.dataset == "cifar10" else 0
    return c_aux * 128 + 2 * 128 + 128 * 768 * 4 + bn768 + 768 * config.num_labels + config.num_labels


# -- choice modules ---------------------------------------------------------------------------
class DartsInputChoice(nn.Module):
    """Input choice of one node: `n_chosen` of its predecessors ("0" .. "j-1"), summed."""

    def __init__(self, n_inputs, n_chosen, label):
        super().__init__()
        self.label = label
        self._candidates = tuple(str(i) for i in range(n_inputs))
        self.n_chosen = n_chosen

    @property
    def candidates(self):
        return self._candidates

    def indices(self, chosen):
        picks = [chosen] if isinstance(chosen, (str, int)) else list(chosen)
        idx = sorted({self._candidates.index(str(p)) for p in picks if str(p) in self._candidates})
        if len(idx) != self.n_chosen or len(picks) != self.n_chosen:
            raise ValueError(f"{self.label}: pick {self.n_chosen} distinct inputs out of "
                             f"{', '.join(self._candidates)}, got {picks!r}")
        return idx

    def forward(self, inputs, chosen):
        """Sum of the chosen inputs (entries of unchosen inputs may be None), in candidate order."""
        total = None
        for i in self.indices(chosen):
            total = inputs[i] if total is None else total + inputs[i]
        return total

    def forward_mixed(self, inputs, weights):
        check_weights(weights, self._candidates, self.label)
        return weighted_sum(weights, inputs)

    def candidate_parameters(self, prefix=""):
        return {name: [] for name in self._candidates}

    def extra_repr(self):
        return f"label={self.label!r}, candidates={list(self._candidates)}, n_chosen={self.n_chosen}"


def drop_path(x, drop_prob):
    """Zero whole examples with probability `drop_prob`, rescale the rest (DARTS' drop-path)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


class DartsNode(nn.Module):
    def __init__(self, cell, j, channels, reduction, candidates, fixed, affine, partial=1):
        super().__init__()
        self.inputs = DartsInputChoice(j, 2, f"{cell}_node_{j}")
        chosen = None if fixed is None else [str(i) for i in fixed[self.inputs.label]]
        edges = {}
        for i in range(j):
            if chosen is not None and str(i) not in chosen:
                continue
            label = f"{cell}_edge_{i}_{j}"
            names = candidates if fixed is None else [fixed[label]]
            stride = 2 if reduction and i < 2 else 1
            if partial == 1:
                edges[str(i)] = LayerChoice({name: build_op(name, channels, stride, affine) for name in names}, label)
            else:  # PC-DARTS: the ops see 1/partial of the channels; the rest bypass (pooled on reduction edges)
                width = partial_channel_width(channels, partial, label)
                edges[str(i)] = PartialChannelChoice({name: build_op(name, width, stride, affine) for name in names},
                                                     label, partial, nn.MaxPool2d(2, 2) if stride == 2 else None)
        self.edges = nn.ModuleDict(edges)

    def forward(self, states, arch=None, weights=None, drop_prob=0.0):
        if weights is not None:
            outs = [edge.forward_mixed(states[int(i)], weights=weights[edge.label]) for i, edge in self.edges.items()]
            w_in = weights.get(self.inputs.label)
            if w_in is None:  # DARTS: every edge counts once
                total = outs[0]
                for out in outs[1:]:
                    total = total + out
                return total
            return self.inputs.forward_mixed(outs, w_in)
        chosen = arch[self.inputs.label]
        outs = [None] * len(self.inputs.candidates)
        for i in self.inputs.indices(chosen):
            edge = self.edges[str(i)]
            op = arch[edge.label]
            h = edge(states[i], op=op)
            if drop_prob > 0.0 and self.training and not isinstance(edge.ops[op], nn.Identity):
                h = drop_path(h, drop_prob)
            outs[i] = h
        return self.inputs(outs, chosen)


class DartsCell(nn.Module):
    def __init__(self, plan, config, fixed):
        super().__init__()
        cell = "reduce" if plan.reduction else "normal"
        self.reduction = plan.reduction
        if plan.reduction_prev:
            self.preprocess0 = FactorizedReduce(plan.c_prev_prev, plan.channels, config.affine)
        else:
            self.preprocess0 = ReLUConvBN(plan.c_prev_prev, plan.channels, 1, 1, 0, config.affine)
        self.preprocess1 = ReLUConvBN(plan.c_prev, plan.channels, 1, 1, 0, config.affine)
        self.nodes = nn.ModuleList(
            DartsNode(cell, j, plan.channels, plan.reduction, config.candidates, fixed, config.affine,
                      getattr(config, "partial_channels", 1))
            for j in range(2, config.steps + 2)
        )

    def forward(self, s0, s1, arch=None, weights=None, drop_prob=0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in self.nodes:
            states.append(node(states, arch, weights, drop_prob))
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier on the 8 x 8 (CIFAR) / 14 x 14 (ImageNet) features."""

    def __init__(self, channels, num_labels, dataset):
        super().__init__()
        cifar = dataset == "cifar10"
        layers = [nn.ReLU(inplace=False), nn.AvgPool2d(5, stride=3 if cifar else 2, padding=0, count_include_pad=False),
                  nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
                  nn.Conv2d(128, 768, 2, bias=False)]
        if cifar:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_labels)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


# -- the model --------------------------------------------------------------------------------
@dataclass
class DartsNasOutput(ModelOutput):
    """loss (with the auxiliary loss in training), logits, aux_logits (training with an auxiliary
    head), hidden_states (stem output, then every cell's output: MAGIC-A blocks)."""

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    aux_logits: Optional[torch.FloatTensor] = None
    hidden_states: Optional[tuple] = None


class DartsNasPreTrainedModel(PreTrainedModel):
    config_class = DartsNasConfig
    base_model_prefix = "darts"
    main_input_name = "pixel_values"
    _no_split_modules = ["DartsCell"]

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.01)
            init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if module.running_mean is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {"AutoConfig": "configuration_darts.DartsNasConfig",
                                "AutoModelForImageClassification": "modeling_darts.DartsNasForImageClassification"}
        return super().save_pretrained(save_directory, *args, **kwargs)


class DartsNasForImageClassification(SupernetMixin, DartsNasPreTrainedModel):
    """The DARTS network: a supernet (`config.arch is None`) or one genotype's network.
    `arch_weights=` (mixed ops) is a mapping label -> 1-D weights: every edge's, and optionally
    the nodes' input weights (without them every edge counts once, as in DARTS)."""

    def __init__(self, config):
        super().__init__(config)
        c = config.init_channels
        if config.dataset == "cifar10":
            cs = config.stem_multiplier * c
            self.stem = nn.Sequential(nn.Conv2d(config.num_channels, cs, 3, padding=1, bias=False), nn.BatchNorm2d(cs))
            self.stem1 = None
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(config.num_channels, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=False), nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
            self.stem1 = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                                       nn.BatchNorm2d(c))
        self.choices = darts_choices(config)
        fixed = self._canonical(config.arch) if config.arch is not None else None
        plans, c_last, self.aux_at = cell_plans(config)
        self.cells = nn.ModuleList(DartsCell(plan, config, fixed) for plan in plans)
        self.auxiliary_head = (AuxiliaryHead(config.steps * plans[self.aux_at].channels, config.num_labels,
                                             config.dataset) if config.auxiliary else None)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, config.num_labels)
        self.drop_path_prob = config.drop_path_prob
        self.post_init()

    # -- arch handling (is_supernet, candidate_parameters, extract: SupernetMixin) -------------
    @property
    def choice_labels(self):
        return list(self.choices)

    def _canonical(self, arch):
        """dict label -> value: node inputs as a sorted tuple of names, `none` on unused edges."""
        if isinstance(arch, Mapping):
            missing = [k for k in self.choices if k not in arch]
            extra = [k for k in arch if k not in self.choices]
            if missing or extra:
                raise ValueError(f"arch does not match the DARTS choices: missing {missing}, unknown {extra}")
            values = dict(arch)
        elif isinstance(arch, Sequence) and not isinstance(arch, str):
            if len(arch) != len(self.choices):
                raise ValueError(f"arch has {len(arch)} values but there are {len(self.choices)} choices "
                                 f"({self.choice_labels[0]} .. {self.choice_labels[-1]})")
            values = dict(zip(self.choices, arch))
        else:
            raise ValueError(f"arch must be a mapping label -> value or a list in choice order, got {type(arch).__name__}")
        out = {}
        for label, (candidates, n_chosen) in self.choices.items():
            if n_chosen is None:
                continue
            picks = values[label]
            picks = [picks] if isinstance(picks, (str, int)) else list(picks)
            names = [str(p) for p in picks]
            if len(set(names)) != n_chosen or len(names) != n_chosen or any(n not in candidates for n in names):
                raise ValueError(f"{label} picks {n_chosen} distinct inputs out of {', '.join(candidates)}, got {picks!r}")
            chosen = tuple(c for c in candidates if c in names)
            out[label] = chosen
            cell, _, j = label.rpartition("_node_")
            for i in candidates:
                edge = f"{cell}_edge_{i}_{j}"
                op = values[edge]
                if i in chosen and op not in self.choices[edge][0]:
                    raise ValueError(f"{edge}: {op!r} is not a candidate; candidates: {', '.join(self.choices[edge][0])}")
                out[edge] = op if i in chosen else "none"
        return {label: out[label] for label in self.choices}

    def resolve_arch(self, arch=None):
        if arch is None:
            if self.is_supernet:
                raise ValueError("This is a DARTS supernet (config.arch is None): pass arch= (label -> value), "
                                 "arch_weights= for mixed ops, or call model.extract(arch)")
            return self._canonical(self.config.arch)
        resolved = self._canonical(arch)
        if not self.is_supernet and resolved != self._canonical(self.config.arch):
            raise ValueError("This model is fixed to the genotype of config.arch and cannot run another arch; "
                             "run it on the supernet it was extracted from")
        return resolved

    def resolve_weights(self, arch_weights):
        if not self.is_supernet:
            raise ValueError("This model is fixed to one genotype and cannot mix candidates; use the supernet")
        # node inputs may go without weights: then every edge counts once (DARTS)
        edges = [label for label, (_, n_chosen) in self.choices.items() if n_chosen is None]
        weights = self.weights_by_label(arch_weights, self.choices, required=edges)
        for label, (candidates, n_chosen) in self.choices.items():
            w = weights.get(label)
            if w is None and n_chosen is not None:
                continue  # node inputs: every edge counts once (DARTS)
            if w is None:
                raise ValueError(f"arch_weights has no entry for {label}")
            check_weights(w, candidates, f"arch_weights[{label!r}]")
        return weights

    def _config_arch(self, resolved):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}

    def _after_extract(self, model):
        model.drop_path_prob = self.drop_path_prob

    # -- forward ------------------------------------------------------------------------------
    def forward(self, pixel_values, labels=None, arch=None, arch_weights=None, output_hidden_states=False,
                return_dict=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected keyword arguments {sorted(kwargs)}")
        if arch_weights is not None:
            if arch is not None:
                raise ValueError("Give arch (one path) or arch_weights (mixed ops), not both")
            choice, weights = None, self.resolve_weights(arch_weights)
        else:
            choice, weights = self.resolve_arch(arch), None
        s0 = self.stem(pixel_values)
        s1 = s0 if self.stem1 is None else self.stem1(s0)
        hidden = [s1]
        aux_logits = None
        drop = self.drop_path_prob if weights is None else 0.0
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, choice, weights, drop)
            hidden.append(s1)
            if i == self.aux_at and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            if aux_logits is not None:
                loss = loss + self.config.auxiliary_weight * F.cross_entropy(aux_logits, labels)
        out = DartsNasOutput(loss=loss, logits=logits, aux_logits=aux_logits,
                             hidden_states=tuple(hidden) if output_hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


DartsNasConfig.register_for_auto_class()
DartsNasForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["DartsNasForImageClassification", "DartsNasPreTrainedModel", "DartsNasOutput",
           "DartsInputChoice", "build_op", "op_cost", "darts_cost", "darts_choices", "cell_plans",
           "auxiliary_head_params"]
