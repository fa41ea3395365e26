"""Hybrid BERT supernet and the fixed-arch models cut from it, in Hugging Face conventions.

A model is a chain of `config.num_hidden_layers` layers. Each layer (`BertNasLayer`) is a choice:
it holds its candidate ops in a `ModuleDict` (all of `config.candidates` for a supernet, only the
chosen op for a fixed-arch model, under the same names, so weights move between the two by key)
and runs either one of them (`x = LayerNorm(x + dropout(op(x)))`, identity: `x`) or, in mixed
mode, a weighted sum of all of them (`arch_weights=`, for differentiable search strategies).
The ops and their costs live in one registry, `OP_KINDS` in `ops_bertnas.py`.

`[mha12, ffn] x L` is a BERT with L layers: the parameter names mirror `modeling_bert.py`
closely enough that `from_bert` / `to_bert` are a key renaming (`convert_bert_bertnas.py`).

This file is copied next to saved models and runs as remote code in environments without
bertnas, so it imports only torch, transformers and its sibling files (relatively).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

try:
    from typing import Unpack
except ImportError:  # Python 3.10
    from typing_extensions import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .choice_modules import check_weights, one_path_mix, sampled_index
from .configuration_bertnas import DEFAULT_CANDIDATES, BertNasConfig
from .convert_bert_bertnas import bert_config_for, bertnas_config_for, bertnas_state_to_bert, load_bert_into
from .supernet_mixin import SupernetMixin
from .ops_bertnas import (  # noqa: F401  (the op classes are re-exported for users of this module)
    ConvOp,
    FeedForwardOp,
    IdentityOp,
    MultiHeadAttentionOp,
    build_op,
    is_attention_op,
    mask_to_additive,
)

# ----------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------


class BertNasEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (as BERT), of width
    `config.embedding_size` (the model maps them to the hidden size when that differs)."""

    def __init__(self, config: BertNasConfig):
        super().__init__()
        width = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, length), dtype=torch.long, device=inputs_embeds.device)
        # Same summation order as BERT, so hidden states agree to the last float.
        x = inputs_embeds + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertNasLayer(GradientCheckpointingLayer):
    """One chain layer: a choice among its candidate ops (the `choices` protocol of bertnas).

    - `label`: the choice's name in the search space (`layer_<i>`); `candidates`: the op names it
      holds, in `config.candidates` order.
    - `layer(x, op, attn_mask, token_mask)` runs the candidate named `op`;
      `layer(x, weights, ...)` (or `forward_mixed(x, weights, ...)`) with `weights` a 1-D tensor
      over `candidates` runs every candidate and returns `sum_o weights[o] * op_o(x)`. A one-hot
      `weights` gives exactly the single-path output; gradients reach `weights`. Without
      gradients to `weights`, candidates with weight 0 are skipped.
    - `candidate_parameters(prefix)`: `{op: [(qualified name, parameter), ...]}`.
    - With `output_attentions=True` it returns `(hidden, attention probabilities)`; the second is
      None for ops without attention and in mixed mode.
    """

    def __init__(self, config: BertNasConfig, op_names, label: str = "layer"):
        super().__init__()
        self.label = label
        self.ops = nn.ModuleDict({name: build_op(config, name) for name in op_names})
        self._attention_ops = frozenset(name for name in op_names if is_attention_op(name))

    @property
    def candidates(self) -> tuple:
        return tuple(self.ops)

    def forward(self, x, op, attn_mask=None, token_mask=None, output_attentions=False):
        attention = None
        if isinstance(op, torch.Tensor):
            out = self._mixed(x, op, attn_mask, token_mask)
        elif op not in self.ops:
            raise ValueError(f"Layer {self.label!r} has no candidate {op!r}; candidates: {', '.join(self.ops)}")
        elif output_attentions and op in self._attention_ops:
            out, attention = self.ops[op](x, attn_mask, token_mask, output_attentions=True)
        else:
            out = self.ops[op](x, attn_mask, token_mask)
        return (out, attention) if output_attentions else out

    def forward_mixed(self, x, weights, attn_mask=None, token_mask=None):
        """`sum_o weights[o] * op_o(x)` over `candidates` (through `__call__`, so hooks and
        gradient checkpointing apply as on the single path)."""
        return self(x, weights, attn_mask, token_mask)

    def _mixed(self, x, weights, attn_mask, token_mask):
        check_weights(weights, self.candidates, f"Layer {self.label!r}")
        index = sampled_index(weights)
        if index is not None:  # GDAS' hard sample: only the sampled op runs
            return one_path_mix(weights, index, list(self.ops.values())[index](x, attn_mask, token_mask))
        # A constant mix skips candidates weighted 0 (they keep grad=None, as off the single path).
        # Strategies hand constant mixes over as host tensors, so this read costs no device sync.
        values = None if torch.is_grad_enabled() and weights.requires_grad else weights.tolist()
        total = None
        for i, op in enumerate(self.ops.values()):
            if values is not None and values[i] == 0:
                continue  # no gradient is wanted for this weight: its op adds nothing
            term = weights[i] * op(x, attn_mask, token_mask)
            total = term if total is None else total + term
        return torch.zeros_like(x) if total is None else total

    def candidate_parameters(self, prefix: str = "") -> dict:
        return {name: list(op.named_parameters(prefix=f"{prefix}ops.{name}")) for name, op in self.ops.items()}

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype attention computes in: autocast's under autocast on x's device, else x's."""
    kind = x.device.type
    available = getattr(torch.amp, "is_autocast_available", lambda k: k in ("cuda", "cpu"))  # torch < 2.4
    if available(kind) and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind) if hasattr(torch, "get_autocast_dtype") else (
            torch.get_autocast_gpu_dtype() if kind == "cuda" else torch.get_autocast_cpu_dtype())
    return x.dtype


class BertNasEncoder(nn.Module):
    def __init__(self, config: BertNasConfig):
        super().__init__()
        if config.arch is not None:
            per_layer = [[op] for op in config.arch]
        else:
            per_layer = [config.candidates] * config.num_hidden_layers
        self.layers = nn.ModuleList([BertNasLayer(config, names, f"layer_{i}") for i, names in enumerate(per_layer)])

    def forward(self, x, choices, attn_mask=None, token_mask=None, output_attentions=False):
        """`choices`: per layer an op name or a weight tensor. Returns (hidden, attention maps or None)."""
        attentions = () if output_attentions else None
        for layer, choice in zip(self.layers, choices):
            if output_attentions:
                x, attention = layer(x, choice, attn_mask, token_mask, True)
                attentions = attentions + (attention,)
            else:
                x = layer(x, choice, attn_mask, token_mask)
        return x, attentions


class BertNasPooler(nn.Module):
    def __init__(self, config: BertNasConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


def _op_names(arch) -> list:
    """Op names from a list/tuple of names, a mapping choice -> op, or a bertnas Arch."""
    if hasattr(arch, "ops"):
        return list(arch.ops)
    if isinstance(arch, Mapping):
        return list(arch.values())
    if isinstance(arch, str):
        raise ValueError(f"arch must be a list of op names (one per layer), got the string {arch!r}")
    return list(arch)


class BackboneKwargs(TypedDict, total=False):
    """What a head's forward passes on to `BertNasModel.forward` (any other name: TypeError)."""

    arch: Sequence[str] | Mapping
    arch_weights: Mapping[str, torch.Tensor]
    output_attentions: bool
    output_hidden_states: bool | int | list


def _cross_entropy(logits, labels, num_items_in_batch=None, ignore_index=-100):
    """Mean over the labelled items, or (Trainer's loss kwarg) their sum over `num_items_in_batch`."""
    if num_items_in_batch is None:
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum") / num_items_in_batch


def _average(per_item, num_items_in_batch=None):
    return per_item.mean() if num_items_in_batch is None else per_item.sum() / num_items_in_batch


class BertNasPreTrainedModel(SupernetMixin, PreTrainedModel):
    """Common base of the bertnas classes.

    Every class's forward takes `arch=` (one op name per layer; required on a supernet, optional on
    a fixed-arch model) or `arch_weights=` (supernets only: a mapping layer label `layer_<i>` -> 1-D
    tensor over `config.candidates`; each layer returns the weighted sum of its candidates; a
    sequence in layer order is the older form, deprecated), and the usual
    `output_attentions` / `output_hidden_states` / `return_dict`. `attentions` has one entry per
    chain layer, so `attentions[i]` belongs to layer i: the (batch, heads, T, T) probabilities of
    an attention op (computed eagerly when asked for: SDPA cannot return them), None for a layer
    without attention (ffn, conv, identity) and for every layer in mixed mode.
    Unknown keyword arguments raise TypeError; `num_items_in_batch` (the `Trainer`'s loss kwarg)
    makes the loss a sum over that many items instead of a mean.
    """

    config_class = BertNasConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = True
    # transformers' attention backends (the ops call ALL_ATTENTION_FUNCTIONS, as BERT's do)
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["BertNasEmbeddings", "BertNasLayer"]
    _can_record_outputs = {"hidden_states": BertNasLayer}  # attentions: per chain layer, by the encoder
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

    # -- arch handling (is_supernet, candidate_parameters, extract: SupernetMixin) -------------
    def resolve_arch(self, arch=None) -> tuple:
        """Validate `arch` against this model; returns the tuple of op names to run."""
        fixed = self.config.arch
        if arch is None:
            if fixed is None:
                raise ValueError(
                    "This is a supernet (config.arch is None): pass arch=[op per layer], e.g. "
                    f"{['mha12', 'ffn'] * (self.config.num_hidden_layers // 2)}, arch_weights={{layer label: "
                    "weights}} for mixed ops, or call model.extract(arch) for a stand-alone model"
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

    @property
    def choice_labels(self) -> list:
        """The chain layers' labels, `layer_0 .. layer_{N-1}` (the keys of `arch_weights`)."""
        return [f"layer_{i}" for i in range(self.config.num_hidden_layers)]

    def resolve_choices(self, arch=None, arch_weights=None) -> tuple:
        """Per chain layer, what it runs: an op name (from `arch`) or a 1-D weight tensor over
        `config.candidates` (from `arch_weights`, a mapping layer label -> weights: mixed mode)."""
        if arch_weights is None:
            return self.resolve_arch(arch)
        if arch is not None:
            raise ValueError("Give arch (one op per layer) or arch_weights (mixed ops), not both")
        if not self.is_supernet:
            raise ValueError(
                f"This model is fixed to arch {list(self.config.arch)}: it holds one op per layer and cannot mix "
                "candidates; pass arch_weights to the supernet it was extracted from"
            )
        by_position = not isinstance(arch_weights, Mapping)  # the older form: a sequence in layer order
        weights = self.weights_by_label(arch_weights, self.choice_labels, unit="layer")
        for i, (label, w) in enumerate(weights.items()):
            check_weights(w, self.config.candidates, f"arch_weights[{i}]" if by_position else f"arch_weights[{label!r}]")
        return tuple(weights.values())

    def _new_like(self, config):
        kwargs = {"add_pooling_layer": self.pooler is not None} if isinstance(self, BertNasModel) else {}
        return type(self)(config, **kwargs)

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
        mha<h>w<width> their leading channels, ffn/ffn_wide/ffn<k>x the block's FFN (leading
        neurons when narrower; when wider, extra units get zero output weights, so it starts equal
        to ffn), every LayerNorm copies the LayerNorm at its position; conv and
        identity ops keep their fresh initialisation.
        """
        from transformers import PreTrainedModel as HFModel

        from transformers.utils import logging as hf_logging

        if isinstance(bert, HFModel):
            source = bert
        else:
            # transformers' multi-line load report becomes one line of ours (a sentence-transformers
            # checkpoint is a bare BertModel: the MLM head of BertForMaskedLM starts fresh)
            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                source, info = cls._bert_class().from_pretrained(bert, output_loading_info=True)
            except (OSError, ValueError) as err:
                raise OSError(
                    f"from_bert could not load a BERT from {bert!r}: give a local folder holding config.json "
                    f"and weights, a Hub model id, or an in-memory BertModel ({err})"
                ) from err
            finally:
                hf_logging.set_verbosity(level)
            fresh = sorted({".".join(k.split(".")[:2]) for k in info.get("missing_keys", [])})
            if fresh:
                hf_logging.get_logger(__name__).warning(
                    "from_bert: %s has no weights for %s (a checkpoint without that head): they start fresh",
                    bert, ", ".join(fresh))
        config, mha = bertnas_config_for(source.config, candidates, config, **config_kwargs)
        model = cls(config)
        load_bert_into(model, source, mha)
        return model

    def to_bert(self):
        """The matching plain transformers BERT (`BertModel`, `BertForMaskedLM`, ...) with identical
        outputs; only for fixed-arch models whose arch is `[mha<h>, ffn] x L`."""
        config = bert_config_for(self.config)
        # the same attention backend, so the BERT computes exactly what this model does
        config._attn_implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        bert = self._bert_class()(config)
        bert.load_state_dict(bertnas_state_to_bert(self.state_dict()), strict=True)
        return bert.to(self.device).train(self.training)


class BertNasModel(BertNasPreTrainedModel):
    """The backbone: embeddings, the chain, and (optionally) BERT's pooler. With factorised
    embeddings (`config.embedding_size` < hidden_size) `embeddings_project` maps them to the hidden
    size, as in ELECTRA; without, there is no such layer (BERT's parameters exactly)."""

    _bert_class_name = "BertModel"
    accepts_loss_kwargs = False

    def __init__(self, config: BertNasConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertNasEmbeddings(config)
        factorised = config.embedding_size != config.hidden_size
        self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size) if factorised else None
        self.encoder = BertNasEncoder(config)
        self.pooler = BertNasPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def attention_mask_for(self, attention_mask, x):
        """(the attention ops' mask, the convolutions' (B, T, 1) token mask) for a (B, T) padding
        mask, or (None, None) when nothing is padded.

        sdpa / eager get an additive float mask (B, 1, 1, T) in the dtype attention computes in
        (autocast's, under autocast), which keeps SDPA's fused kernels open; other backends get
        what transformers builds for them (flash: the 2-D mask it unpads with; flex: a block mask).
        Whether anything is padded is only asked of a mask in host memory: reading a GPU mask back
        would stall every forward (and break a `torch.compile` graph), so there the mask is built."""
        if attention_mask is None:
            return None, None
        on_host = attention_mask.device.type == "cpu" and not torch.compiler.is_compiling()
        if on_host and bool(attention_mask.all()):
            return None, None  # the common packed-pretraining case
        attention_mask = attention_mask.to(x.device, non_blocking=True)
        keep = attention_mask.bool()
        token_mask = keep[:, :, None].to(x.dtype)
        implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if implementation in ("sdpa", "eager"):
            dtype = _compute_dtype(x)
            return mask_to_additive(keep[:, None, None, :], dtype), token_mask
        return create_bidirectional_mask(config=self.config, inputs_embeds=x, attention_mask=attention_mask), token_mask

    def chain_inputs(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                     inputs_embeds=None):
        """(x, attn_mask, token_mask): the hidden state entering chain layer 0 (`hidden_states[0]`
        of `forward`) and the masks every chain layer takes. `forward` runs the chain on them;
        code that runs the layers one at a time starts here, or from any layer i with a hidden
        state `forward` produced (`hidden_states[i]`):
        `x = self.encoder.layers[i](x, op, attn_mask, token_mask)` (the evaluator's prefix cache,
        MAGIC-A's base from the first layer where it differs from the student)."""
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        attn_mask, token_mask = self.attention_mask_for(attention_mask, x)
        return x, attn_mask, token_mask

    @capture_outputs
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        arch=None,
        arch_weights=None,
        output_attentions=None,
        output_hidden_states=None,
    ):
        # output_hidden_states (a flag, or the indices of the hidden states to keep) and return_dict
        # are handled by `capture_outputs`, which records each chain layer's output.
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids or inputs_embeds")
        choices = self.resolve_choices(arch, arch_weights)
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        x, attn_mask, token_mask = self.chain_inputs(input_ids, attention_mask, token_type_ids, position_ids,
                                                     inputs_embeds)
        x, attentions = self.encoder(x, choices, attn_mask, token_mask, output_attentions)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled, attentions=attentions)


# ----------------------------------------------------------------------------------------
# Heads (names as in modeling_bert.py, so the BERT mapping is a renaming of layers only).
# Every head's forward takes the backbone's inputs, its labels and `num_items_in_batch`; the other
# keyword arguments (`arch`, `arch_weights`, `output_attentions`, `output_hidden_states`) go to
# `BertNasModel.forward`, which rejects any name it does not know with a TypeError.
# ----------------------------------------------------------------------------------------


class BertNasPredictionHeadTransform(nn.Module):
    """hidden -> embedding width (BERT: the same), activation, LayerNorm; the decoder after it
    shares the word embeddings, so with factorised embeddings this is the map back to their width
    (ALBERT's MLM head, ELECTRA's generator head)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertNasLMPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transform = BertNasPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size, bias=True)
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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, num_items_in_batch=None, **kwargs: Unpack[BackboneKwargs]):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, return_dict=True,
                        **kwargs)
        logits = self.cls(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = _cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1), num_items_in_batch)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


@dataclass
class BertNasForPreTrainingOutput(ModelOutput):
    """ELECTRA discriminator output: per-token logits that the token was replaced."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, num_items_in_batch=None, **kwargs: Unpack[BackboneKwargs]):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, return_dict=True,
                        **kwargs)
        logits = self.discriminator_predictions(out.last_hidden_state)
        loss = None
        if labels is not None:
            per_token = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
            if attention_mask is None:
                loss = _average(per_token, num_items_in_batch)
            else:
                weight = attention_mask.to(logits.dtype)
                total = weight.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
                loss = (per_token * weight).sum() / total
        return BertNasForPreTrainingOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                           attentions=out.attentions)


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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, num_items_in_batch=None, **kwargs: Unpack[BackboneKwargs]):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, return_dict=True,
                        **kwargs)
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
                per_item = F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype), reduction="none")
                loss = _average(per_item, num_items_in_batch)
            elif self.config.problem_type == "single_label_classification":
                loss = _cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), num_items_in_batch)
            else:
                per_item = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
                loss = _average(per_item, num_items_in_batch)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, num_items_in_batch=None, **kwargs: Unpack[BackboneKwargs]):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, return_dict=True,
                        **kwargs)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = _cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), num_items_in_batch)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


class BertNasForQuestionAnswering(BertNasPreTrainedModel):
    _bert_class_name = "BertForQuestionAnswering"

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertNasModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                start_positions=None, end_positions=None, num_items_in_batch=None, **kwargs: Unpack[BackboneKwargs]):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, return_dict=True,
                        **kwargs)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the sequence (answer truncated away) are ignored, as in BERT.
            ignored = start_logits.size(1)
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (_cross_entropy(start_logits, start, num_items_in_batch, ignored)
                    + _cross_entropy(end_logits, end, num_items_in_batch, ignored)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=out.hidden_states, attentions=out.attentions)


# save_pretrained copies this file and its siblings next to the weights and writes auto_map,
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

__all__ = [cls.__name__ for cls in AUTO_CLASSES] + ["BertNasPreTrainedModel", "BertNasLayer", "AUTO_CLASSES"]
