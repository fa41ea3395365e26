"""CNN chain supernet (ProxylessNAS / MobileNetV2 inverted residuals or SPOS ShuffleNetV2 blocks)
and the fixed-arch networks cut from it, in Hugging Face conventions.

Every searchable block is a `LayerChoice` (`choice_modules.py`; label `block_<i>`) holding its candidates in an
`nn.ModuleDict` (all of them in a supernet, only the chosen one in a fixed-arch model, under
the same names: `extract` is a state-dict subset). Every block is described by conv specs
(`block_specs`): the modules are built from them and the exact parameter / FLOP counts
(`cnn_cost`, no module built) are read off them.

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

from .choice_modules import LayerChoice, check_weights
from .configuration_cnn import CnnNasConfig
from .supernet_mixin import SupernetMixin


# -- specs and costs --------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvSpec:
    """Conv (no bias, 'same' padding k // 2) + BatchNorm + optional activation."""

    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    act: Optional[str] = None  # "relu", "relu6" or None


def conv_out(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def chain_cost(specs, size):
    """(parameters, FLOPs, output size) of convs run one after the other on a `size` x `size`
    input. FLOPs: 2 per multiply-add (torch.utils.flop_counter's count); BN and activations free."""
    params = flops = 0
    for s in specs:
        size = conv_out(size, s.kernel, s.stride, s.kernel // 2)
        params += s.c_in // s.groups * s.c_out * s.kernel * s.kernel + 2 * s.c_out
        flops += 2 * s.c_out * (s.c_in // s.groups) * s.kernel * s.kernel * size * size
    return params, flops, size


def mbconv_specs(c_in, c_out, kernel, expand, stride):
    mid = c_in * expand
    specs = [ConvSpec(c_in, mid, 1, act="relu6")] if expand != 1 else []
    return specs + [ConvSpec(mid, mid, kernel, stride, groups=mid, act="relu6"), ConvSpec(mid, c_out)]


def block_specs(config, op, c_in, c_out, stride):
    """{branch name: [ConvSpec, ...]} of candidate `op` of a block. mbconv: `conv`; shufflenet:
    `main` (on half the channels at stride 1) and, strided, `proj`; skip: nothing."""
    if op == "skip":
        return {}
    if config.block_type == "mbconv":
        k, e = (int(x[1:]) for x in op.split("_"))
        return {"conv": mbconv_specs(c_in, c_out, k, e, stride)}
    inp = c_in if stride == 2 else c_in // 2
    mid, out = c_out // 2, c_out - inp
    if op == "xception":
        main = [ConvSpec(inp, inp, 3, stride, inp), ConvSpec(inp, mid, act="relu"),
                ConvSpec(mid, mid, 3, 1, mid), ConvSpec(mid, mid, act="relu"),
                ConvSpec(mid, mid, 3, 1, mid), ConvSpec(mid, out, act="relu")]
        k = 3
    else:
        k = int(op.rpartition("_k")[2])
        main = [ConvSpec(inp, mid, act="relu"), ConvSpec(mid, mid, k, stride, mid), ConvSpec(mid, out, act="relu")]
    branches = {"main": main}
    if stride == 2:
        branches["proj"] = [ConvSpec(inp, inp, k, 2, inp), ConvSpec(inp, inp, act="relu")]
    return branches


def block_candidates(config, c_in, c_out, stride):
    if config.block_type == "mbconv":
        ops = [f"k{k}_e{e}" for k in config.kernel_sizes for e in config.expand_ratios]
    else:
        ops = [f"shuffle_k{k}" for k in config.kernel_sizes] + (["xception"] if config.xception else [])
    if config.allow_skip and stride == 1 and c_in == c_out:
        ops.append("skip")
    return ops


@dataclass(frozen=True)
class BlockPlan:
    label: str
    c_in: int
    c_out: int
    stride: int
    size: int  # input resolution
    candidates: tuple


def stem_specs(config):
    if config.block_type == "mbconv":
        return [ConvSpec(config.num_channels, config.stem_channels, 3, 2, act="relu6")] + \
            mbconv_specs(config.stem_channels, config.first_block_channels, 3, 1, 1)
    return [ConvSpec(config.num_channels, config.stem_channels, 3, 2, act="relu")]


def block_plans(config):
    """The searchable blocks in order, with their channels, stride, input size and candidates."""
    _, _, size = chain_cost(stem_specs(config)[:1], config.image_size)
    if config.block_type == "shufflenet":
        size = conv_out(size, 3, 2, 1)  # max pooling
        c = config.stem_channels
    else:
        c = config.first_block_channels
    plans = []
    for width, depth, stride in zip(config.stage_channels, config.stage_depths, config.stage_strides):
        for d in range(depth):
            s = stride if d == 0 else 1
            plans.append(BlockPlan(f"block_{len(plans)}", c, width, s, size, tuple(block_candidates(config, c, width, s))))
            size, c = conv_out(size, 3, s, 1), width
    return plans


def head_specs(config):
    return [ConvSpec(config.stage_channels[-1], config.last_channels, 1, act="relu6" if config.block_type == "mbconv"
                     else "relu")]


def cnn_cost(config, ops):
    """(parameters, FLOPs per image at `config.image_size`) of the fixed-arch network `ops`
    (one candidate per block), without building it."""
    params, flops, size = chain_cost(stem_specs(config), config.image_size)
    if config.block_type == "shufflenet":
        size = conv_out(size, 3, 2, 1)
    for plan, op in zip(block_plans(config), ops):
        out = size
        for branch in block_specs(config, op, plan.c_in, plan.c_out, plan.stride).values():
            p, f, out = chain_cost(branch, size)
            params, flops = params + p, flops + f
        size = out
    p, f, size = chain_cost(head_specs(config), size)
    bias = config.num_labels if config.block_type == "mbconv" else 0
    return (params + p + config.last_channels * config.num_labels + bias,
            flops + f + 2 * config.last_channels * config.num_labels)


# -- modules ----------------------------------------------------------------------------------
ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class ConvBN(nn.Sequential):
    def __init__(self, spec):
        layers = [nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.kernel // 2, groups=spec.groups,
                            bias=False), nn.BatchNorm2d(spec.c_out)]
        if spec.act is not None:
            layers.append(ACTS[spec.act](inplace=True))
        super().__init__(*layers)


def chain(specs):
    return nn.Sequential(*(ConvBN(s) for s in specs))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, k x k depthwise, 1x1 linear projection; residual when the shape stays."""

    def __init__(self, specs, residual):
        super().__init__()
        self.conv = chain(specs)
        self.residual = residual

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 block (SPOS): at stride 1 the even channels pass and the odd ones go through
    `main`; strided, `proj` and `main` both see the whole input; the outputs are concatenated."""

    def __init__(self, branches):
        super().__init__()
        self.main = chain(branches["main"])
        self.proj = chain(branches["proj"]) if "proj" in branches else None

    def forward(self, x):
        if self.proj is None:
            return torch.cat([x[:, 0::2], self.main(x[:, 1::2])], dim=1)
        return torch.cat([self.proj(x), self.main(x)], dim=1)


def build_candidate(config, op, plan):
    if op == "skip":
        return nn.Identity()
    branches = block_specs(config, op, plan.c_in, plan.c_out, plan.stride)
    if config.block_type == "mbconv":
        return MBConv(branches["conv"], plan.stride == 1 and plan.c_in == plan.c_out)
    return ShuffleBlock(branches)


@dataclass
class CnnNasOutput(ModelOutput):
    """loss, logits, hidden_states (stem output, then every block's output: MAGIC-A blocks)."""

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    hidden_states: Optional[tuple] = None


class CnnNasPreTrainedModel(PreTrainedModel):
    config_class = CnnNasConfig
    base_model_prefix = "cnn"
    main_input_name = "pixel_values"
    _no_split_modules = ["LayerChoice"]

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.01)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {"AutoConfig": "configuration_cnn.CnnNasConfig",
                                "AutoModelForImageClassification": "modeling_cnn.CnnNasForImageClassification"}
        return super().save_pretrained(save_directory, *args, **kwargs)


class CnnNasForImageClassification(SupernetMixin, CnnNasPreTrainedModel):
    """Stem, the searchable blocks, head; a supernet (`config.arch is None`) or one arch's network.
    `arch_weights=` (mixed ops) is a mapping block label -> 1-D weights over its candidates."""

    def __init__(self, config):
        super().__init__(config)
        self.plans = block_plans(config)
        if config.arch is not None:
            self._check_ops(config.arch)
        stem = stem_specs(config)
        self.stem = chain(stem[:1])
        self.first_block = MBConv(stem[1:], False) if config.block_type == "mbconv" else None
        self.maxpool = nn.MaxPool2d(3, 2, 1) if config.block_type == "shufflenet" else None
        self.blocks = nn.ModuleList(
            LayerChoice({op: build_candidate(config, op, plan)
                            for op in (plan.candidates if config.arch is None else [config.arch[i]])}, plan.label)
            for i, plan in enumerate(self.plans))
        self.head = chain(head_specs(config))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.last_channels, config.num_labels, bias=config.block_type == "mbconv")
        self.post_init()

    @property
    def choice_labels(self):
        return [plan.label for plan in self.plans]

    def _check_ops(self, ops):
        if len(ops) != len(self.plans):
            raise ValueError(f"arch has {len(ops)} entries but the network has {len(self.plans)} blocks; "
                             "give one candidate per block")
        for plan, op in zip(self.plans, ops):
            if op not in plan.candidates:
                raise ValueError(f"{plan.label}: {op!r} is not a candidate; candidates: {', '.join(plan.candidates)}")

    def resolve_arch(self, arch=None):
        if arch is None:
            if self.is_supernet:
                raise ValueError("This is a supernet (config.arch is None): pass arch= (one candidate per block), "
                                 "arch_weights= for mixed ops, or call model.extract(arch)")
            return tuple(self.config.arch)
        if isinstance(arch, Mapping):
            ops = tuple(arch[label] for label in self.choice_labels)
        elif isinstance(arch, Sequence) and not isinstance(arch, str):
            ops = tuple(arch)
        else:
            raise ValueError(f"arch must be a list of candidates or a mapping label -> candidate, got {type(arch).__name__}")
        self._check_ops(ops)
        if not self.is_supernet and list(ops) != list(self.config.arch):
            raise ValueError(f"This model is fixed to arch {self.config.arch} and cannot run {list(ops)}")
        return ops

    def resolve_weights(self, arch_weights):
        if not self.is_supernet:
            raise ValueError("This model is fixed to one arch and cannot mix candidates; use the supernet")
        weights = list(self.weights_by_label(arch_weights, self.choice_labels, unit="block").values())
        for plan, w in zip(self.plans, weights):
            check_weights(w, plan.candidates, f"arch_weights[{plan.label!r}]")
        return weights

    def forward(self, pixel_values, labels=None, arch=None, arch_weights=None, output_hidden_states=False,
                return_dict=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected keyword arguments {sorted(kwargs)}")
        if arch_weights is not None:
            if arch is not None:
                raise ValueError("Give arch (one path) or arch_weights (mixed ops), not both")
            weights, ops = self.resolve_weights(arch_weights), None
        else:
            weights, ops = None, self.resolve_arch(arch)
        x = self.stem(pixel_values)
        x = self.first_block(x) if self.first_block is not None else self.maxpool(x)
        hidden = [x]
        for i, block in enumerate(self.blocks):
            x = block.forward_mixed(x, weights=weights[i]) if weights is not None else block(x, op=ops[i])
            hidden.append(x)
        logits = self.classifier(self.dropout(self.global_pooling(self.head(x)).flatten(1)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        out = CnnNasOutput(loss=loss, logits=logits, hidden_states=tuple(hidden) if output_hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


CnnNasConfig.register_for_auto_class()
CnnNasForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["CnnNasForImageClassification", "CnnNasPreTrainedModel", "CnnNasOutput", "ConvSpec",
           "block_plans", "block_specs", "cnn_cost", "chain_cost"]
