"""The DARTS cell space: genotypes, derivation from edge weights, the space and the evaluation network.

A DARTS cell has 2 input nodes (0, 1: the two previous cells) and `steps` (4) intermediate nodes;
node j keeps two distinct predecessors, each through one op of
{none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3,
dil_conv_5x5}; normal cells share one such cell, reduction cells another.

Encoding (the supernet's choice modules, `models/modeling_darts.py`): per cell type and node j
an input choice `<cell>_node_<j>` (2 of "0" .. "j-1") and per edge (i, j) a layer choice
`<cell>_edge_<i>_<j>` over the 8 ops. An arch is canonical when the edges that are inputs of
their node carry a real op (not `none`) and every other edge carries `none`: then archs and
genotypes correspond one to one, `sample` is uniform over genotypes, `enumerate` lists each
genotype once, `size` counts them, and a one-hot mixed weight per edge is the path exactly (the
unused edges' `none` outputs zero). `DartsSpace.arch` normalises the unused edges to `none`.
A walk step (`neighbour`) changes k of the genotype's units: a node's op on one of its two
inputs (to another real op), or one of a node's inputs (swapped for another predecessor; the
op moves with it).

`Genotype` / `GENOTYPES` hold published cells in the DARTS code's format (pairs (op, input)
per node, in order); `genotype_to_arch` / `arch_to_genotype` convert. `derive_genotype` is the
DARTS discretisation: per node the 2 incoming edges with the strongest non-`none` op weight,
each with that op. `build_eval_network` builds the DARTS evaluation network of a genotype.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from bertnas.models.configuration_darts import DARTS_OPS, DartsNasConfig
from bertnas.spaces.base import Arch, InputChoice, SearchSpace, as_rng

PRIMITIVES = DARTS_OPS
CELLS = ("normal", "reduce")

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

# Published cells (DARTS, Liu et al. 2019; PC-DARTS, Xu et al. 2020; GDAS, Dong & Yang 2019),
# with the parameter counts their papers report for the evaluation networks (auxiliary head
# excluded): checked in tests/test_darts.py.
GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3, 4, 5]),
    "DARTS_V2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=[2, 3, 4, 5]),
    "PC_DARTS_cifar": Genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=[2, 3, 4, 5]),
    "PC_DARTS_image": Genotype(
        normal=[("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
                ("sep_conv_3x3", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 3)],
        reduce_concat=[2, 3, 4, 5]),
    "GDAS_V1": Genotype(
        normal=[("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_3x3", 3)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2), ("sep_conv_5x5", 1),
                ("dil_conv_5x5", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)],
        reduce_concat=[2, 3, 4, 5]),
}


# -- genotypes <-> archs ------------------------------------------------------------------------
def genotype_to_arch(genotype: Genotype, steps: int = 4) -> dict[str, Any]:
    """The arch (label -> value, canonical) of a genotype; concat must be every intermediate node."""
    arch: dict[str, Any] = {}
    for cell in CELLS:
        gene, concat = getattr(genotype, cell), list(getattr(genotype, f"{cell}_concat"))
        if concat != list(range(2, steps + 2)):
            raise ValueError(f"{cell}_concat must be {list(range(2, steps + 2))} (every intermediate node), got {concat}")
        if len(gene) != 2 * steps:
            raise ValueError(f"{cell} must list 2 (op, input) pairs per node ({2 * steps}), got {len(gene)}")
        for j in range(2, steps + 2):
            pairs = [tuple(p[:2]) for p in gene[2 * (j - 2): 2 * (j - 1)]]
            inputs = [int(i) for _, i in pairs]
            if len(set(inputs)) != 2 or not all(0 <= i < j for i in inputs):
                raise ValueError(f"{cell} node {j}: needs two distinct inputs out of 0..{j - 1}, got {inputs}")
            for op, _ in pairs:
                if op not in PRIMITIVES or op == "none":
                    raise ValueError(f"{cell} node {j}: unknown or `none` op {op!r}; ops: {', '.join(PRIMITIVES[1:])}")
            arch[f"{cell}_node_{j}"] = tuple(str(i) for i in sorted(inputs))
            by_input = {int(i): op for op, i in pairs}
            for i in range(j):
                arch[f"{cell}_edge_{i}_{j}"] = by_input.get(i, "none")
    return arch


def arch_to_genotype(arch: Mapping[str, Any], steps: int = 4) -> Genotype:
    """The genotype of an arch (pairs per node in input order)."""
    genes = {}
    for cell in CELLS:
        gene = []
        for j in range(2, steps + 2):
            for i in sorted(int(x) for x in arch[f"{cell}_node_{j}"]):
                gene.append((arch[f"{cell}_edge_{i}_{j}"], i))
        genes[cell] = gene
    concat = list(range(2, steps + 2))
    return Genotype(genes["normal"], concat, genes["reduce"], concat)


def _parse(weights, primitives: Sequence[str], steps: int) -> list[tuple[str, int]]:
    """DARTS' discretisation of one cell: rows of `weights` are edges (node 2: from 0, 1; node 3:
    from 0, 1, 2; ...), columns ops. Per node the two edges whose strongest non-`none` op weighs
    most (ties: the lower input), each with that op (ties: the earlier op)."""
    rows = [[float(x) for x in row] for row in weights]
    expected = sum(range(2, steps + 2))
    if len(rows) != expected or any(len(r) != len(primitives) for r in rows):
        raise ValueError(f"weights must be ({expected} edges, {len(primitives)} ops), got "
                         f"({len(rows)}, {len(rows[0]) if rows else 0})")
    real = [k for k, name in enumerate(primitives) if name != "none"]
    gene, start = [], 0
    for j in range(2, steps + 2):
        node = rows[start: start + j]
        start += j
        strongest = sorted(range(j), key=lambda i: -max(node[i][k] for k in real))[:2]
        for i in strongest:
            best = max(real, key=lambda k: node[i][k])
            gene.append((primitives[best], i))
    return gene


def derive_genotype(normal, reduce, primitives: Sequence[str] = PRIMITIVES, steps: int = 4) -> Genotype:
    """The genotype of DARTS edge weights (e.g. softmax(alpha)): `normal` / `reduce` are
    (edges, ops) matrices (tensors, arrays or nested lists) in DARTS' edge order."""
    concat = list(range(2, steps + 2))
    return Genotype(_parse(normal, primitives, steps), concat, _parse(reduce, primitives, steps), concat)


def derive_arch(weights: Mapping[str, Any], primitives: Sequence[str] = PRIMITIVES, steps: int = 4) -> dict:
    """`derive_genotype` on mixed-mode weights keyed by edge label (`<cell>_edge_<i>_<j>` -> weight
    over the ops), e.g. the `arch_weights` a DARTS strategy feeds the supernet; returns the arch."""
    mats = {cell: [weights[f"{cell}_edge_{i}_{j}"] for j in range(2, steps + 2) for i in range(j)] for cell in CELLS}
    rows = {cell: [[float(x) for x in w] for w in m] for cell, m in mats.items()}
    return genotype_to_arch(derive_genotype(rows["normal"], rows["reduce"], primitives, steps), steps)


# -- the space ------------------------------------------------------------------------------
class DartsSpace(SearchSpace):
    """The choices of a `DartsNasConfig` supernet, canonical archs only (see the module doc);
    `params` / `flops` are those of the arch's fixed-genotype network (auxiliary head excluded;
    FLOPs per image at `config.image_size`, 2 per multiply-add of convolutions and linear layers)."""

    channel_edges = True

    def __init__(self, config: DartsNasConfig | None = None, **config_kwargs):
        from bertnas.models.modeling_darts import darts_choices

        self.config = config if config is not None else DartsNasConfig(**config_kwargs)
        if "none" not in self.config.candidates:
            raise ValueError("The DARTS space needs `none` among the candidates (edges that are not inputs carry it)")
        self.steps = self.config.steps
        self.real_ops = tuple(op for op in self.config.candidates if op != "none")
        if not self.real_ops:
            raise ValueError("The DARTS space needs at least one op besides `none`")
        super().__init__({label: InputChoice(c, n) if n else c for label, (c, n) in darts_choices(self.config).items()})

    def nodes(self):
        return [(cell, j) for cell in CELLS for j in range(2, self.steps + 2)]

    # -- validation -------------------------------------------------------------------------
    def arch(self, value) -> Arch:
        """Validate per choice (base class), then canonicalise: edges that are not inputs of their
        node become `none`; an input edge carrying `none` is an error."""
        raw = super().arch(value)
        changes = {}
        for cell, j in self.nodes():
            chosen = raw[f"{cell}_node_{j}"]
            for i in range(j):
                label = f"{cell}_edge_{i}_{j}"
                if str(i) in chosen and raw[label] == "none":
                    raise ValueError(f"{label} is an input of {cell} node {j} ({list(chosen)}) and must carry an op, "
                                     f"one of {', '.join(self.real_ops)}; `none` is for edges that are not inputs")
                if str(i) not in chosen and raw[label] != "none":
                    changes[label] = "none"
        return raw.replace(**changes) if changes else raw

    def _build(self, genes: Mapping[tuple[str, int], Sequence[tuple[int, str]]]) -> Arch:
        """An Arch from per-node [(input, op), (input, op)]."""
        values = []
        for cell, j in self.nodes():
            pairs = dict(genes[(cell, j)])
            values.append((f"{cell}_node_{j}", tuple(str(i) for i in sorted(pairs))))
            values += [(f"{cell}_edge_{i}_{j}", pairs.get(i, "none")) for i in range(j)]
        order = {label: k for k, label in enumerate(self.choices)}
        return Arch(sorted(values, key=lambda item: order[item[0]]))

    def genes(self, arch) -> dict[tuple[str, int], list[tuple[int, str]]]:
        """(cell, node) -> [(input, op), (input, op)] in input order."""
        arch = self.arch(arch)
        return {(cell, j): [(int(i), arch[f"{cell}_edge_{i}_{j}"]) for i in arch[f"{cell}_node_{j}"]]
                for cell, j in self.nodes()}

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, rng: random.Random | int | None = None) -> Arch:
        """Uniform over genotypes: per node 2 of its predecessors, then a real op per kept edge."""
        rng = as_rng(rng)
        return self._build({(cell, j): [(i, rng.choice(self.real_ops)) for i in sorted(rng.sample(range(j), 2))]
                            for cell, j in self.nodes()})

    def mutable_choices(self) -> list[str]:
        """The genotype's units a walk changes: `<cell>_node_<j>` (swap one input; nodes with more
        than 2 predecessors) and `<cell>_node_<j>.op<s>` (the op on its s-th input; more than one real op)."""
        units = []
        for cell, j in self.nodes():
            if j > 2:
                units.append(f"{cell}_node_{j}")
            if len(self.real_ops) > 1:
                units += [f"{cell}_node_{j}.op0", f"{cell}_node_{j}.op1"]
        return units

    def neighbour(self, arch, k: int = 1, rng: random.Random | int | None = None) -> Arch:
        """`arch` with exactly `k` units changed (see `mutable_choices`): an op to another real op,
        or an input swapped for a predecessor the node does not use (keeping that slot's op)."""
        rng = as_rng(rng)
        genes = self.genes(arch)
        units = self.mutable_choices()
        if not 0 <= k <= len(units):
            raise ValueError(f"k={k} units cannot change: the DARTS space has {len(units)} ({units[0]} ..)")
        picked = set(rng.sample(units, k))
        for cell, j in self.nodes():
            slots = [list(p) for p in genes[(cell, j)]]
            for s in (0, 1):
                if f"{cell}_node_{j}.op{s}" in picked:
                    slots[s][1] = rng.choice([op for op in self.real_ops if op != slots[s][1]])
            if f"{cell}_node_{j}" in picked:
                s = rng.randrange(2)
                slots[s][0] = rng.choice([i for i in range(j) if i not in (slots[0][0], slots[1][0])])
            genes[(cell, j)] = [tuple(p) for p in slots]
        return self._build(genes)

    def crossover(self, a, b, rng: random.Random | int | None = None) -> Arch:
        """Node by node: each node's two inputs and their ops come together from one parent."""
        rng = as_rng(rng)
        ga, gb = self.genes(a), self.genes(b)
        return self._build({node: ga[node] if rng.random() < 0.5 else gb[node] for node in self.nodes()})

    # -- size -------------------------------------------------------------------------------
    def size(self) -> int:
        m = len(self.real_ops)
        return math.prod(math.comb(j, 2) * m * m for _, j in self.nodes())

    def enumerate(self, limit: int = 1_000_000):
        """Every genotype once (small spaces only: fewer steps or ops)."""
        if self.size() > limit:
            raise ValueError(f"The space has {self.size()} archs, more than limit={limit}; sample it instead")
        nodes = self.nodes()
        per_node = [[list(zip(pair, ops)) for pair in itertools.combinations(range(j), 2)
                     for ops in itertools.product(self.real_ops, repeat=2)] for _, j in nodes]
        for combo in itertools.product(*per_node):
            yield self._build(dict(zip(nodes, combo)))

    # -- cost -------------------------------------------------------------------------------
    def params(self, arch) -> int:
        from bertnas.models.modeling_darts import darts_cost

        return darts_cost(self.config, self.arch(arch))[0]

    def flops(self, arch, image_size: int | None = None) -> int:
        """FLOPs per image at `image_size` (default `config.image_size`; the constraint checker's
        sequence length does not apply to images and is ignored when it is not a plausible size)."""
        from bertnas.models.modeling_darts import darts_cost

        config = self.config
        if image_size is not None and image_size != config.image_size and self._image_size_ok(image_size):
            config = DartsNasConfig(**{**config.to_dict(), "image_size": image_size})
        return darts_cost(config, self.arch(arch))[1]

    def _image_size_ok(self, size) -> bool:
        return isinstance(size, int) and size % 8 == 0 and size >= 8

    def genotype(self, arch) -> Genotype:
        return arch_to_genotype(self.arch(arch), self.steps)

    def from_genotype(self, genotype: Genotype | str) -> Arch:
        genotype = GENOTYPES[genotype] if isinstance(genotype, str) else genotype
        return self.arch(genotype_to_arch(genotype, self.steps))


# -- evaluation network ---------------------------------------------------------------------------
def build_eval_network(genotype: Genotype | str, dataset: str = "cifar10", C: int = 36, layers: int = 20,
                       auxiliary: bool = True, num_classes: int | None = None, drop_path_prob: float = 0.2,
                       image_size: int | None = None, **config_kwargs):
    """The DARTS evaluation network of a genotype (a `Genotype` or a `GENOTYPES` name): stem,
    `layers` cells with reductions at 1/3 and 2/3, drop-path (`model.drop_path_prob`, scheduled
    by the training recipe), the auxiliary head after the 2/3 reduction (training only), global
    pooling and a classifier. CIFAR-10 defaults: C=36, 20 cells; ImageNet: C=48, 14 cells."""
    from bertnas.models.modeling_darts import DartsNasForImageClassification

    genotype = GENOTYPES[genotype] if isinstance(genotype, str) else genotype
    imagenet = dataset == "imagenet"
    config = DartsNasConfig(
        init_channels=C, num_cells=layers, dataset=dataset, image_size=image_size or (224 if imagenet else 32),
        num_labels=num_classes or (1000 if imagenet else 10), auxiliary=auxiliary, drop_path_prob=drop_path_prob,
        arch={k: list(v) if isinstance(v, tuple) else v for k, v in genotype_to_arch(genotype).items()},
        **config_kwargs)
    return DartsNasForImageClassification(config)


SPACE_OPTIONS = {"C": "init_channels", "layers": "num_cells", "init_channels": "init_channels",
                 "num_cells": "num_cells", "steps": "steps", "stem_multiplier": "stem_multiplier",
                 "candidates": "candidates", "affine": "affine", "auxiliary": "auxiliary",
                 "auxiliary_weight": "auxiliary_weight", "drop_path_prob": "drop_path_prob", "dataset": "dataset"}


def build_supernet(space_options: Mapping[str, Any] | None = None, num_classes: int = 10, arch=None,
                   image_shape=(3, 32, 32)):
    """(model, DartsSpace) for the vision task (`bertnas/tasks/vision.py`): the supernet, or with
    `arch` (values in choice order, a mapping, or `[genotype name]`) that genotype's network.
    `space_options` ({C | init_channels, layers | num_cells, steps, candidates, affine,
    auxiliary, drop_path_prob, ...}) default to the DARTS search network: C=16, 8 cells,
    non-affine BN in the ops (affine for a fixed genotype)."""
    from bertnas.models.modeling_darts import DartsNasForImageClassification

    options = dict(space_options or {})
    unknown = sorted(set(options) - set(SPACE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown darts space_options {unknown}; known: {', '.join(SPACE_OPTIONS)}")
    kwargs = {"init_channels": 16, "num_cells": 8, "affine": arch is not None,
              **{SPACE_OPTIONS[k]: v for k, v in options.items()}}
    config = DartsNasConfig(num_labels=num_classes, num_channels=image_shape[0], image_size=image_shape[-1], **kwargs)
    space = DartsSpace(config)
    if arch is not None:
        if isinstance(arch, str) or (isinstance(arch, Sequence) and len(arch) == 1 and isinstance(arch[0], str)):
            name = arch if isinstance(arch, str) else arch[0]
            if name not in GENOTYPES:
                raise ValueError(f"Unknown genotype {name!r}; published: {', '.join(GENOTYPES)}")
            fixed = space.from_genotype(name)
        else:
            fixed = space.arch(arch)
        config.arch = {k: list(v) if isinstance(v, tuple) else v for k, v in fixed.items()}
    return DartsNasForImageClassification(config), space


__all__ = ["Genotype", "GENOTYPES", "PRIMITIVES", "DartsSpace", "genotype_to_arch", "arch_to_genotype",
           "derive_genotype", "derive_arch", "build_eval_network", "build_supernet"]
