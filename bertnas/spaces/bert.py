"""The hybrid BERT chain space: N layers, each one op of the config's candidates.

Parameter and FLOP counts are analytic (no model is built) and come from the op registry
(`bertnas.models.ops_bertnas.OP_KINDS`); the tests check them against real modules and
torch's FLOP counter.
"""

from __future__ import annotations

from bertnas.models.configuration_bertnas import BertNasConfig
from bertnas.models.ops_bertnas import embedding_params, op_flops, op_params
from bertnas.spaces.base import Arch, SearchSpace


class BertSpace(SearchSpace):
    """Choices `layer_0 .. layer_{N-1}`, each over `config.candidates`; for a fixed-arch model
    (`config.arch` set) each choice holds only that layer's op, so the space is its one arch."""

    def __init__(self, config: BertNasConfig):
        self.config = config
        per_layer = [[op] for op in config.arch] if config.arch is not None else [config.candidates] * config.num_hidden_layers
        super().__init__({f"layer_{i}": ops for i, ops in enumerate(per_layer)})

    @classmethod
    def from_model(cls, model) -> BertSpace:
        return cls(model.config)

    # -- cost model: every op's numbers come from the op registry (`bertnas.models.OP_KINDS`) --
    def op_params(self, op: str) -> int:
        """Exact parameter count of one op (what the built module holds)."""
        return op_params(self.config, op)

    def embedding_params(self) -> int:
        """Embedding tables and their LayerNorm at `embedding_size`, plus the map to the hidden size
        when the embeddings are factorised (embedding_size < hidden_size)."""
        return embedding_params(self.config)

    def params(self, arch, include_embeddings: bool = True) -> int:
        """Parameters of the backbone on `arch` (embeddings + chain; no pooler or task head)."""
        arch = self.arch(arch)
        chain = sum(self.op_params(op) for op in arch.ops)
        return chain + (self.embedding_params() if include_embeddings else 0)

    def op_flops(self, op: str, seq_len: int) -> int:
        """FLOPs (2 x multiply-adds) of one op on one sequence; LayerNorm, activations and
        softmax are not counted (as torch's FLOP counter does)."""
        return op_flops(self.config, op, seq_len)

    def flops(self, arch, seq_len: int = 128) -> int:
        """FLOPs of the chain on `arch` for one sequence of `seq_len` tokens."""
        arch = self.arch(arch)
        return sum(self.op_flops(op, seq_len) for op in arch.ops)

    def bert_arch(self, heads: int = 12) -> Arch:
        """The `[mha<heads>, ffn] x L` path (BERT) of this space."""
        n = self.config.num_hidden_layers
        return self.arch([f"mha{heads}", "ffn"] * (n // 2) + ([f"mha{heads}"] if n % 2 else []))
