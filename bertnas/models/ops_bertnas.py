"""The candidate ops of the hybrid BERT chain, and the ONE registry that says everything about them.

Each op kind is one `OpKind` entry in `OP_KINDS`: how its names are written and validated, the
module it builds, its exact parameter count, its FLOPs on one sequence, and its short log name.
The config's validation, `build_op`, `BertSpace`'s costs, the latency table and the training
log all read this registry, so adding an op kind is one `register_op_kind(OpKind(...))` call
(plus its module class) in this file.

Every op module is a whole post-LN residual sublayer, called as
`op(x, attn_mask, token_mask)` -> `LayerNorm(x + dropout(f(x)))` (identity: `x`), where
`attn_mask` is the attention mask in the form the configured attention backend takes (sdpa /
eager: a (B, 1, 1, T) additive float mask) and `token_mask` a (B, T, 1) float mask (both None
when nothing is padded).

This file is copied next to exported models with the modeling file and runs as remote code:
it imports only torch, transformers and the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

# ----------------------------------------------------------------------------------------
# Op modules
# ----------------------------------------------------------------------------------------


def eager_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """BERT's eager attention (`modeling_bert.eager_attention_forward`): explicit probabilities,
    an additive float mask. Returns (context (B, T, heads, head size), probabilities)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.dropout(F.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


class MultiHeadAttentionOp(nn.Module):
    """Self-attention with `num_heads` heads (BERT's attention sublayer). The query / key / value
    width `inner_size` defaults to the hidden size (BERT); a smaller one gives a cheaper attention
    (heads of size inner_size / num_heads; `dense` maps the inner width back to the hidden size).

    The attention itself is transformers' attention interface for `config._attn_implementation`
    ("sdpa", "eager", "flash_attention_2", "flex_attention", or any registered one), called as
    BERT calls it, so every backend BERT runs on runs here. `attn_mask` is what the model built for
    that backend (an additive float mask for sdpa / eager, see `BertNasModel.attention_mask_for`).
    Attention probabilities (`output_attentions=True`) come from the eager function: the fused
    kernels do not return them."""

    is_causal = False  # read by transformers' sdpa / flash functions

    def __init__(self, config, num_heads: int, inner_size: int | None = None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.inner_size = inner_size or config.hidden_size
        self.head_size = self.inner_size // num_heads
        self.scaling = self.head_size**-0.5
        self.query = nn.Linear(config.hidden_size, self.inner_size)
        self.key = nn.Linear(config.hidden_size, self.inner_size)
        self.value = nn.Linear(config.hidden_size, self.inner_size)
        self.dense = nn.Linear(self.inner_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_dropout = config.attention_probs_dropout_prob

    def attention_function(self, output_attentions: bool = False):
        implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if output_attentions or implementation == "eager":
            return eager_attention_forward
        return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)

    def forward(self, x, attn_mask=None, token_mask=None, output_attentions=False):
        batch, length, _ = x.shape
        shape = (batch, length, self.num_heads, self.head_size)
        q = self.query(x).view(shape).transpose(1, 2)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        dropout = self.attention_dropout if self.training else 0.0
        attend = self.attention_function(output_attentions)
        if (attend is eager_attention_forward and isinstance(attn_mask, torch.Tensor)
                and not attn_mask.dtype.is_floating_point):  # another backend's mask, asked for probabilities
            keep = attn_mask.bool()
            attn_mask = mask_to_additive(keep[:, None, None, :] if keep.dim() == 2 else keep, q.dtype)
        context, probs = attend(self, q, k, v, attn_mask, dropout=dropout, scaling=self.scaling)
        context = context.reshape(batch, length, self.inner_size)
        out = self.LayerNorm(x + self.dropout(self.dense(context)))
        return (out, probs) if output_attentions else out


def mask_to_additive(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean keep-mask as the additive float mask of eager attention and SDPA: 0 where kept,
    the dtype's lowest finite value where not (finite, so an all-padding row gives a uniform
    softmax instead of NaN). SDPA's fused kernels take a float mask where a boolean one would
    send them to a slower path."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, torch.finfo(dtype).min)


class FeedForwardOp(nn.Module):
    """H -> inner -> H with the config's activation (BERT's FFN sublayer when inner = 4H)."""

    def __init__(self, config, inner_size: int):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, inner_size)
        self.act = ACT2FN[config.hidden_act]
        self.output = nn.Linear(inner_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, attn_mask=None, token_mask=None):
        return self.LayerNorm(x + self.dropout(self.output(self.act(self.intermediate(x)))))


class ConvOp(nn.Module):
    """Depthwise-separable 1-D convolution, 'same' padding. Padded positions are zeroed before
    the depthwise kernel so they never leak into real tokens."""

    def __init__(self, config, kernel_size: int):
        super().__init__()
        width = config.hidden_size
        self.depthwise = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.act = ACT2FN[config.hidden_act]
        self.pointwise = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, attn_mask=None, token_mask=None):
        h = x if token_mask is None else x * token_mask
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        return self.LayerNorm(x + self.dropout(self.pointwise(self.act(h))))


class IdentityOp(nn.Module):
    """Skips the layer (lets depth vary in compression spaces)."""

    def forward(self, x, attn_mask=None, token_mask=None):
        return x


# ----------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------


def _no_check(config, n: int, name: str) -> str | None:
    return None


@dataclass(frozen=True)
class OpKind:
    """Everything about one kind of op. Costs follow one convention: parameters exactly as the
    built module holds them; FLOPs = 2 x multiply-adds of one sequence of `seq_len` tokens, with
    LayerNorm, activations, softmax and biases not counted (as torch's FLOP counter does).

    kind: the kind's name (`parse_op` returns it). pattern: a regex for the op names of this kind;
    its groups give the argument: none -> 0, one -> that int (heads, kernel), several -> a tuple of
    ints (mha_w: (heads, inner width)). example: how to write it, for error
    messages. short: the compact log name for the argument. build / params / flops: the module, its
    parameter count and its FLOPs, for (config, argument[, seq_len]). check: an error message when a
    config cannot build the op (None when it can). attention: the op can return attention maps.
    sizes: the config fields its module's shapes (so its cost and latency) depend on."""

    kind: str
    pattern: str
    example: str
    short: Callable[..., str]
    build: Callable[..., nn.Module]
    params: Callable[..., int]
    flops: Callable[..., int]
    check: Callable[..., str | None] = _no_check
    attention: bool = False
    sizes: tuple = ("hidden_size",)


OP_KINDS: dict[str, OpKind] = {}


def register_op_kind(kind: OpKind) -> OpKind:
    """Add an op kind to the registry (its names must not collide with another kind's)."""
    if kind.kind in OP_KINDS:
        raise ValueError(f"Op kind {kind.kind!r} is registered already")
    OP_KINDS[kind.kind] = kind
    return kind


def _norm_params(config) -> int:
    return 2 * config.hidden_size


def _ffn_params(config, inner: int) -> int:
    hidden = config.hidden_size
    return 2 * hidden * inner + inner + hidden + _norm_params(config)


def _divisible_heads(config, heads: int, name: str) -> str | None:
    if config.hidden_size % heads:
        return (f"Op {name!r} needs hidden_size divisible by {heads} heads, but hidden_size={config.hidden_size}; "
                f"drop {name!r} from candidates or pick a hidden_size divisible by {heads}")
    return None


def _odd_kernel(config, kernel: int, name: str) -> str | None:
    if kernel % 2 == 0:
        return f"Op {name!r}: convolution kernels must be odd for 'same' padding (conv3, conv5, ...)"
    return None


def _mha_params(config, inner: int) -> int:
    # query, key, value (hidden -> inner) and output (inner -> hidden) projections with biases + LayerNorm
    hidden = config.hidden_size
    return 3 * (hidden * inner + inner) + inner * hidden + hidden + _norm_params(config)


def _mha_flops(config, inner: int, t: int) -> int:
    # 4 projections + scores (QK^T) + weighted values (AV)
    return 8 * t * config.hidden_size * inner + 4 * t * t * inner


def _divisible_inner(config, args, name: str) -> str | None:
    heads, inner = args
    if inner % heads:
        return (f"Op {name!r} needs its inner width {inner} divisible by its {heads} heads; "
                f"write mha<heads>w<width> with width a multiple of heads (e.g. mha{heads}w{heads * 32})")
    return None


register_op_kind(OpKind(
    kind="mha", pattern=r"mha(\d+)", example="mha<heads> (e.g. mha6, mha8, mha12)", short=lambda n: f"a{n}",
    build=lambda config, heads: MultiHeadAttentionOp(config, heads),
    params=lambda config, heads: _mha_params(config, config.hidden_size),
    flops=lambda config, heads, t: _mha_flops(config, config.hidden_size, t),
    check=_divisible_heads, attention=True,
))
# Attention whose query/key/value width differs from the hidden size: mha4w128 = 4 heads of size 32.
register_op_kind(OpKind(
    kind="mha_w", pattern=r"mha(\d+)w(\d+)", example="mha<heads>w<inner width> (e.g. mha4w128)",
    short=lambda args: f"a{args[0]}w{args[1]}",
    build=lambda config, args: MultiHeadAttentionOp(config, args[0], args[1]),
    params=lambda config, args: _mha_params(config, args[1]),
    flops=lambda config, args, t: _mha_flops(config, args[1], t),
    check=_divisible_inner, attention=True,
))


def _ffn_kind(kind: str, short: str, inner_field: str) -> OpKind:
    """An FFN kind whose inner size is the config field `inner_field`."""
    return OpKind(
        kind=kind, pattern=kind, example=kind, short=lambda n: short,
        build=lambda config, n: FeedForwardOp(config, getattr(config, inner_field)),
        params=lambda config, n: _ffn_params(config, getattr(config, inner_field)),
        flops=lambda config, n, t: 4 * t * config.hidden_size * getattr(config, inner_field),
        sizes=("hidden_size", inner_field),
    )


register_op_kind(_ffn_kind("ffn", "f", "intermediate_size"))
register_op_kind(_ffn_kind("ffn_wide", "F", "ffn_wide_size"))
# FFN whose inner size is a multiple of the hidden size: ffn1x, ffn2x, ffn4x (H -> kH -> H).
register_op_kind(OpKind(
    kind="ffn_x", pattern=r"ffn(\d+)x", example="ffn<k>x (inner size k x hidden, e.g. ffn1x, ffn2x)",
    short=lambda k: f"f{k}x",
    build=lambda config, k: FeedForwardOp(config, k * config.hidden_size),
    params=lambda config, k: _ffn_params(config, k * config.hidden_size),
    flops=lambda config, k, t: 4 * t * k * config.hidden_size**2,
))
register_op_kind(OpKind(
    kind="conv", pattern=r"conv(\d+)", example="conv<odd kernel> (e.g. conv3, conv5, conv7)", short=lambda n: f"c{n}",
    build=lambda config, kernel: ConvOp(config, kernel),
    # depthwise kernel + bias, pointwise projection + bias, LayerNorm
    params=lambda config, kernel: (config.hidden_size * kernel + config.hidden_size + config.hidden_size**2
                                   + config.hidden_size + _norm_params(config)),
    flops=lambda config, kernel, t: 2 * t * config.hidden_size * kernel + 2 * t * config.hidden_size**2,
    check=_odd_kernel,
))
register_op_kind(OpKind(
    kind="identity", pattern=r"identity", example="identity", short=lambda n: "-",
    build=lambda config, n: IdentityOp(), params=lambda config, n: 0, flops=lambda config, n, t: 0, sizes=(),
))


def _lookup(name: str) -> tuple[OpKind, int]:
    if isinstance(name, str):
        for kind in OP_KINDS.values():
            match = re.fullmatch(kind.pattern, name)
            if match:
                # the argument: 0 without a group, an int for one group, a tuple of ints for several
                args = tuple(int(g) for g in match.groups())
                if all(a > 0 for a in args):
                    return kind, (args[0] if len(args) == 1 else args) if args else 0
    else:
        raise ValueError(f"Op names are strings, got {type(name).__name__} {name!r}")
    examples = [kind.example for kind in OP_KINDS.values()]
    raise ValueError(f"Unknown op {name!r}; ops are {', '.join(examples[:-1])} and {examples[-1]}")


def parse_op(name: str) -> tuple[str, int]:
    """('mha', heads) | ('mha_w', (heads, inner width)) | ('ffn_x', k) | ('conv', kernel) | ('ffn', 0) |
    ('ffn_wide', 0) | ('identity', 0) | any registered kind. Raises ValueError for any other name, listing the accepted forms."""
    kind, n = _lookup(name)
    return kind.kind, n


def op_kind(name: str) -> OpKind:
    """The registry entry of an op name."""
    return _lookup(name)[0]


def check_op(config, name: str) -> None:
    """ValueError when `config` cannot build op `name` (unknown name, heads not dividing the width, ...)."""
    kind, n = _lookup(name)
    error = kind.check(config, n, name)
    if error:
        raise ValueError(error)


def build_op(config, name: str) -> nn.Module:
    kind, n = _lookup(name)
    return kind.build(config, n)


def op_params(config, name: str) -> int:
    """Exact parameter count of op `name` as built for `config`."""
    kind, n = _lookup(name)
    return kind.params(config, n)


def op_flops(config, name: str, seq_len: int) -> int:
    """FLOPs (2 x multiply-adds) of op `name` on one sequence of `seq_len` tokens."""
    kind, n = _lookup(name)
    return kind.flops(config, n, seq_len)


def short_op_name(name: str) -> str:
    """Compact name for logs and progress bars: mha12 -> a12, mha4w128 -> a4w128, ffn -> f,
    ffn_wide -> F, ffn2x -> f2x, conv3 -> c3, identity -> -. Names that are no op are returned unchanged."""
    try:
        kind, n = _lookup(name)
    except ValueError:
        return str(name)
    return kind.short(n)


def is_attention_op(name: str) -> bool:
    return _lookup(name)[0].attention


def op_size_fields(names) -> tuple:
    """The config fields the shapes of ops `names` depend on (in registry order, no repeats)."""
    kinds = {_lookup(name)[0].kind for name in names}
    fields = []
    for kind in OP_KINDS.values():
        if kind.kind in kinds:
            fields.extend(f for f in kind.sizes if f not in fields)
    return tuple(fields)


def embedding_params(config) -> int:
    """Word + position + token-type tables and their LayerNorm at `embedding_size`, plus the map
    to the hidden size when the embeddings are factorised (embedding_size < hidden_size)."""
    e, h = config.embedding_size, config.hidden_size
    tables = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * e + 2 * e
    return tables + (e * h + h if e != h else 0)


__all__ = [
    "embedding_params",
    "OP_KINDS",
    "OpKind",
    "register_op_kind",
    "parse_op",
    "op_kind",
    "check_op",
    "build_op",
    "op_params",
    "op_flops",
    "short_op_name",
    "is_attention_op",
    "op_size_fields",
    "MultiHeadAttentionOp",
    "FeedForwardOp",
    "ConvOp",
    "IdentityOp",
]
