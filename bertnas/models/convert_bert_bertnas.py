"""Conversion between transformers BERT checkpoints and the bertnas chain.

A BERT layer i is the chain layers 2i (`mha<heads>`) and 2i+1 (`ffn`); embeddings, pooler and
heads share BERT's parameter names, so a conversion is a renaming of the encoder keys
(`bert_key_to_chain` / `chain_key_to_bert`). `BertNasPreTrainedModel.from_bert` / `to_bert` call
`load_bert_into` / `bertnas_to_bert` here.

Copied next to exported models with the modeling file (imported relatively): it imports only
torch, transformers, the standard library and its siblings.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .configuration_bertnas import BertNasConfig
from .ops_bertnas import FeedForwardOp, MultiHeadAttentionOp, parse_op

# Parameter-name mapping between a BERT layer i and the chain layers 2i (mha) / 2i+1 (ffn).
BERT_LAYER_KEYS = {
    "attention.self.query.": (0, "query."),
    "attention.self.key.": (0, "key."),
    "attention.self.value.": (0, "value."),
    "attention.output.dense.": (0, "dense."),
    "attention.output.LayerNorm.": (0, "LayerNorm."),
    "intermediate.dense.": (1, "intermediate."),
    "output.dense.": (1, "output."),
    "output.LayerNorm.": (1, "LayerNorm."),
}
BERT_LAYER_RE = re.compile(r"^(.*)encoder\.layer\.(\d+)\.(.*)$")
CHAIN_LAYER_RE = re.compile(r"^(.*)encoder\.layers\.(\d+)\.ops\.([^.]+)\.(.*)$")


def bert_key_to_chain(key: str, mha: str) -> str:
    """'bert.encoder.layer.3.attention.self.query.weight' -> 'bert.encoder.layers.6.ops.mha12.query.weight'."""
    match = BERT_LAYER_RE.match(key)
    if not match:
        return key  # embeddings, pooler and heads share BERT's names
    prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
    for bert_part, (offset, ours) in BERT_LAYER_KEYS.items():
        if rest.startswith(bert_part):
            op = mha if offset == 0 else "ffn"
            return f"{prefix}encoder.layers.{2 * index + offset}.ops.{op}.{ours}{rest[len(bert_part):]}"
    raise ValueError(f"BERT parameter {key!r} has no place in a bertnas chain (unsupported BERT variant?)")


def chain_key_to_bert(key: str) -> str:
    match = CHAIN_LAYER_RE.match(key)
    if not match:
        return key
    prefix, index, rest = match.group(1), int(match.group(2)), match.group(4)
    offset = index % 2
    for bert_part, (off, ours) in BERT_LAYER_KEYS.items():
        if off == offset and rest.startswith(ours):
            return f"{prefix}encoder.layer.{index // 2}.{bert_part}{rest[len(ours):]}"
    raise ValueError(f"Parameter {key!r} has no BERT counterpart")


def init_from_neighbours(layer: nn.Module, attention: nn.Module, ffn: nn.Module, offset: int) -> None:
    """Start the non-BERT candidates of one chain layer from the BERT block it sits in."""
    norm = (attention if offset == 0 else ffn).LayerNorm
    for op in layer.ops.values():
        if op is attention or op is ffn:
            continue
        if isinstance(op, MultiHeadAttentionOp):
            # the leading query/key/value channels (a narrower attention keeps the first heads; a wider
            # one copies all, its extra channels' values silent through zero output weights)
            inner = min(op.inner_size, attention.inner_size)
            for part in ("query", "key", "value"):
                getattr(op, part).weight[:inner].copy_(getattr(attention, part).weight[:inner])
                getattr(op, part).bias[:inner].copy_(getattr(attention, part).bias[:inner])
            op.dense.weight.zero_()
            op.dense.weight[:, :inner].copy_(attention.dense.weight[:, :inner])
            op.dense.bias.copy_(attention.dense.bias)
        elif isinstance(op, FeedForwardOp):
            inner = min(op.intermediate.out_features, ffn.intermediate.out_features)
            op.intermediate.weight[:inner].copy_(ffn.intermediate.weight[:inner])
            op.intermediate.bias[:inner].copy_(ffn.intermediate.bias[:inner])
            op.output.weight.zero_()
            op.output.weight[:, :inner].copy_(ffn.output.weight[:, :inner])
            op.output.bias.copy_(ffn.output.bias)
        if hasattr(op, "LayerNorm"):
            op.LayerNorm.load_state_dict(norm.state_dict())


def bertnas_config_for(bert_config, candidates, config=None, **config_kwargs) -> tuple[BertNasConfig, str]:
    """The supernet config for a BERT (or a check that `config` fits it) and the BERT's mha op name."""
    from transformers import BertConfig

    if not isinstance(bert_config, BertConfig):
        raise ValueError(f"from_bert needs a BERT (model_type 'bert'), got model_type {bert_config.model_type!r}")
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
        return config, mha
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
    return BertNasConfig(candidates=candidates, **{**derived, **extra, **config_kwargs}), mha


def load_bert_into(model, source, mha: str) -> None:
    """Copy the weights of a transformers BERT `source` onto the `[mha, ffn] x L` path of the
    supernet `model` (any bertnas class) and start the other candidates from their neighbours."""
    # Backbone keys of a bare BertModel lack the 'bert.' prefix of the task models.
    source_state = source.state_dict()
    if source.base_model_prefix and not any(k.startswith("bert.") for k in source_state):
        source_state = {f"bert.{k}": v for k, v in source_state.items()}
    ours = model.state_dict()
    backbone = getattr(model, model.base_model_prefix, model)
    ours_prefix = "" if backbone is model else f"{model.base_model_prefix}."
    filled = set()
    with torch.no_grad():
        for key, value in source_state.items():
            target = bert_key_to_chain(key, mha)
            target = ours_prefix + target[len("bert."):] if target.startswith("bert.") else target
            if target not in ours:
                if target.startswith(ours_prefix + "encoder") or target.startswith(ours_prefix + "embeddings"):
                    raise ValueError(f"from_bert: BERT weight {key!r} has no counterpart {target!r}")
                continue  # a head or pooler this class does not have
            if ours[target].shape != value.shape:
                raise ValueError(f"from_bert: shape mismatch for {target}: {tuple(ours[target].shape)} vs "
                                 f"{tuple(value.shape)}")
            ours[target].copy_(value)
            filled.add(target)
        layers = backbone.encoder.layers
        for i, layer in enumerate(layers):
            block = i - i % 2
            init_from_neighbours(layer, layers[block].ops[mha], layers[block + 1].ops["ffn"], i % 2)

    def on_path(key):
        match = CHAIN_LAYER_RE.match(key)
        if match:
            return match.group(3) == (mha if int(match.group(2)) % 2 == 0 else "ffn")
        return key.startswith(ours_prefix + "embeddings.")

    unfilled = [k for k in ours if on_path(k) and k not in filled]
    if unfilled:
        raise ValueError(f"from_bert: the BERT left path weights unset: {unfilled[:5]}")


def bert_config_for(config: BertNasConfig):
    """The `BertConfig` of a fixed-arch `[mha<h>, ffn] x L` model (ValueError for any other)."""
    from transformers import BertConfig

    arch = config.arch
    if arch is None:
        raise ValueError("to_bert needs a fixed-arch model: call supernet.extract(arch) first")
    if config.embedding_size != config.hidden_size:
        raise ValueError(
            f"to_bert: embedding_size {config.embedding_size} != hidden_size {config.hidden_size} (factorised "
            "embeddings) has no plain BertModel layout; save it with save_pretrained, which writes remote code"
        )
    heads = parse_op(arch[0])[1] if arch and parse_op(arch[0])[0] == "mha" else None
    if heads is None or len(arch) % 2 or arch != [arch[0], "ffn"] * (len(arch) // 2):
        raise ValueError(
            f"to_bert: arch {arch} is not a BERT; only [mha<heads>, ffn] x L converts to a plain "
            "BertModel (save other archs with save_pretrained, which writes remote code)"
        )
    c = config
    return BertConfig(
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


def bertnas_state_to_bert(state: dict) -> dict:
    return {chain_key_to_bert(k): v for k, v in state.items()}


__all__ = [
    "BERT_LAYER_KEYS",
    "bert_key_to_chain",
    "chain_key_to_bert",
    "init_from_neighbours",
    "bertnas_config_for",
    "load_bert_into",
    "bert_config_for",
    "bertnas_state_to_bert",
]
