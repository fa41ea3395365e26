"""Latency lookup table: per-op forward times measured on this machine, per sequence length.

A subnet's latency is predicted as `overhead + sum of its ops' latencies`, where `overhead`
is the forward time of the model with no chain layers (embeddings, masks, Python dispatch)
and each op is timed alone as the layer module it is in the model. With `fit_archs` > 0 the
table also holds a fitted correction (`latency_model.py`: a ridge regression of what the sum
misses, e.g. each op's in-context cost, on whole subnets measured here) and predicts with it.
The table reports how good its prediction is: it measures a few random whole subnets (never
fit archs) and stores the prediction error next to the numbers.

Latency is of the backbone (`BertNasModel` without pooler or task head), eval mode, no_grad,
for `batch_size` sequences of `seq_len` tokens (default batch 1: a single request).

    bertnas search --checkpoint runs/toy --build-latency-table latency.json --seq-len 32
    bertnas search --checkpoint runs/toy --build-latency-table latency.json --latency-fit-archs 60
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bertnas.models import BertNasConfig, BertNasModel
from bertnas.models.modeling_bertnas import BertNasLayer
from bertnas.models.ops_bertnas import op_size_fields
from bertnas.search import latency_model
from bertnas.spaces import BertSpace

# 2: an optional "correction" (a fitted model over the plain sum); version 1 tables load unchanged.
FORMAT_VERSION = 2
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


def _table_problem(data) -> str | None:
    """What makes `data` unusable as a latency table (None when it is fine)."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    missing = [key for key in ("ops", "overhead_ms", "config") if key not in data]
    if missing:
        return f"it is not a bertnas latency table (the field {missing[0]!r} is missing)"
    version = data.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return (f"its format_version {version!r} is newer than this bertnas reads ({FORMAT_VERSION}); upgrade "
                "bertnas, or rebuild the table with this one")
    if not isinstance(data["overhead_ms"], dict) or not data["overhead_ms"] or not isinstance(data["ops"], dict):
        return "its 'overhead_ms' / 'ops' are not objects of {seq_len: ms}"
    for name, values in [("the overhead", data["overhead_ms"]), *((f"op {op}", v) for op, v in data["ops"].items())]:
        if not isinstance(values, dict) or not all(str(k).isdigit() and latency_model._finite(v)
                                                   for k, v in values.items()):
            return f"{name} is not an object of {{seq_len: ms}} with finite numbers"
    if data.get("correction") is not None:
        try:
            latency_model.check_correction(data["correction"])
        except ValueError as err:
            return str(err)
    return None


class LatencyTable:
    """A measured table (see the module doc). `data` is the JSON object it saves.

    `predict` is the table's prediction: the plain sum (`plain_predict`), plus the fitted
    correction when the table has one. `op_ms` / `overhead_ms` are the raw timings; `layer_ms`
    / `fixed_ms` / `pair_ms` are the predictor's parts (`predict` = fixed + sum layer_ms + sum
    pair_ms over adjacent layers), so budgets can be split over layers."""

    def __init__(self, data: dict):
        problem = _table_problem(data)
        if problem:
            raise ValueError(f"Not a usable bertnas latency table: {problem}")
        self.data = data
        self._parts = {}

    @property
    def ops(self) -> dict:
        return self.data["ops"]

    @property
    def seq_lens(self) -> list[int]:
        return sorted(int(k) for k in self.data["overhead_ms"])

    @property
    def correction(self) -> dict | None:
        """The fitted correction (`latency_model.py`), or None: the prediction is the plain sum."""
        return self.data.get("correction")

    @property
    def additive(self) -> bool:
        """True when the prediction is a sum of per-op costs (no adjacent-pair terms)."""
        terms = (self.correction or {}).get("terms", [])
        return not any(t == "transitions" or t.startswith("pair:") for t in terms)

    def op_ms(self, op: str, seq_len: int) -> float:
        if op not in self.ops:
            raise ValueError(f"The latency table has no entry for op {op!r} (it covers {sorted(self.ops)}); rebuild it "
                             "for this supernet with --build-latency-table")
        return _interpolate(self.ops[op], seq_len, f"op {op}")

    def overhead_ms(self, seq_len: int) -> float:
        return _interpolate(self.data["overhead_ms"], seq_len, "the fixed overhead")

    def plain_predict(self, arch, seq_len: int) -> float:
        """overhead + the sum of the ops' own latencies (the table without its correction)."""
        ops = arch.ops if hasattr(arch, "ops") else list(arch)
        return self.overhead_ms(seq_len) + sum(self.op_ms(op, seq_len) for op in ops)

    def _decomposed(self, seq_len: int):
        if seq_len not in self._parts:
            correction = self.correction
            if correction is None:
                coef, terms = [], []
            else:
                terms, by_len = correction["terms"], correction["coef"]
                coef = [_interpolate({n: v[j] for n, v in by_len.items()}, seq_len, "the correction")
                        for j in range(len(terms))]
            self._parts[seq_len] = latency_model.decompose(terms, coef, self.overhead_ms(seq_len),
                                                           lambda op: self.op_ms(op, seq_len))
        return self._parts[seq_len]

    def fixed_ms(self, seq_len: int) -> float:
        """The predictor's part that no layer choice changes (the overhead, corrected)."""
        return self._decomposed(seq_len)[0]

    def layer_ms(self, op: str, seq_len: int) -> float:
        """The predictor's cost of one layer running `op` (its in-context cost with a correction)."""
        return self._decomposed(seq_len)[1](op)

    def pair_ms(self, a: str, b: str, seq_len: int) -> float:
        """The predictor's extra cost of op `b` right after op `a` (0 without pair terms)."""
        return self._decomposed(seq_len)[2](a, b)

    def predict(self, arch, seq_len: int) -> float:
        """Predicted backbone latency (ms) of `arch` (an Arch or a list of op names)."""
        ops = arch.ops if hasattr(arch, "ops") else list(arch)
        if self.correction is None:
            return self.plain_predict(ops, seq_len)
        fixed, unary, pair = self._decomposed(seq_len)
        return fixed + sum(unary(op) for op in ops) + sum(pair(a, b) for a, b in itertools.pairwise(ops))

    def cheapest(self, choices, seq_len: int) -> list[str]:
        """The ops (one per layer, `choices`: each layer's candidates) of least predicted latency."""
        _, unary, pair = self._decomposed(seq_len)
        return latency_model.cheapest_chain([list(c) for c in choices], unary, pair)

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
        """Mean absolute % error of `predict` on the table's check archs (never fit archs)."""
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
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"Latency table {path} is not valid JSON ({err}); rebuild it with "
                             f"`bertnas search --checkpoint DIR --build-latency-table {path}`") from None
        problem = _table_problem(data)
        if problem:
            fix = "" if "upgrade bertnas" in problem else (
                f"; rebuild it with `bertnas search --checkpoint DIR --build-latency-table {path}`")
            raise ValueError(f"Latency table {path} cannot be used: {problem}{fix}")
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
    fit_archs: int = 0,
) -> LatencyTable:
    """Measure every candidate op of `config` (a `BertNasConfig`) at each seq len on this
    machine, the fixed overhead, and the prediction error on `check_archs` random subnets.

    `fit_archs` > 0: also measure that many other random subnets (each at every seq len) and
    fit the table's correction on them (`fit_correction`); the check archs then measure the
    corrected prediction, held out from the fit.

    `threads`: torch CPU threads while measuring (default: the current setting). On a machine
    shared with other jobs, 1 thread gives far steadier numbers than several."""
    if fit_archs < 0 or check_archs < 0:
        raise ValueError(f"fit_archs and check_archs must be >= 0, got {fit_archs} and {check_archs}")
    if fit_archs == 1:
        raise ValueError("fit_archs must be 0 (no correction) or >= 2 (the fit is validated leaving one arch out)")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _build(config, seq_lens, batch_size, device, check_archs, seed, repeats, progress, fit_archs)
    finally:
        torch.set_num_threads(previous)


def _build(config, seq_lens, batch_size, device, check_archs, seed, repeats, progress, fit_archs) -> LatencyTable:
    from tqdm.auto import tqdm

    config = copy.deepcopy(config)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    for n in seq_lens:
        if not 1 <= n <= config.max_position_embeddings:
            raise ValueError(f"seq len {n} is outside 1..max_position_embeddings={config.max_position_embeddings}")
    seq_lens = sorted({int(n) for n in seq_lens})
    if fit_archs and BertSpace(config).size() < fit_archs + check_archs:  # fail before any timing
        raise ValueError(f"The space has only {BertSpace(config).size()} archs, fewer than the {fit_archs} fit + "
                         f"{check_archs} check archs asked; ask for fewer")
    hidden = config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    ops, overhead = {}, {}
    steps = len(seq_lens) * (len(config.candidates) + 1 + fit_archs) + check_archs
    bar = tqdm(total=steps, desc="latency table", disable=not progress)
    with torch.no_grad():
        empty = _backbone(config, []).to(device).eval()
        for n in seq_lens:
            ids = torch.randint(5, config.vocab_size, (batch_size, n), generator=generator).to(device)
            x = torch.randn(batch_size, n, hidden, generator=generator).to(device)
            overhead[str(n)] = measure_ms(lambda: empty(ids), device, repeats)  # noqa: B023 (called at once)
            bar.update()
            for op in config.candidates:
                # the op inside its layer, called as the encoder calls it (dispatch included)
                layer = BertNasLayer(config, [op]).to(device).eval()
                ops.setdefault(op, {})[str(n)] = measure_ms(lambda: layer(x, op, None, None),  # noqa: B023
                                                            device, repeats)
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
    if fit_archs:
        fit_correction(table, config, fit_archs, check_archs, device=device, seed=seed, repeats=repeats, bar=bar)
    else:
        table.data["prediction_error"] = measure_prediction_error(
            table, config, check_archs, seq_lens, batch_size, device, seed, repeats, bar)
    bar.close()
    return table


def distinct_archs(space, n: int, seed: int) -> list:
    """`n` different uniform archs of `space`, in a seeded order."""
    if n > space.size():
        raise ValueError(f"The space has only {space.size()} archs, fewer than the {n} asked")
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out


def measure_arch_ms(config, ops: Sequence[str], seq_len: int, batch_size: int = 1, device: str = "cpu",
                    repeats: int | None = None, generator: torch.Generator | None = None) -> float:
    """Measured backbone latency (ms) of the subnet `ops`: the table's timing (`measure_ms`) of
    the stand-alone model holding only those ops, on random token ids."""
    config = copy.deepcopy(config)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    generator = generator or torch.Generator().manual_seed(0)
    with torch.no_grad():
        model = _backbone(config, list(ops)).to(device).eval()
        ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=generator).to(device)
        return measure_ms(lambda: model(ids), device, repeats)


def fit_correction(table: LatencyTable, config, fit_archs: int, check_archs: int = 5, device: str = "cpu",
                   seed: int = 0, repeats: int | None = None, bar=None,
                   models: Sequence[str] = latency_model.MODELS) -> LatencyTable:
    """Measure `fit_archs` + `check_archs` different random subnets on this machine (one seeded
    order, so drift of the machine's speed hits both sets alike), fit the table's correction on
    the fit archs at every seq len of the table (model and ridge alpha chosen by leave-one-out
    error, `latency_model.select_and_fit`), and store the error of the corrected and the plain
    prediction on the check archs (held out) as `prediction_error`. Updates `table` in place."""
    space = BertSpace(config)
    batch_size, seq_lens = int(table.data.get("batch_size", 1)), table.seq_lens
    archs = distinct_archs(space, fit_archs + check_archs, seed + 2)
    held_out = set(random.Random(seed + 3).sample(range(len(archs)), check_archs))
    generator = torch.Generator().manual_seed(seed + 1)
    fit, checks = {n: [] for n in seq_lens}, []
    for i, arch in enumerate(archs):
        ops = list(arch.ops)
        lens = [seq_lens[len(checks) % len(seq_lens)]] if i in held_out else seq_lens
        for n in lens:
            sample = {"arch": ops, "seq_len": n, "measured_ms": measure_arch_ms(config, ops, n, batch_size, device,
                                                                                  repeats, generator),
                      "plain_ms": table.plain_predict(ops, n)}
            (checks if i in held_out else fit[n]).append(sample)
            if bar is not None:
                bar.update()
    correction = latency_model.select_and_fit(fit, list(config.candidates), models=models)
    correction["fit"] = {"archs": [s for n in seq_lens for s in fit[n]], "seed": seed}
    table.data["correction"] = correction
    table.data["format_version"] = FORMAT_VERSION
    table._parts.clear()
    for sample in checks:
        sample["predicted_ms"] = table.predict(sample["arch"], sample["seq_len"])
        sample["abs_pct_error"] = 100.0 * abs(sample["predicted_ms"] - sample["measured_ms"]) / sample["measured_ms"]
    table.data["prediction_error"] = {**latency_model.error_summary(checks),
                                      "plain": latency_model.error_summary(checks, "plain_ms"),
                                      "predictor": correction["model"], "archs": checks}
    return table


def measure_prediction_error(table: LatencyTable, config, n_archs: int, seq_lens: Sequence[int], batch_size: int,
                             device: str, seed: int, repeats: int | None = None, bar=None) -> dict:
    """Real latency of `n_archs` random whole subnets against the table's prediction."""
    space = BertSpace(config)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    samples = []
    for i in range(n_archs):
        arch = space.sample(rng)
        n = seq_lens[i % len(seq_lens)]
        measured = measure_arch_ms(config, arch.ops, n, batch_size, device, repeats, generator)
        samples.append({"arch": list(arch.ops), "seq_len": n, "measured_ms": measured,
                        "predicted_ms": table.predict(arch, n), "plain_ms": table.plain_predict(arch, n)})
        samples[-1]["abs_pct_error"] = 100.0 * abs(samples[-1]["predicted_ms"] - measured) / measured
        if bar is not None:
            bar.update()
    summary = latency_model.error_summary(samples)
    return {**summary, "predictor": (table.correction or {}).get("model", "sum"), "archs": samples}


__all__ = ["FORMAT_VERSION", "LatencyTable", "build_latency_table", "distinct_archs", "fit_correction",
           "machine_info", "measure_arch_ms", "measure_ms", "measure_prediction_error", "shape_fields"]
