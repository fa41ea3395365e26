"""Hybrid BERT supernet and the fixed-arch models cut from it, in Hugging Face conventions.

A model is a chain of `config.num_hidden_layers` layers. Each layer holds its candidate ops
in a `ModuleDict` (all of `config.candidates` for a supernet, only the chosen op for a
fixed-arch model, under the same names, so weights move between the two by key) and runs
exactly one of them per forward: `x = LayerNorm(x + dropout(op(x)))` (identity: `x`).

`[mha12, ffn] x L` is a BERT with L layers: the parameter names mirror `modeling_bert.py`
closely enough that `from_bert` / `to_bert` are a key renaming (`_bert_key`).

This file is copied next to saved models and runs as remote code in environments without
bertnas, so it imports only torch, transformers and its sibling configuration file.
"""

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from .configuration_bertnas import DEFAULT_CANDIDATES, BertNasConfig, parse_op

# ----------------------------------------------------------------------------------------
# Candidate ops. Each is a whole post-LN residual sublayer; forward(x, attn_mask, token_mask)
# where attn_mask is a (B, 1, 1, T) bool mask for SDPA and token_mask a (B, T, 1) float mask
# (both None when nothing is padded).
# ----------------------------------------------------------------------------------------


class MultiHeadAttentionOp(nn.Module):
    """Self-attention with `num_heads` heads over the full width (BERT's attention sublayer)."""

    def __init__(self, config: BertNasConfig, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_size = config.hidden_size // num_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(self, x, attn_mask=None, token_mask=None):
        batch, length, width = x.shape
        shape = (batch, length, self.num_heads, self.head_size)
        q = self.query(x).view(shape).transpose(1, 2)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        context = context.transpose(1, 2).reshape(batch, length, width)
        return self.LayerNorm(x + self.dropout(self.dense(context)))


class FeedForwardOp(nn.Module):
    """H -> inner -> H with the config's activation (BERT's FFN sublayer when inner = 4H)."""

    def __init__(self, config: BertNasConfig, inner_size: int):
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

    def __init__(self, config: BertNasConfig, kernel_size: int):
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


def build_op(config: BertNasConfig, name: str) -> nn.Module:
    kind, n = parse_op(name)
    if kind == "mha":
        return MultiHeadAttentionOp(config, n)
    if kind == "conv":
        return ConvOp(config, n)
    if kind == "ffn":
        return FeedForwardOp(config, config.intermediate_size)
    if kind == "ffn_wide":
        return FeedForwardOp(config, config.ffn_wide_size)
    return IdentityOp()


# ----------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------


class BertNasEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (as BERT)."""

    def __init__(self, config: BertNasConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # Same summation order as BERT, so hidden states agree to the last float.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertNasLayer(nn.Module):
    def __init__(self, config: BertNasConfig, op_names):
        super().__init__()
        self.ops = nn.ModuleDict({name: build_op(config, name) for name in op_names})

    def forward(self, x, op: str, attn_mask=None, token_mask=None):
        return self.ops[op](x, attn_mask, token_mask)


class BertNasEncoder(nn.Module):
    def __init__(self, config: BertNasConfig):
        super().__init__()
        per_layer = [[op] for op in config.arch] if config.arch is not None else [config.candidates] * config.num_hidden_layers
        self.layers = nn.ModuleList([BertNasLayer(config, names) for names in per_layer])

    def forward(self, x, ops, attn_mask=None, token_mask=None, output_hidden_states=False):
        all_hidden = (x,) if output_hidden_states else None
        for layer, op in zip(self.layers, ops):
            x = layer(x, op, attn_mask, token_mask)
            if output_hidden_states:
                all_hidden = all_hidden + (x,)
        return x, all_hidden


class BertNasPooler(nn.Module):
    def __init__(self, config: BertNasConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


# Parameter-name mapping between a BERT layer i and the chain layers 2i (mha) / 2i+1 (ffn).
_BERT_LAYER_KEYS = {
    "attention.self.query.": (0, "query."),
    "attention.self.key.": (0, "key."),
    "attention.self.value.": (0, "value."),
    "attention.output.dense.": (0, "dense."),
    "attention.output.LayerNorm.": (0, "LayerNorm."),
    "intermediate.dense.": (1, "intermediate."),
    "output.dense.": (1, "output."),
    "output.LayerNorm.": (1, "LayerNorm."),
}
_BERT_LAYER_RE = re.compile(r"^(.*)encoder\.layer\.(\d+)\.(.*)$")
_CHAIN_LAYER_RE = re.compile(r"^(.*)encoder\.layers\.(\d+)\.ops\.([^.]+)\.(.*)$")


def _bert_key_to_chain(key: str, mha: str) -> str:
    """'bert.encoder.layer.3.attention.self.query.weight' -> 'bert.encoder.layers.6.ops.mha12.query.weight'."""
    match = _BERT_LAYER_RE.match(key)
    if not match:
        return key  # embeddings, pooler and heads share BERT's names
    prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
    for bert_part, (offset, ours) in _BERT_LAYER_KEYS.items():
        if rest.startswith(bert_part):
            op = mha if offset == 0 else "ffn"
            return f"{prefix}encoder.layers.{2 * index + offset}.ops.{op}.{ours}{rest[len(bert_part):]}"
    raise ValueError(f"BERT parameter {key!r} has no place in a bertnas chain (unsupported BERT variant?)")


def _chain_key_to_bert(key: str) -> str:
    match = _CHAIN_LAYER_RE.match(key)
    if not match:
        return key
    prefix, index, rest = match.group(1), int(match.group(2)), match.group(4)
    offset = index % 2
    for bert_part, (off, ours) in _BERT_LAYER_KEYS.items():
        if off == offset and rest.startswith(ours):
            return f"{prefix}encoder.layer.{index // 2}.{bert_part}{rest[len(ours):]}"
    raise ValueError(f"Parameter {key!r} has no BERT counterpart")


def _op_names(arch) -> list:
    """Op names from a list/tuple of names, a mapping choice -> op, or a bertnas Arch."""
    if hasattr(arch, "ops"):
        return list(arch.ops)
    if isinstance(arch, Mapping):
        return list(arch.values())
    if isinstance(arch, str):
        raise ValueError(f"arch must be a list of op names (one per layer), got the string {arch!r}")
    return list(arch)


class BertNasPreTrainedModel(PreTrainedModel):
    config_class = BertNasConfig
    base_model_prefix = "bert"
    _supports_sdpa = True
    # Name of the matching transformers BERT class, for from_bert / to_bert.
    _bert_class_name = None

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, BertNasLMPredictionHead):
            module.bias.zero_()

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Map every Auto class (not only this one), so that with trust_remote_code any bertnas
        # head (AutoModel, AutoModelForSequenceClassification, ...) loads from any saved model.
        self.config.auto_map = {
            "AutoConfig": "configuration_bertnas.BertNasConfig",
            **{auto: f"modeling_bertnas.{cls.__name__}" for cls, auto in AUTO_CLASSES.items()},
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    # -- arch handling --------------------------------------------------------------------
    @property
    def is_supernet(self) -> bool:
        return self.config.arch is None

    def resolve_arch(self, arch=None) -> tuple:
        """Validate `arch` against this model; returns the tuple of op names to run."""
        fixed = self.config.arch
        if arch is None:
            if fixed is None:
                raise ValueError(
                    "This is a supernet (config.arch is None): pass arch=[op per layer], e.g. "
                    f"{['mha12', 'ffn'] * (self.config.num_hidden_layers // 2)}, or call model.extract(arch) "
                    "for a stand-alone model"
                )
            return tuple(fixed)
        ops = tuple(_op_names(arch))
        if fixed is not None:
            if list(ops) != list(fixed):
                raise ValueError(
                    f"This model is fixed to arch {list(fixed)} and cannot run {list(ops)}; call it without "
                    "arch, or run the other arch on the supernet it was extracted from"
                )
            return ops
        if len(ops) != self.config.num_hidden_layers:
            raise ValueError(
                f"arch has {len(ops)} ops but the supernet has {self.config.num_hidden_layers} layers; "
                "give one op name per layer"
            )
        for i, op in enumerate(ops):
            if op not in self.config.candidates:
                raise ValueError(
                    f"arch[{i}]={op!r} is not a candidate of this supernet; candidates: "
                    f"{', '.join(self.config.candidates)}"
                )
        return ops

    def extract(self, arch):
        """A fixed-arch model of the same class holding copies of the path's weights."""
        ops = self.resolve_arch(arch)
        config = copy.deepcopy(self.config)
        config.arch = list(ops)
        kwargs = {"add_pooling_layer": self.pooler is not None} if isinstance(self, BertNasModel) else {}
        model = type(self)(config, **kwargs)
        wanted = model.state_dict().keys()
        state = {}
        for key, value in self.state_dict().items():
            if key in wanted:
                state[key] = value.detach().clone()
        model.load_state_dict(state, strict=True)
        model.to(self.device).train(self.training)
        return model

    # -- BERT interop ---------------------------------------------------------------------
    @classmethod
    def _bert_class(cls):
        import transformers

        if cls._bert_class_name is None:
            raise ValueError(f"{cls.__name__} has no plain-BERT counterpart in transformers")
        return getattr(transformers, cls._bert_class_name)

    @classmethod
    def from_bert(cls, bert, candidates=DEFAULT_CANDIDATES, config=None, **config_kwargs):
        """A supernet whose `[mha<heads>, ffn] x L` path holds the weights of a BERT.

        `bert` is a folder, a Hub id, or an in-memory transformers `BertModel` / `BertFor*`.
        The other candidates of each chain layer start from the nearest BERT sublayer of their
        kind: mha6/mha8 copy the block's attention projections (same shapes, other head split),
        ffn/ffn_wide copy the block's FFN (ffn_wide: extra units get zero output weights, so it
        starts equal to ffn), every LayerNorm copies the LayerNorm at its position; conv and
        identity ops keep their fresh initialisation.
        """
        from transformers import BertConfig, PreTrainedModel as HFModel

        if isinstance(bert, HFModel):
            source = bert
        else:
            try:
                source = cls._bert_class().from_pretrained(bert)
            except (OSError, ValueError) as err:
                raise OSError(
                    f"from_bert could not load a BERT from {bert!r}: give a local folder holding config.json "
                    f"and weights, a Hub model id, or an in-memory BertModel ({err})"
                ) from err
        bert_config = source.config
        if not isinstance(bert_config, BertConfig):
            raise ValueError(
                f"from_bert needs a BERT (model_type 'bert'), got model_type {bert_config.model_type!r}"
            )
        if getattr(bert_config, "position_embedding_type", "absolute") != "absolute" or bert_config.is_decoder:
            raise ValueError("from_bert supports encoder BERTs with absolute position embeddings only")
        mha = f"mha{bert_config.num_attention_heads}"
        candidates = list(candidates) + [op for op in (mha, "ffn") if op not in candidates]
        derived = dict(
            vocab_size=bert_config.vocab_size,
            hidden_size=bert_config.hidden_size,
            num_hidden_layers=2 * bert_config.num_hidden_layers,
            intermediate_size=bert_config.intermediate_size,
            hidden_act=bert_config.hidden_act,
            max_position_embeddings=bert_config.max_position_embeddings,
            type_vocab_size=bert_config.type_vocab_size,
            layer_norm_eps=bert_config.layer_norm_eps,
        )
        if config is not None:
            wrong = {k: (getattr(config, k), v) for k, v in derived.items() if getattr(config, k) != v}
            missing_ops = [op for op in (mha, "ffn") if op not in config.candidates]
            if wrong or missing_ops or config.arch is not None:
                detail = "; ".join(f"{k}: config {a!r} vs BERT {b!r}" for k, (a, b) in wrong.items())
                raise ValueError(
                    f"from_bert: the given config does not match the BERT ({detail or 'sizes agree'}"
                    f"{'; candidates lack ' + str(missing_ops) if missing_ops else ''}"
                    f"{'; config.arch must be None (a supernet)' if config.arch is not None else ''}). "
                    "Leave config=None to derive it from the BERT, or fix these fields"
                )
        else:
            extra = dict(
                hidden_dropout_prob=bert_config.hidden_dropout_prob,
                attention_probs_dropout_prob=bert_config.attention_probs_dropout_prob,
                initializer_range=bert_config.initializer_range,
                pad_token_id=bert_config.pad_token_id,
                classifier_dropout=bert_config.classifier_dropout,
                num_labels=bert_config.num_labels,
                id2label=bert_config.id2label,
                label2id=bert_config.label2id,
            )
            config = BertNasConfig(candidates=candidates, **{**derived, **extra, **config_kwargs})
        model = cls(config)

        # Backbone keys of a bare BertModel lack the 'bert.' prefix of the task models.
        source_state = source.state_dict()
        if source.base_model_prefix and not any(k.startswith("bert.") for k in source_state):
            source_state = {f"bert.{k}": v for k, v in source_state.items()}
        ours = model.state_dict()
        ours_prefix = "" if isinstance(model, BertNasModel) else "bert."
        filled = set()
        with torch.no_grad():
            for key, value in source_state.items():
                target = _bert_key_to_chain(key, mha)
                target = ours_prefix + target[len("bert."):] if target.startswith("bert.") else target
                if target not in ours:
                    if target.startswith(ours_prefix + "encoder") or target.startswith(ours_prefix + "embeddings"):
                        raise ValueError(f"from_bert: BERT weight {key!r} has no counterpart {target!r}")
                    continue  # a head or pooler this class does not have
                if ours[target].shape != value.shape:
                    raise ValueError(f"from_bert: shape mismatch for {target}: {tuple(ours[target].shape)} vs {tuple(value.shape)}")
                ours[target].copy_(value)
                filled.add(target)
            backbone = model.bert if ours_prefix else model
            for i, layer in enumerate(backbone.encoder.layers):
                _init_from_neighbours(layer, backbone.encoder.layers[i - i % 2].ops[mha], backbone.encoder.layers[i - i % 2 + 1].ops["ffn"], mha, i % 2)
        def on_path(key):
            match = _CHAIN_LAYER_RE.match(key)
            if match:
                return match.group(3) == (mha if int(match.group(2)) % 2 == 0 else "ffn")
            return key.startswith(ours_prefix + "embeddings.")

        unfilled = [k for k in ours if on_path(k) and k not in filled]
        if unfilled:
            raise ValueError(f"from_bert: the BERT left path weights unset: {unfilled[:5]}")
        return model

    def to_bert(self):
        """The matching plain transformers BERT (`BertModel`, `BertForMaskedLM`, ...) with identical
        outputs; only for fixed-arch models whose arch is `[mha<h>, ffn] x L`."""
        from transformers import BertConfig

        arch = self.config.arch
        if arch is None:
            raise ValueError("to_bert needs a fixed-arch model: call supernet.extract(arch) first")
        heads = parse_op(arch[0])[1] if arch and parse_op(arch[0])[0] == "mha" else None
        if heads is None or len(arch) % 2 or arch != [arch[0], "ffn"] * (len(arch) // 2):
            raise ValueError(
                f"to_bert: arch {arch} is not a BERT; only [mha<heads>, ffn] x L converts to a plain "
                "BertModel (save other archs with save_pretrained, which writes remote code)"
            )
        c = self.config
        bert_config = BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=len(arch) // 2,
            num_attention_heads=heads,
            intermediate_size=c.intermediate_size,
            hidden_act=c.hidden_act,
            hidden_dropout_prob=c.hidden_dropout_prob,
            attention_probs_dropout_prob=c.attention_probs_dropout_prob,
            max_position_embeddings=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            initializer_range=c.initializer_range,
            layer_norm_eps=c.layer_norm_eps,
            pad_token_id=c.pad_token_id,
            classifier_dropout=c.classifier_dropout,
            id2label=c.id2label,
            label2id=c.label2id,
            problem_type=c.problem_type,
        )
        bert = self._bert_class()(bert_config)
        state = {_chain_key_to_bert(k): v for k, v in self.state_dict().items()}
        bert.load_state_dict(state, strict=True)
        return bert.to(self.device).train(self.training)


def _init_from_neighbours(layer: BertNasLayer, attention: nn.Module, ffn: nn.Module, mha: str, offset: int):
    """Start the non-BERT candidates of one chain layer from the BERT block it sits in."""
    norm = (attention if offset == 0 else ffn).LayerNorm
    for name, op in layer.ops.items():
        if op is attention or op is ffn:
            continue
        if isinstance(op, MultiHeadAttentionOp):
            for part in ("query", "key", "value", "dense"):
                getattr(op, part).load_state_dict(getattr(attention, part).state_dict())
        elif isinstance(op, FeedForwardOp):
            inner = min(op.intermediate.out_features, ffn.intermediate.out_features)
            op.intermediate.weight[:inner].copy_(ffn.intermediate.weight[:inner])
            op.intermediate.bias[:inner].copy_(ffn.intermediate.bias[:inner])
            op.output.weight.zero_()
            op.output.weight[:, :inner].copy_(ffn.output.weight[:, :inner])
            op.output.bias.copy_(ffn.output.bias)
        if hasattr(op, "LayerNorm"):
            op.LayerNorm.load_state_dict(norm.state_dict())


class BertNasModel(BertNasPreTrainedModel):
    """The backbone: embeddings, the chain, and (optionally) BERT's pooler."""

    _bert_class_name = "BertModel"

    def __init__(self, config: BertNasConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertNasEmbeddings(config)
        self.encoder = BertNasEncoder(config)
        self.pooler = BertNasPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        arch=None,
        output_hidden_states=False,
        return_dict=True,
        **kwargs,
    ):
        if input_ids is None:
            raise ValueError("input_ids is required")
        ops = self.resolve_arch(arch)
        attn_mask = token_mask = None
        # Skip masking when nothing is padded: the common packed-pretraining case.
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()
            attn_mask = keep[:, None, None, :]
            token_mask = keep[:, :, None].to(self.embeddings.word_embeddings.weight.dtype)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        x, all_hidden = self.encoder(x, ops, attn_mask, token_mask, output_hidden_states)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled, hidden_states=all_hidden)


# ----------------------------------------------------------------------------------------
# Heads (names as in modeling_bert.py, so the BERT mapping is a renaming of layers only)
# ----------------------------------------------------------------------------------------


class BertNasPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertNasLMPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transform = BertNasPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x):
        return self.decoder(self.transform(x))


class BertNasOnlyMLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.predictions = BertNasLMPredictionHead(config)

    def forward(self, x):
        return self.predictions(x)


class BertNasForMaskedLM(BertNasPreTrainedModel):
    _bert_class_name = "BertForMaskedLM"
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertNasModel(config, add_pooling_layer=False)
        self.cls = BertNasOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, arch=None, output_hidden_states=False, return_dict=True, **kwargs):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, arch=arch,
                        output_hidden_states=output_hidden_states)
        logits = self.cls(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


@dataclass
class BertNasForPreTrainingOutput(ModelOutput):
    """ELECTRA discriminator output: per-token logits that the token was replaced."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple | None = None


class BertNasDiscriminatorPredictions(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, x):
        return self.dense_prediction(self.activation(self.dense(x))).squeeze(-1)


class BertNasForPreTraining(BertNasPreTrainedModel):
    """ELECTRA replaced-token-detection discriminator on the chain. `labels` are 1 where the
    token was replaced, 0 where original; the loss averages over non-padding tokens."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertNasModel(config, add_pooling_layer=False)
        self.discriminator_predictions = BertNasDiscriminatorPredictions(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, arch=None, output_hidden_states=False, return_dict=True, **kwargs):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, arch=arch,
                        output_hidden_states=output_hidden_states)
        logits = self.discriminator_predictions(out.last_hidden_state)
        loss = None
        if labels is not None:
            per_token = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
            if attention_mask is None:
                loss = per_token.mean()
            else:
                weight = attention_mask.to(logits.dtype)
                loss = (per_token * weight).sum() / weight.sum().clamp(min=1)
        return BertNasForPreTrainingOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class BertNasForSequenceClassification(BertNasPreTrainedModel):
    _bert_class_name = "BertForSequenceClassification"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertNasModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, arch=None, output_hidden_states=False, return_dict=True, **kwargs):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, arch=arch,
                        output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class BertNasForTokenClassification(BertNasPreTrainedModel):
    _bert_class_name = "BertForTokenClassification"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertNasModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, arch=None, output_hidden_states=False, return_dict=True, **kwargs):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, arch=arch,
                        output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class BertNasForQuestionAnswering(BertNasPreTrainedModel):
    _bert_class_name = "BertForQuestionAnswering"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertNasModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, arch=None, output_hidden_states=False,
                return_dict=True, **kwargs):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, arch=arch,
                        output_hidden_states=output_hidden_states)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the sequence (answer truncated away) are ignored, as in BERT.
            ignored = start_logits.size(1)
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=out.hidden_states)


# save_pretrained copies this file and its config next to the weights and writes auto_map,
# so the saved model loads with AutoModel*.from_pretrained(dir, trust_remote_code=True).
AUTO_CLASSES = {
    BertNasModel: "AutoModel",
    BertNasForMaskedLM: "AutoModelForMaskedLM",
    BertNasForPreTraining: "AutoModelForPreTraining",
    BertNasForSequenceClassification: "AutoModelForSequenceClassification",
    BertNasForTokenClassification: "AutoModelForTokenClassification",
    BertNasForQuestionAnswering: "AutoModelForQuestionAnswering",
}
BertNasConfig.register_for_auto_class()
for _cls, _auto in AUTO_CLASSES.items():
    _cls.register_for_auto_class(_auto)

__all__ = [cls.__name__ for cls in AUTO_CLASSES] + ["BertNasPreTrainedModel", "AUTO_CLASSES"]
