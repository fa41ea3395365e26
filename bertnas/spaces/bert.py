"""The hybrid BERT chain space: N layers, each one op of the config's candidates.

Parameter and FLOP counts are analytic (no model is built); the tests check them against
real modules and torch's FLOP counter.
"""

from __future__ import annotations

from ..models.configuration_bertnas import BertNasConfig, parse_op
from .base import Arch, SearchSpace


class BertSpace(SearchSpace):
    """Choices `layer_0 .. layer_{N-1}`, each over `config.candidates`."""

    def __init__(self, config: BertNasConfig):
        self.config = config
        super().__init__({f"layer_{i}": config.candidates for i in range(config.num_hidden_layers)})

    @classmethod
    def from_model(cls, model) -> BertSpace:
        return cls(model.config)

    # -- cost model ---------------------------------------------------------------------
    def op_params(self, op: str) -> int:
        hidden = self.config.hidden_size
        norm = 2 * hidden
        kind, n = parse_op(op)
        if kind == "mha":  # query, key, value, output projections with biases
            return 4 * (hidden * hidden + hidden) + norm
        if kind in ("ffn", "ffn_wide"):
            inner = self.config.intermediate_size if kind == "ffn" else self.config.ffn_wide_size
            return 2 * hidden * inner + inner + hidden + norm
        if kind == "conv":  # depthwise kernel + pointwise projection
            return hidden * n + hidden + hidden * hidden + hidden + norm
        return 0

    def embedding_params(self) -> int:
        c = self.config
        return (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * c.hidden_size + 2 * c.hidden_size

    def params(self, arch, include_embeddings: bool = True) -> int:
        """Parameters of the backbone on `arch` (embeddings + chain; no pooler or task head)."""
        arch = self.arch(arch)
        chain = sum(self.op_params(op) for op in arch.ops)
        return chain + (self.embedding_params() if include_embeddings else 0)

    def op_flops(self, op: str, seq_len: int) -> int:
        """FLOPs (2 x multiply-adds) of one op on one sequence; LayerNorm, activations and
        softmax are not counted (as torch's FLOP counter does)."""
        hidden, t = self.config.hidden_size, seq_len
        kind, n = parse_op(op)
        if kind == "mha":  # 4 projections + scores (QK^T) + weighted values (AV)
            return 8 * t * hidden * hidden + 4 * t * t * hidden
        if kind in ("ffn", "ffn_wide"):
            inner = self.config.intermediate_size if kind == "ffn" else self.config.ffn_wide_size
            return 4 * t * hidden * inner
        if kind == "conv":
            return 2 * t * hidden * n + 2 * t * hidden * hidden
        return 0

    def flops(self, arch, seq_len: int = 128) -> int:
        """FLOPs of the chain on `arch` for one sequence of `seq_len` tokens."""
        arch = self.arch(arch)
        return sum(self.op_flops(op, seq_len) for op in arch.ops)

    def bert_arch(self, heads: int = 12) -> Arch:
        """The `[mha<heads>, ffn] x L` path (BERT) of this space."""
        n = self.config.num_hidden_layers
        return self.arch([f"mha{heads}", "ffn"] * (n // 2) + ([f"mha{heads}"] if n % 2 else []))
