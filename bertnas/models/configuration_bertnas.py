"""Configuration of the hybrid BERT supernet (and of every fixed-arch model cut from it).

This file is copied next to exported models and loaded as remote code, so it imports
nothing from `bertnas`: only transformers, the standard library and its sibling op registry
(`ops_bertnas.py`, imported relatively), which defines the op names and how they are checked.
"""

from transformers import PretrainedConfig

from .ops_bertnas import check_op, op_kind, parse_op

DEFAULT_CANDIDATES = ("mha6", "mha8", "mha12", "ffn", "ffn_wide", "conv3", "conv5")


class BertNasConfig(PretrainedConfig):
    r"""Hybrid BERT supernet: `num_hidden_layers` chain layers, each ONE post-LN residual sublayer
    `x = LayerNorm(x + dropout(op(x)))` with `op` one of `candidates`.

    A BERT with L transformer layers is the chain `[mha12, ffn] x L` (2L chain layers).

    Args:
        arch (`list[str]`, *optional*): None for a supernet (every layer holds every candidate);
            a list of one op name per layer for a fixed-arch model holding only those ops.
        candidates (`list[str]`): the ops each layer may choose from (see `parse_op`; the op kinds
            are the registry `OP_KINDS` of `ops_bertnas.py`).
        num_hidden_layers (`int`): number of chain layers N (not BERT layers).
        intermediate_size (`int`): inner size of `ffn`; `ffn_wide_size` that of `ffn_wide`
            (default 1.5 x intermediate_size).
        num_attention_heads (`int`, *optional*): BertConfig's field, for tools that read it
            (FLOP counters, backends that size buffers per head); default: the largest head count
            among the candidates (1 without attention ops). The ops' own head counts are in their names.
        embedding_size (`int`, *optional*): width of the word / position / token-type embeddings
            (default: hidden_size, as BERT). A smaller one factorises them (ALBERT / ELECTRA-small):
            embeddings of this width, their LayerNorm, then a linear map `embeddings_project` to
            hidden_size; the MLM head maps back to this width, tied to the word embeddings.
        Other fields mean what they mean in `transformers.BertConfig`.
    """

    model_type = "bertnas"

    def __init__(
        self,
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=24,
        candidates=DEFAULT_CANDIDATES,
        arch=None,
        intermediate_size=3072,
        ffn_wide_size=None,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        classifier_dropout=None,
        tie_word_embeddings=True,
        embedding_size=None,
        num_attention_heads=None,
        **kwargs,
    ):
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.candidates = list(candidates)
        self.arch = list(arch) if arch is not None else None
        self.intermediate_size = intermediate_size
        self.ffn_wide_size = ffn_wide_size if ffn_wide_size is not None else (3 * intermediate_size) // 2
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout = classifier_dropout
        self.embedding_size = embedding_size if embedding_size is not None else hidden_size
        self.validate_space()
        self.num_attention_heads = num_attention_heads if num_attention_heads is not None else max_heads(self.candidates)

    @property
    def is_supernet(self) -> bool:
        return self.arch is None

    def validate_space(self):
        """Clear errors for candidates the model cannot build and for a malformed arch."""
        if not isinstance(self.embedding_size, int) or self.embedding_size <= 0:
            raise ValueError(f"config.embedding_size must be a positive int (or None for hidden_size), "
                             f"got {self.embedding_size!r}")
        if not self.candidates:
            raise ValueError("config.candidates is empty; give at least one op, e.g. ['mha12', 'ffn']")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"config.candidates lists an op twice: {self.candidates}")
        for op in self.candidates:
            check_op(self, op)
        if self.arch is not None:
            if len(self.arch) != self.num_hidden_layers:
                raise ValueError(
                    f"config.arch has {len(self.arch)} ops but num_hidden_layers={self.num_hidden_layers}; "
                    f"give one op per chain layer"
                )
            for i, op in enumerate(self.arch):
                if op not in self.candidates:
                    raise ValueError(
                        f"config.arch[{i}]={op!r} is not a candidate; candidates are {self.candidates}"
                    )


def max_heads(ops) -> int:
    """The largest head count of the attention ops in `ops` (1 when there is none)."""
    heads = [1]
    for op in ops:
        if op_kind(op).attention:
            arg = parse_op(op)[1]
            heads.append(arg[0] if isinstance(arg, tuple) else arg)
    return max(heads)


__all__ = ["BertNasConfig", "DEFAULT_CANDIDATES", "parse_op"]
