"""A student supernet cut from a teacher BERT (the model side of `bertnas compress`).

`student_supernet(teacher, hidden_size, num_layers, candidates, ...)` builds a `BertNasForMaskedLM`
supernet of `num_layers` chain layers at width `hidden_size` (embeddings possibly narrower,
`embedding_size`) and starts it from the teacher's weights wherever shapes allow:

- Layer map: student chain layer i takes the teacher chain layer t(i) = min(floor(i * L_t / L_s + 1/2),
  L_t - 1), where L_t = 2 x (teacher BERT layers) and L_s = num_layers; t(i) lies in teacher BERT
  layer t(i) // 2. Attention candidates start from that BERT layer's attention, FFN candidates
  from its FFN, every LayerNorm from the LayerNorm at chain position t(i) (attention's for even t,
  the FFN's for odd t). With L_s = L_t the map is i -> i: `[mha<heads>, ffn] x L` at the teacher's
  width is the teacher, exactly.
- Width: the student keeps ONE set of teacher hidden channels (the residual stream must agree
  across layers), attention keeps whole heads when its head size is the teacher's (else single
  query/key/value channels, the same ones in all three), FFNs keep neurons; each set holds the
  most important units, in their original order (so keeping everything is the identity).
  Importance (Minitron, Muralidharan et al. 2024): with calibration batches, the mean |activation|
  over real tokens of the hidden states (embeddings and every layer output), of each attention
  channel's context (the input of the output projection) and of each FFN neuron after the
  activation; without batches, weight magnitude (hidden channels: their LayerNorm gains and biases;
  heads and neurons: the L2 norm of the weights that read or write them).
- A candidate wider than its teacher part copies all of it; its extra units start fresh with zero
  output weights, so it starts equal to the teacher part. Convolutions have no teacher part: their
  kernels start fresh (only their LayerNorm is the teacher's).
- Factorised embeddings (embedding_size < hidden_size): the student's embedding space is spanned by
  the top right-singular vectors P of the teacher's (sliced) word embeddings; word / position /
  token-type tables are projected onto P, `embeddings_project` maps back with P scaled by the
  teacher's embedding LayerNorm, and the MLM head's transform projects onto P. An approximation:
  the LayerNorm over E coordinates is not the teacher's over H.

The result's `student_init` attribute (a `StudentInit`) says which parameters were copied, sliced,
partly filled or left fresh. The parameter counters at the end are the budget search's cost model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .configuration_bertnas import BertNasConfig
from .modeling_bertnas import BertNasForMaskedLM
from .ops_bertnas import FeedForwardOp, MultiHeadAttentionOp, embedding_params, op_params

# ----------------------------------------------------------------------------------------
# The teacher
# ----------------------------------------------------------------------------------------


def load_teacher(teacher):
    """`(BertForMaskedLM in eval mode, missing)`: `teacher` is a folder, a Hub id or an in-memory
    transformers BERT; `missing` lists the weights the checkpoint lacked (a sentence-transformers
    BERT has no MLM head: its `cls.*` weights), also kept as the model's `bertnas_missing_keys`, so
    passing the loaded model on (to `student_supernet`) still knows its head is fresh. ValueError
    for a model that is not a BERT."""
    from transformers import AutoConfig, BertConfig, BertForMaskedLM, BertModel
    from transformers import PreTrainedModel as HFModel
    from transformers.utils import logging as hf_logging

    if isinstance(teacher, HFModel):
        _check_bert_config(teacher.config, type(teacher).__name__)
        if isinstance(teacher, BertForMaskedLM):  # one `load_teacher` made keeps its list of missing weights
            return teacher.eval(), list(getattr(teacher, "bertnas_missing_keys", []))
        if isinstance(teacher, BertModel):
            model = BertForMaskedLM(teacher.config)
            model.bert.load_state_dict(teacher.state_dict(), strict=False)
            return model.eval(), [n for n, _ in model.cls.named_parameters(prefix="cls")]
        bert = getattr(teacher, "bert", None)
        if not isinstance(bert, BertModel):
            raise ValueError(f"Teacher {type(teacher).__name__} has no BERT backbone (.bert); give a BertModel "
                             "or BertForMaskedLM")
        return load_teacher(bert)
    try:
        config = AutoConfig.from_pretrained(teacher)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"Teacher {teacher!r} could not be read ({err}); give a folder holding a BERT's "
                                "config.json and weights, or a Hub model id") from err
    _check_bert_config(config, str(teacher))
    assert isinstance(config, BertConfig)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' load report becomes `missing`
    try:
        model, info = BertForMaskedLM.from_pretrained(teacher, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    model.bertnas_missing_keys = sorted(info.get("missing_keys", []))
    return model.eval(), list(model.bertnas_missing_keys)


def _check_bert_config(config, what: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "bert":
        raise ValueError(f"Teacher {what} is a {model_type!r} model, not a BERT; bertnas compress needs a Hugging "
                         "Face BERT (model_type 'bert', e.g. bert-base-uncased or all-MiniLM-L6-v2)")
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or getattr(config, "is_decoder", False):
        raise ValueError(f"Teacher {what}: only encoder BERTs with absolute position embeddings can be compressed")


# ----------------------------------------------------------------------------------------
# Importance of the teacher's units
# ----------------------------------------------------------------------------------------


@dataclass
class Importance:
    """Per teacher unit, a score (larger = keep first). hidden: (H,); attention[j]: (H,) per query/key/
    value channel of BERT layer j; ffn[j]: (I,) per neuron. source: 'activation' or 'weight'."""

    hidden: torch.Tensor
    attention: list
    ffn: list
    source: str


def weight_importance(bert) -> Importance:
    """Without data. Hidden channel c: the size of c in every hidden state BERT normalises,
    sqrt(sum over its LayerNorms of gain_c^2 + bias_c^2) (a post-LN state is gain * unit-variance
    + bias). Attention channels and FFN neurons: the L2 norm of the weights that read or write them."""
    norms = [bert.embeddings.LayerNorm] + [m for layer in bert.encoder.layer
                                           for m in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
    hidden = sum(norm.weight.pow(2) + norm.bias.pow(2) for norm in norms).sqrt()
    attention, ffn = [], []
    for layer in bert.encoder.layer:
        qkv = [layer.attention.self.query, layer.attention.self.key, layer.attention.self.value]
        dense, inter, out = layer.attention.output.dense, layer.intermediate.dense, layer.output.dense
        attention.append((sum(m.weight.pow(2).sum(1) for m in qkv) + dense.weight.pow(2).sum(0)).sqrt())
        ffn.append((inter.weight.pow(2).sum(1) + out.weight.pow(2).sum(0)).sqrt())
    return Importance(hidden.detach(), [a.detach() for a in attention], [f.detach() for f in ffn], "weight")


def activation_importance(bert, batches: Iterable) -> Importance:
    """Mean |activation| over the real (unpadded) tokens of `batches` (dicts with input_ids and
    optionally attention_mask / token_type_ids): hidden states after the embeddings and every layer,
    each attention channel's context, each FFN neuron after the activation."""
    layers = list(bert.encoder.layer)
    sums = {"hidden": 0.0, "attention": [0.0] * len(layers), "ffn": [0.0] * len(layers)}
    state = {"mask": None, "tokens": 0}

    def total(x):  # sum of |x| over real tokens, per channel
        x = x[0] if isinstance(x, tuple) else x
        x = x.detach().abs().float()
        return (x * state["mask"]).sum((0, 1))

    def on_hidden(module, args, output):
        sums["hidden"] = sums["hidden"] + total(output)

    def on_context(j):
        def hook(module, args):
            sums["attention"][j] = sums["attention"][j] + total(args[0])
        return hook

    def on_ffn(j):
        def hook(module, args, output):
            sums["ffn"][j] = sums["ffn"][j] + total(output)
        return hook

    handles = [bert.embeddings.register_forward_hook(on_hidden)]
    for j, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(on_hidden))
        handles.append(layer.attention.output.dense.register_forward_pre_hook(on_context(j)))
        handles.append(layer.intermediate.register_forward_hook(on_ffn(j)))
    was_training = bert.training
    bert.eval()
    device = next(bert.parameters()).device
    try:
        with torch.no_grad():
            for batch in batches:
                ids = batch["input_ids"].to(device)
                mask = batch.get("attention_mask")
                mask = torch.ones_like(ids) if mask is None else mask.to(device)
                state["mask"] = mask[:, :, None].float()
                state["tokens"] += int(mask.sum())
                types = batch.get("token_type_ids")
                bert(input_ids=ids, attention_mask=mask, token_type_ids=None if types is None else types.to(device))
    finally:
        for handle in handles:
            handle.remove()
        bert.train(was_training)
    if state["tokens"] == 0:
        raise ValueError("calibration_batches held no tokens; give a few batches of input_ids (or None for "
                         "weight-magnitude importance)")
    n = state["tokens"]
    return Importance(sums["hidden"] / (n * (len(layers) + 1)), [a / n for a in sums["attention"]],
                      [f / n for f in sums["ffn"]], "activation")


def top_units(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in ascending index order (all of them: 0..n-1)."""
    k = min(k, scores.numel())
    return torch.topk(scores, k, sorted=False).indices.sort().values


def attention_channels(scores: torch.Tensor, teacher_heads: int, heads: int, inner: int) -> torch.Tensor:
    """Teacher query/key/value channels for a student attention of `heads` heads and width `inner`:
    whole heads when the head sizes agree, else single channels (at most the teacher's width)."""
    width = scores.numel()
    teacher_head, head = width // teacher_heads, inner // heads
    if head == teacher_head and heads <= teacher_heads and inner < width:
        kept = top_units(scores.view(teacher_heads, teacher_head).sum(1), heads)
        return (kept[:, None] * teacher_head + torch.arange(teacher_head)).reshape(-1)
    return top_units(scores, inner)


# ----------------------------------------------------------------------------------------
# Building and initialising the student
# ----------------------------------------------------------------------------------------


@dataclass
class StudentInit:
    """How the student was initialised. layer_map[i]: the teacher chain position t(i) of student
    chain layer i (teacher BERT layer t(i) // 2). hidden_channels: the teacher hidden channels kept.
    copied / sliced / partial / fresh: parameter names (copied: a whole teacher tensor; sliced: a
    slice or projection of one; partial: teacher values in part, the rest fresh or zero; fresh: no
    teacher counterpart)."""

    teacher: str
    importance: str
    layer_map: list
    hidden_channels: list
    copied: list = field(default_factory=list)
    sliced: list = field(default_factory=list)
    partial: list = field(default_factory=list)
    fresh: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def layer_map(teacher_chain_layers: int, student_layers: int) -> list:
    """t(i) = min(floor(i * L_t / L_s + 1/2), L_t - 1) for each student chain layer i."""
    return [min(math.floor(i * teacher_chain_layers / student_layers + 0.5), teacher_chain_layers - 1)
            for i in range(student_layers)]


def student_config(teacher_config, hidden_size: int, num_layers: int, candidates: Sequence[str],
                   embedding_size: int | None = None, **overrides) -> BertNasConfig:
    """The supernet config of a student of `teacher_config` (a `BertConfig`): the teacher's vocabulary,
    positions, activation and norms; `ffn` keeps the teacher's inner/hidden ratio unless
    `intermediate_size` is given. ValueError for a student wider than its teacher."""
    t = teacher_config
    if hidden_size > t.hidden_size:
        raise ValueError(f"Student hidden_size {hidden_size} is wider than the teacher's {t.hidden_size}; "
                         "a student must be at most as wide as its teacher")
    if embedding_size is not None and embedding_size > hidden_size:
        raise ValueError(f"embedding_size {embedding_size} is larger than hidden_size {hidden_size}; factorised "
                         "embeddings are narrower than the hidden size (or leave embedding_size unset)")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    kwargs = dict(
        vocab_size=t.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        candidates=list(candidates), embedding_size=embedding_size,
        intermediate_size=round(t.intermediate_size * hidden_size / t.hidden_size),
        hidden_act=t.hidden_act, max_position_embeddings=t.max_position_embeddings,
        type_vocab_size=t.type_vocab_size, layer_norm_eps=t.layer_norm_eps, pad_token_id=t.pad_token_id,
        hidden_dropout_prob=t.hidden_dropout_prob, attention_probs_dropout_prob=t.attention_probs_dropout_prob,
        initializer_range=t.initializer_range,
    )
    kwargs.update(overrides)
    return BertNasConfig(**kwargs)


def default_candidates(hidden_size: int, head_size: int = 64) -> list:
    """A NAS-BERT-like candidate set at width `hidden_size`: attention at full, half and quarter inner
    width with heads of `head_size` (the teacher's, so whole heads are kept; full width is written
    `mha<heads>`, so `[mha<heads>, ffn] x L` is the plain BERT shape), `ffn` (the teacher's ratio)
    and FFNs of 2x and 1x the hidden size, separable convolutions of kernel 3, 5, 7, and identity."""
    attention = []
    for inner in (hidden_size, hidden_size // 2, hidden_size // 4):
        if inner >= head_size and inner % head_size == 0:
            heads = inner // head_size
            attention.append(f"mha{heads}" if inner == hidden_size else f"mha{heads}w{inner}")
    if not attention:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of head_size {head_size}; pick a hidden "
                         "size that is, or a smaller head_size")
    return attention + ["ffn", "ffn2x", "ffn1x", "conv3", "conv5", "conv7", "identity"]


class _Filler:
    """Copies teacher slices into student parameters and records what it filled."""

    def __init__(self, student):
        self.names = {id(p): n for n, p in student.named_parameters()}
        self.kind = {}

    def put(self, dst: nn.Parameter, src: torch.Tensor, whole: bool) -> None:
        """Write `src` into the leading block of `dst` (the rest keeps its fresh values)."""
        block = tuple(slice(0, s) for s in src.shape)
        dst.data[block] = src.to(dst.dtype)
        kind = "partial" if tuple(src.shape) != tuple(dst.shape) else ("copied" if whole else "sliced")
        self.kind[self.names[id(dst)]] = kind

    def zero_rest(self, dst: nn.Parameter, used: int, dim: int) -> None:
        """Zero the entries past `used` along `dim` (extra units start silent)."""
        dst.data.narrow(dim, used, dst.shape[dim] - used).zero_()


def _linear(fill, dst: nn.Linear, src: nn.Linear, out_idx, in_idx, out_full: bool, in_full: bool):
    fill.put(dst.weight, src.weight[out_idx][:, in_idx], out_full and in_full)
    fill.put(dst.bias, src.bias[out_idx], out_full)


def _norm(fill, dst: nn.LayerNorm, src: nn.LayerNorm, idx, full: bool):
    fill.put(dst.weight, src.weight[idx], full)
    fill.put(dst.bias, src.bias[idx], full)


def _init_attention(fill, op: MultiHeadAttentionOp, src, scores, keep, full_h):
    """`src`: a transformers BertAttention."""
    channels = attention_channels(scores, src.self.num_attention_heads, op.num_heads, op.inner_size)
    full_c = channels.numel() == scores.numel() and op.inner_size == scores.numel()
    for part in ("query", "key", "value"):
        _linear(fill, getattr(op, part), getattr(src.self, part), channels, keep, full_c, full_h)
    fill.put(op.dense.weight, src.output.dense.weight[keep][:, channels], full_c and full_h)
    fill.zero_rest(op.dense.weight, channels.numel(), 1)
    fill.put(op.dense.bias, src.output.dense.bias[keep], full_h)


def _init_ffn(fill, op: FeedForwardOp, layer, scores, keep, full_h):
    """`layer`: a transformers BertLayer."""
    neurons = top_units(scores, op.intermediate.out_features)
    full_n = neurons.numel() == scores.numel() == op.intermediate.out_features
    _linear(fill, op.intermediate, layer.intermediate.dense, neurons, keep, full_n, full_h)
    fill.put(op.output.weight, layer.output.dense.weight[keep][:, neurons], full_n and full_h)
    fill.zero_rest(op.output.weight, neurons.numel(), 1)
    fill.put(op.output.bias, layer.output.dense.bias[keep], full_h)


def _init_embeddings(fill, student, teacher, keep, full_h, has_head: bool):
    t_emb, s_emb = teacher.bert.embeddings, student.bert.embeddings
    tables = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    head_t, head_s = teacher.cls.predictions, student.cls.predictions
    project = student.bert.embeddings_project
    if project is None:
        for name in tables:
            fill.put(getattr(s_emb, name).weight, getattr(t_emb, name).weight[:, keep], full_h)
        _norm(fill, s_emb.LayerNorm, t_emb.LayerNorm, keep, full_h)
        if has_head:
            _linear(fill, head_s.transform.dense, head_t.transform.dense, keep, keep, full_h, full_h)
            _norm(fill, head_s.transform.LayerNorm, head_t.transform.LayerNorm, keep, full_h)
    else:
        width = project.in_features
        words = t_emb.word_embeddings.weight[:, keep]
        # top right-singular vectors of the (vocab x H_s) table: eigenvectors of its small Gram matrix
        gram = words.double().T @ words.double()
        basis = torch.linalg.eigh(gram).eigenvectors[:, -width:].flip(1).to(words.dtype)  # (H_s, E)
        for name in tables:
            fill.put(getattr(s_emb, name).weight, getattr(t_emb, name).weight[:, keep] @ basis, False)
        fill.put(project.weight, t_emb.LayerNorm.weight[keep][:, None] * basis, False)
        fill.put(project.bias, t_emb.LayerNorm.bias[keep], full_h)
        if has_head:
            dense = head_t.transform.dense
            fill.put(head_s.transform.dense.weight, basis.T @ dense.weight[keep][:, keep], False)
            fill.put(head_s.transform.dense.bias, basis.T @ dense.bias[keep], False)
            fill.put(head_s.transform.LayerNorm.bias, basis.T @ head_t.transform.LayerNorm.bias[keep], False)
    if has_head:
        fill.put(head_s.bias, head_t.bias, True)


def student_supernet(teacher, hidden_size: int, num_layers: int, candidates: Sequence[str],
                     embedding_size: int | None = None, init: str = "importance",
                     calibration_batches: Iterable | None = None, **config_overrides) -> BertNasForMaskedLM:
    """A `BertNasForMaskedLM` supernet of `num_layers` chain layers over `candidates` at width
    `hidden_size`, initialised from `teacher` (see the module docstring); `init="random"` skips the
    teacher's weights. `calibration_batches` (a few dicts of input_ids / attention_mask /
    token_type_ids) turn on activation importance; without them, weight magnitude. The returned
    model's `student_init` (a `StudentInit`) records what was initialised how."""
    if init not in ("importance", "random"):
        raise ValueError(f"init must be 'importance' or 'random', got {init!r}")
    name = str(teacher) if not hasattr(teacher, "config") else (teacher.config._name_or_path or type(teacher).__name__)
    teacher_model, missing = load_teacher(teacher)
    config = student_config(teacher_model.config, hidden_size, num_layers, candidates, embedding_size,
                            **config_overrides)
    student = BertNasForMaskedLM(config)
    chain = layer_map(2 * teacher_model.config.num_hidden_layers, num_layers)
    if init == "random":
        names = [n for n, _ in student.named_parameters()]
        student.student_init = StudentInit(str(name), "random", chain, [], fresh=names)
        return student
    bert = teacher_model.bert
    importance = (activation_importance(bert, calibration_batches) if calibration_batches is not None
                  else weight_importance(bert))
    keep = top_units(importance.hidden, hidden_size)
    full_h = hidden_size == importance.hidden.numel()
    has_head = not any(k.startswith("cls.") for k in missing)
    fill = _Filler(student)
    with torch.no_grad():
        _init_embeddings(fill, student, teacher_model, keep, full_h, has_head)
        for i, layer in enumerate(student.bert.encoder.layers):
            t = chain[i]
            block = bert.encoder.layer[t // 2]
            norm = block.attention.output.LayerNorm if t % 2 == 0 else block.output.LayerNorm
            for op in layer.ops.values():
                if isinstance(op, MultiHeadAttentionOp):
                    _init_attention(fill, op, block.attention, importance.attention[t // 2], keep, full_h)
                elif isinstance(op, FeedForwardOp):
                    _init_ffn(fill, op, block, importance.ffn[t // 2], keep, full_h)
                if hasattr(op, "LayerNorm"):
                    _norm(fill, op.LayerNorm, norm, keep, full_h)
    report = StudentInit(str(name), importance.source, chain, keep.tolist())
    for pname, _ in student.named_parameters():
        getattr(report, fill.kind.get(pname, "fresh")).append(pname)
    student.student_init = report
    return student


# ----------------------------------------------------------------------------------------
# Parameter counts (the budget search's cost model; exact, no model built)
# ----------------------------------------------------------------------------------------


def non_embedding_params(config: BertNasConfig, arch: Sequence[str]) -> int:
    """The budgeted size of `bertnas compress`: the chain ops of `arch` (no embeddings, no heads)."""
    arch = list(getattr(arch, "ops", arch))
    if len(arch) != config.num_hidden_layers:
        raise ValueError(f"arch has {len(arch)} ops but the space has {config.num_hidden_layers} layers")
    return sum(op_params(config, op) for op in arch)


def mlm_head_params(config: BertNasConfig) -> int:
    """The MLM head: transform (hidden -> embedding width, LayerNorm) and the vocabulary bias (the
    decoder's weight is the word embeddings')."""
    e = config.embedding_size
    return config.hidden_size * e + e + 2 * e + config.vocab_size


def total_params(config: BertNasConfig, arch: Sequence[str], head: str = "masked_lm") -> int:
    """Every parameter of the exported model on `arch`: embeddings + chain + `head` ('masked_lm':
    `BertNasForMaskedLM`; 'none': `BertNasModel` without pooler; 'pooler': with BERT's pooler)."""
    heads = {"masked_lm": mlm_head_params(config), "none": 0,
             "pooler": config.hidden_size * config.hidden_size + config.hidden_size}
    if head not in heads:
        raise ValueError(f"head must be one of {sorted(heads)}, got {head!r}")
    return embedding_params(config) + non_embedding_params(config, arch) + heads[head]


def smallest_arch(config: BertNasConfig) -> tuple[list, int]:
    """The arch with the fewest non-embedding parameters (each layer's smallest candidate) and that
    count: no budget below it can be met."""
    candidates = config.candidates if config.arch is None else None
    per_layer = [candidates] * config.num_hidden_layers if candidates else [[op] for op in config.arch]
    arch = [min(ops, key=lambda op: op_params(config, op)) for ops in per_layer]
    return arch, non_embedding_params(config, arch)


__all__ = [
    "Importance",
    "StudentInit",
    "activation_importance",
    "attention_channels",
    "default_candidates",
    "embedding_params",
    "layer_map",
    "load_teacher",
    "mlm_head_params",
    "non_embedding_params",
    "smallest_arch",
    "student_config",
    "student_supernet",
    "top_units",
    "total_params",
    "weight_importance",
]
