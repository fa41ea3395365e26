"""The NAS-Bench-201 cell space and its benchmark table.

`Nb201Space`: 6 edges (`edge_1_0`, `edge_2_0`, `edge_2_1`, `edge_3_0`, `edge_3_1`, `edge_3_2`,
the order of the NB201 arch string), each one of 5 ops: 5^6 = 15,625 archs. Arch strings:
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`
(node 1 | node 2 | node 3; `op~i` = the op on the edge from node i). Parameter and FLOP counts
of the NB201 network (`bertnas/models/modeling_nb201.py`) are analytic: no model is built.

`Nb201Benchmark`: every arch's real 200-epoch test accuracy (mean over seeds) on CIFAR-10,
CIFAR-100 and ImageNet16-120, from `nats_bench_tss_test_acc_200ep.csv` (row i = NB201 index i);
and an arch's rank among all 15,625.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from bertnas.models.configuration_nb201 import NB201_EDGES, NB201_OPS
from bertnas.spaces.base import Arch, SearchSpace

CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # ops with a ReLU-conv-BN; the others hold no weights


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Nb201Space(SearchSpace):
    """The NB201 cell space of a network with `init_channels` C, `cells_per_stage` N, `num_classes`
    outputs on `image_size` inputs (NB201: C=16, N=5, CIFAR 32x32). With `arch` (a fixed-arch
    model's) each edge holds only its op: the space is that one arch."""

    channel_edges = True

    def __init__(self, init_channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 image_size: int = 32, candidates=NB201_OPS, arch=None, bn_affine: bool = True,
                 num_channels: int = 3):
        self.init_channels, self.cells_per_stage = init_channels, cells_per_stage
        self.num_classes, self.image_size, self.bn_affine = num_classes, image_size, bn_affine
        self.num_channels = num_channels
        if arch is not None:
            per_edge = {label: (op,) for label, op in zip(NB201_EDGES, self._ops_of(arch))}
        else:
            per_edge = {label: tuple(candidates) for label in NB201_EDGES}
        super().__init__(per_edge)

    @classmethod
    def from_config(cls, config) -> Nb201Space:
        """The space of an `Nb201Config` (supernet or fixed arch)."""
        return cls(config.init_channels, config.cells_per_stage, config.num_labels, config.image_size,
                   config.candidates, config.arch, config.bn_affine, config.num_channels)

    # -- arch strings -----------------------------------------------------------------------
    @staticmethod
    def _ops_of(value) -> list[str]:
        if isinstance(value, str) and value.strip().startswith("|"):
            return list(Nb201Space.parse_string(value))
        if hasattr(value, "ops"):
            return list(value.ops)
        if isinstance(value, dict):
            return [value[label] for label in NB201_EDGES]
        return list(value)

    @staticmethod
    def parse_string(text: str) -> tuple[str, ...]:
        """The six ops (edge order) of an NB201 arch string; ValueError naming what is wrong."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise ValueError(f"NB201 arch string {text!r} must have 3 nodes joined by '+', got {len(nodes)}")
        ops = []
        for j, node in enumerate(nodes, start=1):
            node = node.strip()
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"NB201 arch string {text!r}: node {j} {node!r} must be written |op~i|...|")
            entries = node[1:-1].split("|")
            if len(entries) != j:
                raise ValueError(f"NB201 arch string {text!r}: node {j} has {len(entries)} inputs, needs {j}")
            for i, entry in enumerate(entries):
                op, sep, src = entry.partition("~")
                if not sep or src != str(i):
                    raise ValueError(f"NB201 arch string {text!r}: node {j} entry {entry!r} must read op~{i}")
                if op not in NB201_OPS:
                    raise ValueError(f"NB201 arch string {text!r}: unknown op {op!r}; ops: {', '.join(NB201_OPS)}")
                ops.append(op)
        return tuple(ops)

    def from_string(self, text: str) -> Arch:
        """The `Arch` of an NB201 arch string (validated against this space)."""
        return self.arch(list(self.parse_string(text)))

    def to_string(self, arch) -> str:
        """The NB201 arch string of `arch` (an Arch, a list in edge order, or a string)."""
        ops = self.arch(self._ops_of(arch)).ops
        return to_string(ops)

    def arch(self, value) -> Arch:
        if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
            value = value[0]  # `--arch '|op~0|+...'` arrives as a one-item list
        if isinstance(value, str) and value.strip().startswith("|"):
            value = list(self.parse_string(value))
        return super().arch(value)

    # -- cost model -------------------------------------------------------------------------
    def _stages(self):
        """[(channels, resolution of the cells)] of the three stages, and the reduction blocks'
        (c_in, c_out, resolution in, resolution out)."""
        c, size = self.init_channels, self.image_size
        stages, reductions = [(c, size)], []
        for channels in (2 * c, 4 * c):
            prev_c, prev_size = stages[-1]
            out = _conv_out(prev_size, 3, 2, 1)
            reductions.append((prev_c, channels, prev_size, out))
            stages.append((channels, out))
        return stages, reductions

    def _conv_bn_params(self, c_in: int, c_out: int, kernel: int) -> int:
        return c_in * c_out * kernel * kernel + (2 * c_out if self.bn_affine else 0)

    def params(self, arch) -> int:
        """Exact parameters of the NB201 network on `arch` (stem, cells, reductions, classifier)."""
        ops = self.arch(self._ops_of(arch)).ops
        stages, reductions = self._stages()
        bn = 2 if self.bn_affine else 0
        total = self.num_channels * self.init_channels * 9 + bn * self.init_channels  # stem
        for channels, _ in stages:
            per_cell = sum(self._conv_bn_params(channels, channels, CONV_KERNELS[op]) for op in ops if op in CONV_KERNELS)
            total += self.cells_per_stage * per_cell
        for c_in, c_out, _, _ in reductions:
            total += self._conv_bn_params(c_in, c_out, 3) + self._conv_bn_params(c_out, c_out, 3) + c_in * c_out
        last = stages[-1][0]
        return total + bn * last + last * self.num_classes + self.num_classes

    def flops(self, arch, seq_len: int | None = None) -> int:
        """FLOPs (2 x multiply-adds of convolutions and the classifier, as torch's FLOP counter
        counts them; BatchNorm, ReLU, pooling and sums not counted) of one `image_size` image.
        `seq_len` is ignored (the search's generic cost call passes one)."""
        ops = self.arch(self._ops_of(arch)).ops
        stages, reductions = self._stages()
        s = self.image_size
        total = 2 * self.num_channels * self.init_channels * 9 * s * s
        for channels, size in stages:
            per_cell = sum(2 * channels * channels * CONV_KERNELS[op] ** 2 * size * size
                           for op in ops if op in CONV_KERNELS)
            total += self.cells_per_stage * per_cell
        for c_in, c_out, _, out in reductions:
            total += 2 * out * out * (c_in * c_out * 9 + c_out * c_out * 9 + c_in * c_out)
        return total + 2 * stages[-1][0] * self.num_classes

    # -- isomorphism ------------------------------------------------------------------------
    def canonical(self, arch) -> tuple:
        """A value equal for archs whose cells compute the same function in the benchmark's
        networks: each node is the multiset of its incoming terms, sums flattened (they are
        associative and commutative), a skip connection passes its input's terms through, `none`
        adds nothing, pooling an empty (zero) node gives zero, while a convolution of a zero node
        is not zero (it outputs its BatchNorm's bias) and stays a term. The 15,625 archs fall into
        5,545 classes. NB201 reports 6,466 with a rule that does not flatten sums."""
        ops = list(arch.ops) if isinstance(arch, Arch) else self._ops_of(arch)
        nodes: dict[int, tuple] = {0: ("x",)}
        for target in (1, 2, 3):
            terms: list = []
            for label, op in zip(NB201_EDGES, ops):
                dst, src = (int(k) for k in label.split("_")[1:])
                if dst != target or op == "none" or (op == "avg_pool_3x3" and not nodes[src]):
                    continue
                if op == "skip_connect":
                    terms.extend(nodes[src])
                else:
                    terms.append((op, nodes[src]))
            nodes[target] = tuple(sorted(terms, key=repr))
        return nodes[3]

    def isomorphism_classes(self) -> dict[tuple, list[Arch]]:
        """canonical value -> the archs of the space in that class (enumeration order; the first
        is the class's representative). Computed once per space."""
        if getattr(self, "_classes", None) is None:
            classes: dict[str, list[Arch]] = {}
            for arch in self.enumerate():
                classes.setdefault(self.canonical(arch), []).append(arch)
            self._classes = classes
        return self._classes

    def representative(self, arch) -> Arch:
        """The arch that stands for `arch`'s isomorphism class (scored in its place)."""
        return self.isomorphism_classes()[self.canonical(arch)][0]

    def representatives(self) -> list[Arch]:
        """One arch per isomorphism class, in enumeration order."""
        return [members[0] for members in self.isomorphism_classes().values()]


def to_string(ops) -> str:
    """Six ops in edge order -> `|a~0|+|b~0|c~1|+|d~0|e~1|f~2|`."""
    ops = list(ops)
    if len(ops) != len(NB201_EDGES):
        raise ValueError(f"an NB201 arch has {len(NB201_EDGES)} ops, got {ops}")
    nodes, k = [], 0
    for j in range(1, 4):
        nodes.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(nodes)


# ----------------------------------------------------------------------------------------
# Benchmark table
# ----------------------------------------------------------------------------------------

BENCHMARK_ENV = "BERTNAS_NASBENCH201_CSV"
BENCHMARK_FILE = "nats_bench_tss_test_acc_200ep.csv"
DATASETS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
            "imagenet16-120": "ImageNetTestAccuracy200Epochs"}


def default_benchmark_path() -> Path:
    """$BERTNAS_NASBENCH201_CSV, else $BERTNAS_DATA_DIR/nasbench/<file>, else ../shared/data/nasbench/<file>."""
    if os.environ.get(BENCHMARK_ENV):
        return Path(os.environ[BENCHMARK_ENV])
    repo = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("BERTNAS_DATA_DIR", repo.parent / "shared" / "data"))
    return data / "nasbench" / BENCHMARK_FILE


class Nb201Benchmark:
    """Real NB201 results of every arch: `lookup(arch)` -> {"index", "cifar10", "cifar100",
    "imagenet16-120"} (test accuracy in %, 200 epochs, mean over seeds); `rank(arch, dataset)`
    -> 1 for the best of the 15,625 (1 + the number of archs with a strictly higher accuracy).
    `arch`: an NB201 string, a list of six ops in edge order, or an `Arch`."""

    _cache: dict = {}

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_benchmark_path()
        key = str(self.path.resolve()) if self.path.exists() else str(self.path)
        if key not in self._cache:
            self._cache[key] = self._read(self.path)
        self.rows, self.by_string = self._cache[key]
        self._sorted: dict[str, list[float]] = {}

    @staticmethod
    def _read(path: Path):
        if not path.is_file():
            raise FileNotFoundError(
                f"NAS-Bench-201 table {path} does not exist: pass its path, or set {BENCHMARK_ENV} "
                f"(or BERTNAS_DATA_DIR holding nasbench/{BENCHMARK_FILE})")
        rows, by_string = [], {}
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in (*DATASETS.values(), "ArchitectureString") if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path} lacks the columns {missing} (expected the NATS-Bench tss table)")
            for index, row in enumerate(reader):
                entry = {"index": index, **{name: float(row[col]) for name, col in DATASETS.items()}}
                by_string[row["ArchitectureString"].strip()] = len(rows)
                rows.append(entry)
        return rows, by_string

    def __len__(self) -> int:
        return len(self.rows)

    def _key(self, arch) -> str:
        if isinstance(arch, str) and arch.strip().startswith("|"):
            return to_string(Nb201Space.parse_string(arch))
        return to_string(Nb201Space._ops_of(arch))

    def lookup(self, arch) -> dict:
        key = self._key(arch)
        if key not in self.by_string:
            raise KeyError(f"arch {key} is not in the NB201 table {self.path}")
        return dict(self.rows[self.by_string[key]])

    def accuracy(self, arch, dataset: str = "cifar10") -> float:
        return self.lookup(arch)[self._dataset(dataset)]

    def _dataset(self, dataset: str) -> str:
        if dataset not in DATASETS:
            raise ValueError(f"unknown NB201 dataset {dataset!r}; datasets: {', '.join(DATASETS)}")
        return dataset

    def rank(self, arch, dataset: str = "cifar10") -> int:
        import bisect

        dataset = self._dataset(dataset)
        if dataset not in self._sorted:
            self._sorted[dataset] = sorted(r[dataset] for r in self.rows)
        values = self._sorted[dataset]
        acc = self.accuracy(arch, dataset)
        return len(values) - bisect.bisect_right(values, acc) + 1

    def best(self, dataset: str = "cifar10") -> tuple[str, float]:
        """(arch string, accuracy) of the best arch on `dataset`."""
        dataset = self._dataset(dataset)
        strings = {i: s for s, i in self.by_string.items()}
        i = max(range(len(self.rows)), key=lambda k: self.rows[k][dataset])
        return strings[i], self.rows[i][dataset]


__all__ = ["Nb201Space", "Nb201Benchmark", "to_string", "default_benchmark_path", "BENCHMARK_ENV", "DATASETS"]
