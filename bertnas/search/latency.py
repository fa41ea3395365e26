"""Latency lookup table: per-op forward times measured on this machine, per sequence length.

A subnet's latency is predicted as `overhead + sum of its ops' latencies`, where `overhead`
is the forward time of the model with no chain layers (embeddings, masks, Python dispatch)
and each op is timed alone as the layer module it is in the model. The table reports how good
that prediction is: it measures a few random whole subnets and stores the mean absolute
percentage error of the prediction next to the numbers.

Latency is of the backbone (`BertNasModel` without pooler or task head), eval mode, no_grad,
for `batch_size` sequences of `seq_len` tokens (default batch 1: a single request).

    bertnas search --checkpoint runs/toy --build-latency-table latency.json --seq-len 32
"""

from __future__ import annotations

import copy
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bertnas.models import BertNasConfig, BertNasModel
from bertnas.models.modeling_bertnas import BertNasLayer
from bertnas.models.ops_bertnas import op_size_fields
from bertnas.spaces import BertSpace

FORMAT_VERSION = 1
# The config fields that change the cost of the parts around the chain; those of the ops come from
# the op registry (`op_size_fields`). A table is valid only for supernets that match in all of them.
BACKBONE_FIELDS = ("hidden_size", "vocab_size", "max_position_embeddings")
# The fields of the default op kinds (kept for tables' readers; `shape_fields(config)` is exact).
SHAPE_FIELDS = ("hidden_size", "intermediate_size", "ffn_wide_size", "vocab_size", "max_position_embeddings")
# Timing: the fastest of REPEATS rounds, each at least MIN_TIME_S long. The fastest round is
# the op's own cost; slower rounds measure interference from other processes (timeit's advice).
REPEATS = 7
MIN_TIME_S = 0.02


def shape_fields(config) -> tuple:
    """The config fields a latency table of `config`'s candidates depends on: the backbone's and,
    from the op registry, those of every candidate op kind."""
    ops_fields = op_size_fields(config.candidates)
    return BACKBONE_FIELDS + tuple(f for f in ops_fields if f not in BACKBONE_FIELDS)


def machine_info(device: str = "cpu") -> dict:
    info = {
        "node": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def device_sync(device) -> Callable[[], None]:
    """Waits for the work queued on `device` itself: `torch.cuda.synchronize()` with no argument
    waits for the *current* device, which with `--device cuda:1` is another GPU (the timing would
    stop before the measured kernels finish)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure_ms(fn: Callable[[], object], device: str = "cpu", repeats: int | None = None,
               min_time_s: float | None = None) -> float:
    """Milliseconds per call of `fn`: the fastest of `repeats` rounds. Each round runs `fn` enough
    times to last at least `min_time_s` (short ops are timed in bulk, as timeit does)."""
    repeats = repeats or REPEATS
    min_time_s = MIN_TIME_S if min_time_s is None else min_time_s
    sync = device_sync(device)
    for _ in range(2):  # warm-up: allocator, kernels, caches
        fn()
    sync()
    number = 1
    while True:  # how many calls make one round long enough to time
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time_s or number >= 1024:
            break
        number *= 2
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        rounds.append((time.perf_counter() - start) / number)
    return 1000.0 * min(rounds)


def _interpolate(values: dict, seq_len: int, what: str) -> float:
    """The value at `seq_len` (keys are seq lens as strings): exact, or linear between the two
    nearest measured lengths."""
    if str(seq_len) in values:
        return float(values[str(seq_len)])
    lengths = sorted(int(k) for k in values)
    if not lengths or not lengths[0] <= seq_len <= lengths[-1]:
        raise ValueError(
            f"The latency table has {what} for seq lens {lengths}, not {seq_len}; rebuild it with "
            f"--seq-len {seq_len} (or a range of lengths around it)"
        )
    hi = next(n for n in lengths if n > seq_len)
    lo = max(n for n in lengths if n < seq_len)
    w = (seq_len - lo) / (hi - lo)
    return (1 - w) * float(values[str(lo)]) + w * float(values[str(hi)])


class LatencyTable:
    """A measured table (see the module doc). `data` is the JSON object it saves."""

    def __init__(self, data: dict):
        for key in ("ops", "overhead_ms", "config"):
            if key not in data:
                raise ValueError(f"Not a bertnas latency table: the field {key!r} is missing")
        self.data = data

    @property
    def ops(self) -> dict:
        return self.data["ops"]

    @property
    def seq_lens(self) -> list[int]:
        return sorted(int(k) for k in self.data["overhead_ms"])

    def op_ms(self, op: str, seq_len: int) -> float:
        if op not in self.ops:
            raise ValueError(f"The latency table has no entry for op {op!r} (it covers {sorted(self.ops)}); rebuild it "
                             "for this supernet with --build-latency-table")
        return _interpolate(self.ops[op], seq_len, f"op {op}")

    def overhead_ms(self, seq_len: int) -> float:
        return _interpolate(self.data["overhead_ms"], seq_len, "the fixed overhead")

    def predict(self, arch, seq_len: int) -> float:
        """Predicted backbone latency (ms) of `arch` (an Arch or a list of op names)."""
        ops = arch.ops if hasattr(arch, "ops") else list(arch)
        return self.overhead_ms(seq_len) + sum(self.op_ms(op, seq_len) for op in ops)

    def check_config(self, config) -> None:
        """Raise ValueError when the table was measured for ops of other sizes than `config`'s."""
        stored = self.data["config"]
        wrong = [f"{k}: table {stored.get(k)!r} vs supernet {getattr(config, k, None)!r}"
                 for k in shape_fields(config) if k in stored and stored.get(k) != getattr(config, k, None)]
        missing = [op for op in config.candidates if op not in self.ops]
        if wrong or missing:
            raise ValueError(
                "The latency table was built for another supernet ("
                + "; ".join(wrong + ([f"no entry for ops {missing}"] if missing else []))
                + "); rebuild it with `bertnas search --checkpoint DIR --build-latency-table OUT.json`"
            )

    @property
    def mean_abs_pct_error(self) -> float | None:
        return (self.data.get("prediction_error") or {}).get("mean_abs_pct_error")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Latency table {path} does not exist; build it with "
                                    f"`bertnas search --checkpoint DIR --build-latency-table {path}`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        return cls(data)


def _backbone(config, arch: Sequence[str]):
    fields = config.to_dict()
    for key in ("architectures", "auto_map", "transformers_version", "model_type", "_name_or_path"):
        fields.pop(key, None)
    fields.update(num_hidden_layers=len(arch), arch=list(arch), candidates=sorted(set(arch)) or list(config.candidates))
    return BertNasModel(BertNasConfig(**fields), add_pooling_layer=False)


def build_latency_table(
    config,
    seq_lens: Sequence[int] = (128,),
    batch_size: int = 1,
    device: str = "cpu",
    check_archs: int = 5,
    seed: int = 0,
    repeats: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> LatencyTable:
    """Measure every candidate op of `config` (a `BertNasConfig`) at each seq len on this
    machine, the fixed overhead, and the prediction error on `check_archs` random subnets.

    `threads`: torch CPU threads while measuring (default: the current setting). On a machine
    shared with other jobs, 1 thread gives far steadier numbers than several."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _build(config, seq_lens, batch_size, device, check_archs, seed, repeats, progress)
    finally:
        torch.set_num_threads(previous)


def _build(config, seq_lens, batch_size, device, check_archs, seed, repeats, progress) -> LatencyTable:
    from tqdm.auto import tqdm


    config = copy.deepcopy(config)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    for n in seq_lens:
        if not 1 <= n <= config.max_position_embeddings:
            raise ValueError(f"seq len {n} is outside 1..max_position_embeddings={config.max_position_embeddings}")
    seq_lens = sorted(set(int(n) for n in seq_lens))
    hidden = config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    ops, overhead = {}, {}
    steps = len(seq_lens) * (len(config.candidates) + 1) + check_archs
    bar = tqdm(total=steps, desc="latency table", disable=not progress)
    with torch.no_grad():
        empty = _backbone(config, []).to(device).eval()
        for n in seq_lens:
            ids = torch.randint(5, config.vocab_size, (batch_size, n), generator=generator).to(device)
            x = torch.randn(batch_size, n, hidden, generator=generator).to(device)
            overhead[str(n)] = measure_ms(lambda: empty(ids), device, repeats)
            bar.update()
            for op in config.candidates:
                # the op inside its layer, called as the encoder calls it (dispatch included)
                layer = BertNasLayer(config, [op]).to(device).eval()
                ops.setdefault(op, {})[str(n)] = measure_ms(lambda: layer(x, op, None, None), device, repeats)
                bar.update()
    table = LatencyTable({
        "format_version": FORMAT_VERSION,
        "unit": "ms",
        "what": "backbone forward (BertNasModel, eval, no_grad), per batch of batch_size sequences",
        "batch_size": batch_size,
        "seq_lens": seq_lens,
        "machine": machine_info(device),
        "config": {k: getattr(config, k) for k in shape_fields(config)} | {"candidates": list(config.candidates),
                                                                  "num_hidden_layers": config.num_hidden_layers},
        "overhead_ms": overhead,
        "ops": ops,
    })
    table.data["prediction_error"] = measure_prediction_error(
        table, config, check_archs, seq_lens, batch_size, device, seed, repeats, bar)
    bar.close()
    return table


def measure_prediction_error(table: LatencyTable, config, n_archs: int, seq_lens: Sequence[int], batch_size: int,
                             device: str, seed: int, repeats: int | None = None, bar=None) -> dict:
    """Real latency of `n_archs` random whole subnets against the table's prediction."""
    space = BertSpace(config)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    samples = []
    with torch.no_grad():
        for i in range(n_archs):
            arch = space.sample(rng)
            n = seq_lens[i % len(seq_lens)]
            model = _backbone(config, arch.ops).to(device).eval()
            ids = torch.randint(5, config.vocab_size, (batch_size, n), generator=generator).to(device)
            measured = measure_ms(lambda: model(ids), device, repeats)
            predicted = table.predict(arch, n)
            samples.append({"arch": list(arch.ops), "seq_len": n, "measured_ms": measured, "predicted_ms": predicted,
                            "abs_pct_error": 100.0 * abs(predicted - measured) / measured})
            if bar is not None:
                bar.update()
    errors = [s["abs_pct_error"] for s in samples]
    return {"mean_abs_pct_error": statistics.fmean(errors) if errors else None,
            "max_abs_pct_error": max(errors) if errors else None, "archs": samples}


__all__ = ["LatencyTable", "build_latency_table", "measure_ms", "measure_prediction_error", "machine_info",
           "shape_fields"]
