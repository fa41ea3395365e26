"""Cost of supernet pre-training steps. Not a test.

  magic_vs_spos   one process: step time of MAGIC-A (walk + alignment to a base subnet: one
                  extra no-grad forward of the base, in train mode with the student's dropout
                  masks, `Aligner.shared_randomness`) / SPOS (uniform, no alignment), on the SAME
                  sequence of subnets, so only the alignment differs. Target <= 1.35. Two more
                  ratios in the same alternation isolate where the time goes: the same pair at
                  dropout 0 (shared masks cost nothing to draw, and CPU attention takes its
                  no-dropout kernel) and MAGIC-A with the base in eval mode (the earlier
                  design: no shared masks, no dropout in the base).
  two_rank        two gloo ranks (torchrun, 1 thread each): the supernet's step (no DDP wrapper;
                  the active path's gradients all-reduced in one flat bucket) / DDP of the static
                  model cut from the same path (`extract`). Target <= 1.05. For reference also
                  DDP(supernet, find_unused_parameters=True), which all-reduces every candidate,
                  and the step preceded by the training loop's per-step arch-hash check
                  (`assert_same_arch`: one all-gather of an int64), plus that check timed alone.
  deepspeed       one process, DeepSpeed ZeRO-2 through accelerate's plugin (DS_ACCELERATOR=cpu):
                  the trainer's step with one optimizer group per candidate, gated per step
                  (`gate_param_groups`: lr 0 / no decay off the path) / the same step
                  with the plain 2 groups, ungated (what drifted). `--skip-deepspeed` leaves it out.
  tokens_per_s    one process: uniform, walk, walk+align, each with its own sampler.
  memory          resident memory that building and training the supernet (and with alignment)
                  adds above a fresh process with its data loaded, vs the static model of the
                  same path (the kernel's peak RSS, VmHWM reset at the start; each variant in a
                  fresh process, 3 times). Target: supernet / static <= 1.10. Also the floor no
                  supernet can go below: static + its idle candidates' fp32 weights.

Every step is `SupernetTrainer._train_step` (the training loop's own step: micro-batch forward,
backward, gradient sync, clipping, AdamW, scheduler). Alignment is on from step 0 (the trainer's
default start/ramp are a share of max_steps). Timings alternate between the compared variants
round by round (which goes first rotates too); ratios are medians of per-round ratios with
[min, max].

    .venv/bin/python bench/bench_pretrain.py           # 4 chain layers x hidden 240; writes bench/results/pretrain.{json,md}
    .venv/bin/python bench/bench_pretrain.py --quick   # tiny sanity run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

TARGETS = {"magic_vs_spos": 1.35, "two_rank_vs_ddp_static": 1.05, "memory_supernet_vs_static": 1.10}
CANDIDATES = ["mha6", "mha8", "mha12", "ffn", "ffn_wide", "conv3", "conv5"]
FULL = dict(layers=4, hidden=240, intermediate=960, seq=128, batch=8, vocab=2000,
            rounds=8, steps=3, warmup=2, two_rank_rounds=8, memory_steps=3, memory_repeats=3, check_calls=200, ds_rounds=8)
QUICK = dict(layers=2, hidden=48, intermediate=96, seq=32, batch=4, vocab=500,
             rounds=3, steps=2, warmup=1, two_rank_rounds=3, memory_steps=2, memory_repeats=1, check_calls=20, ds_rounds=3)
BASE_ARCH = ["mha12", "ffn"]  # repeated: the BERT path, MAGIC-A's usual base
FIXED_ARCH = ["mha12", "ffn", "conv5", "ffn_wide"]  # the path of the two-rank comparison


def bench_config(dims: dict, out: str, dropout: float = 0.1, **overrides):
    from bertnas.train.config import load_config

    layers = dims["layers"]
    options = dict(
        output_dir=out, progress=False, max_steps=10**6, save_steps=0, seed=0,
        model=dict(num_hidden_layers=layers, hidden_size=dims["hidden"], intermediate_size=dims["intermediate"],
                   ffn_wide_size=dims["intermediate"] * 3 // 2, max_position_embeddings=max(512, dims["seq"]),
                   candidates=CANDIDATES, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout),
        seq_len=dims["seq"], batch_size=dims["batch"], tokenizer_vocab_size=dims["vocab"], task="mlm",
        sampler="uniform", align=False, base_arch=(BASE_ARCH * layers)[:layers], base_replacement="none",
        align_block_size=2, warmup_steps=10, lr=1e-4,
        align_start=0, align_ramp=0,  # the defaults (10 % / 5 % of max_steps) would keep alignment off here
    )
    options.update(overrides)
    return load_config(options)


def arch_of(space, ops):
    return space.arch((list(ops) * len(space.choices))[: len(space.choices)])


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ratio_stats(ratios):
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


# ----------------------------------------------------------------------------------------
# One process: MAGIC-A vs SPOS, tokens/s
# ----------------------------------------------------------------------------------------


def bench_single(dims: dict, tmp: str, magic_only: bool = False) -> dict:
    from bertnas.pipelines.pretrain import build_trainer as SupernetTrainer

    def make(name, **overrides):
        return SupernetTrainer(bench_config(dims, f"{tmp}/{name}", **overrides))

    trainers = {
        "uniform": make("u", sampler="uniform", align=False),
        "walk": make("w", sampler="walk", align=False),
        "walk+align": make("wa", sampler="walk", align=True),
    }
    # Where MAGIC-A's time goes: the same pair without dropout, and the base in eval mode.
    spos_p0 = make("u0", sampler="uniform", align=False, dropout=0.0)
    magic_p0 = make("wa0", sampler="walk", align=True, dropout=0.0)
    magic_eval = make("wae", sampler="walk", align=True)
    # outside shared_randomness the aligner runs the base in eval mode (and warns once)
    magic_eval._shared_randomness = lambda aligning, micro: contextlib.nullcontext()
    # Before issue 24: the base's forward runs whole (embeddings and every layer), not from the
    # first layer where its path differs from the student's.
    magic_whole = make("waw", sampler="walk", align=True)
    magic_whole.aligner.reuse_prefix = False
    variants = {"spos": trainers["uniform"], "magic": trainers["walk+align"], "magic_whole_base": magic_whole,
                "spos_p0": spos_p0, "magic_p0": magic_p0, "magic_eval_base": magic_eval}
    space = trainers["uniform"].space
    rng = random.Random(1)
    extra = [spos_p0, magic_p0, magic_eval, magic_whole]
    for t in [*trainers.values(), *extra]:  # warm-up
        for _ in range(dims["warmup"]):
            t._train_step(space.sample(rng))

    # All on identical subnets, alternating: within a pair only the alignment differs.
    pairs = {"magic_vs_spos": ("magic", "spos"), "magic_vs_spos_dropout0": ("magic_p0", "spos_p0"),
             "magic_eval_base_vs_spos": ("magic_eval_base", "spos"),
             "magic_whole_base_vs_spos": ("magic_whole_base", "spos"), "magic_vs_magic_whole_base": ("magic", "magic_whole_base")}
    per_round = {name: [] for name in pairs}
    times = {name: [] for name in variants}
    every = {name: [] for name in variants}  # all step times: the best (min) resists contention
    names = list(variants)
    load_avgs = []
    for r in range(dims["rounds"]):
        load_avgs.append(os.getloadavg()[0])
        archs = [space.sample(rng) for _ in range(dims["steps"])]
        k = r % len(names)
        order = names[k:] + names[:k]
        if r % 2:
            order.reverse()
        round_times = {}
        for name in order:
            t = variants[name]
            step_times = [timed(lambda a=a: t._train_step(a)) for a in archs]
            every[name].extend(step_times)
            round_times[name] = statistics.median(step_times)
            times[name].append(round_times[name])
        for pair, (a, b) in pairs.items():
            per_round[pair].append(round_times[a] / round_times[b])
    step_ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    result = {
        "magic_vs_spos": {
            "spos_step_ms": step_ms["spos"],
            "magic_step_ms": step_ms["magic"],
            "ratio": ratio_stats(per_round["magic_vs_spos"]),
            "target": TARGETS["magic_vs_spos"],
            "step_ms": step_ms,
            "ratio_dropout0": ratio_stats(per_round["magic_vs_spos_dropout0"]),
            "ratio_eval_base": ratio_stats(per_round["magic_eval_base_vs_spos"]),
            # the same alternation: MAGIC-A with the base's forward run whole (before issue 24) / SPOS,
            # and the new MAGIC-A step / that one
            "ratio_whole_base": ratio_stats(per_round["magic_whole_base_vs_spos"]),
            "ratio_new_vs_whole_base": ratio_stats(per_round["magic_vs_magic_whole_base"]),
            "load_avg_1min": load_avgs,
            "best_step_ms": {name: 1000 * min(v) for name, v in every.items()},
            "ratio_of_best": {pair: min(every[a]) / min(every[b]) for pair, (a, b) in pairs.items()},
            "rounds": dims["rounds"], "steps_per_round": dims["steps"],
        }
    }

    if magic_only:
        for t in [*trainers.values(), *extra]:
            t.close()
        return result
    # tokens/s with each variant's own sampler, alternating.
    tokens = {name: [0, 0.0] for name in trainers}
    for r in range(dims["rounds"]):
        names = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for name in names:
            t = trainers[name]
            for _ in range(dims["steps"]):
                arch = t.policy.choose(t.step)
                t0 = time.perf_counter()
                record = t._train_step(arch)
                tokens[name][1] += time.perf_counter() - t0
                tokens[name][0] += record["tokens"]
    result["tokens_per_s"] = {name: n / s for name, (n, s) in tokens.items()}
    for t in [*trainers.values(), *extra]:
        t.close()
    return result


# ----------------------------------------------------------------------------------------
# Two ranks: supernet (active-path all-reduce) vs DDP static / DDP supernet
# ----------------------------------------------------------------------------------------


def two_rank_worker(dims: dict, out_json: str, tmp: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bertnas.supernet.sampling import assert_same_arch
    from bertnas.tasks.objectives import MLMObjective
    from bertnas.train.optim import param_groups
    from bertnas.pipelines.pretrain import build_trainer as SupernetTrainer

    trainer = SupernetTrainer(bench_config(dims, f"{tmp}/r", sampler="uniform", align=False))
    cfg, rank = trainer.cfg, trainer.rank
    arch = arch_of(trainer.space, FIXED_ARCH)

    def plain_step(ddp_model, module, optimizer, objective, generator):
        batch = {k: v.to(trainer.device) for k, v in trainer.stream.next().items()}
        loss = objective.compute(batch, arch, generator).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def make_ddp(module, find_unused):
        ddp = DDP(module, find_unused_parameters=find_unused)
        opt = torch.optim.AdamW(param_groups(module, cfg.weight_decay), lr=cfg.lr)
        # the objective calls the wrapped model, so DDP's forward (and its hooks) run
        objective = MLMObjective(ddp, trainer.task.tokenizer, cfg.mlm_probability)
        g = torch.Generator().manual_seed(100 + rank)
        return lambda: plain_step(ddp, module, opt, objective, g)

    static = trainer.model.extract(arch)
    supernet_copy = type(trainer.model)(trainer.model.config)
    supernet_copy.load_state_dict(trainer.model.state_dict())
    def checked_step():  # what `SupernetTrainer.train` runs per step on > 1 rank
        assert_same_arch(arch, trainer.accelerator)
        return trainer._train_step(arch)

    variants = {
        "supernet": lambda: trainer._train_step(arch),
        "supernet_arch_check": checked_step,
        "ddp_static": make_ddp(static, find_unused=False),
        "ddp_supernet_find_unused": make_ddp(supernet_copy, find_unused=True),
    }
    for fn in variants.values():
        for _ in range(dims["warmup"]):
            fn()
    times = {name: [] for name in variants}
    ratios = {"ddp_static": [], "ddp_supernet_find_unused": []}
    check_ratios = []
    names_all = list(variants)
    for r in range(dims["two_rank_rounds"]):
        k = r % len(names_all)
        names = names_all[k:] + names_all[:k]
        if r % 2:
            names.reverse()
        this = {}
        for name in names:
            dist.barrier()
            step_times = [timed(variants[name]) for _ in range(dims["steps"])]
            # a step is as slow as the slowest rank
            t = torch.tensor([statistics.median(step_times)])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            this[name] = float(t)
            times[name].append(this[name])
        for other in ratios:
            ratios[other].append(this["supernet"] / this[other])
        check_ratios.append(this["supernet_arch_check"] / this["supernet"])

    # The check alone: n calls back to back (ranks in step), per-call median of the slower rank.
    for _ in range(10):
        assert_same_arch(arch, trainer.accelerator)
    dist.barrier()
    calls = [timed(lambda: assert_same_arch(arch, trainer.accelerator)) for _ in range(dims["check_calls"])]
    check_s = torch.tensor([statistics.median(calls)], dtype=torch.float64)
    dist.all_reduce(check_s, op=dist.ReduceOp.MAX)
    check_us = 1e6 * float(check_s)
    if rank == 0:
        active = sum(p.numel() for p in static.parameters())
        everything = sum(p.numel() for p in trainer.model.parameters())
        Path(out_json).write_text(json.dumps({
            "arch": list(arch.ops),
            "world_size": trainer.world_size,
            "step_ms": {name: 1000 * statistics.median(v) for name, v in times.items()},
            "ratio_vs_ddp_static": ratio_stats(ratios["ddp_static"]),
            "best_step_ms": {name: 1000 * min(v) for name, v in times.items()},
            "ratio_of_best_vs_ddp_static": min(times["supernet"]) / min(times["ddp_static"]),
            "ratio_vs_ddp_supernet_find_unused": ratio_stats(ratios["ddp_supernet_find_unused"]),
            "arch_check": {
                "ratio_step_with_vs_without": ratio_stats(check_ratios),
                "ratio_of_best": min(times["supernet_arch_check"]) / min(times["supernet"]),
                "call_us_median": check_us,
                "calls": dims["check_calls"],
                "share_of_step": check_us / (1e6 * statistics.median(times["supernet"])),
            },
            "params_active_path": active,
            "params_supernet": everything,
            "target": TARGETS["two_rank_vs_ddp_static"],
        }))
    trainer.close()


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_two_rank(args, tmp: str) -> dict:
    out_json = f"{tmp}/two_rank.json"
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
           __file__, "--worker", "two_rank", "--out", out_json, "--tmp", tmp] + (["--quick"] if args.quick else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=_pythonpath())
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"two-rank bench failed:\n{proc.stderr[-4000:]}")
    return json.loads(Path(out_json).read_text())


# ----------------------------------------------------------------------------------------
# DeepSpeed ZeRO-2, one process: per-candidate groups + gating vs the plain 2 groups
# ----------------------------------------------------------------------------------------

DS_CONFIG = ROOT / "recipes" / "configs" / "deepspeed_zero2.json"


def deepspeed_worker(dims: dict, out_json: str, tmp: str) -> None:
    """Two DeepSpeed trainers in one process on identical weights and archs: the trainer as it
    is (one group per candidate, `gate_param_groups` before each step) and the same trainer
    built with `param_groups` (decay / no decay) and no gating: the earlier path."""
    from accelerate.state import AcceleratorState

    import bertnas.train.trainer as trainer_mod
    from bertnas.pipelines.pretrain import build_trainer
    from bertnas.train.optim import param_groups

    gated = build_trainer(bench_config(dims, f"{tmp}/dsg", deepspeed=str(DS_CONFIG)))
    # accelerate allows one DeepSpeed plugin per process state: forget it (the process group
    # stays) so the second trainer can build its own engine from the same config.
    AcceleratorState._reset_state(False)
    real_groups, real_gate = trainer_mod.candidate_param_groups, trainer_mod.gate_param_groups
    trainer_mod.candidate_param_groups = lambda module, weight_decay, layers: param_groups(module, weight_decay)
    try:
        plain = build_trainer(bench_config(dims, f"{tmp}/dsp", deepspeed=str(DS_CONFIG)))
    finally:
        trainer_mod.candidate_param_groups = real_groups

    def ungated_step(arch):
        trainer_mod.gate_param_groups = lambda *args: None
        try:
            return plain._train_step(arch)
        finally:
            trainer_mod.gate_param_groups = real_gate

    variants = {"gated": gated._train_step, "plain": ungated_step}
    space = gated.space
    rng = random.Random(3)
    for _ in range(dims["warmup"]):
        arch = space.sample(rng)
        for fn in variants.values():
            fn(arch)
    times = {name: [] for name in variants}
    every = {name: [] for name in variants}
    ratios = []
    for r in range(dims["ds_rounds"]):
        archs = [space.sample(rng) for _ in range(dims["steps"])]
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        this = {}
        for name in names:
            step_times = [timed(lambda a=a: variants[name](a)) for a in archs]
            every[name].extend(step_times)
            this[name] = statistics.median(step_times)
            times[name].append(this[name])
        ratios.append(this["gated"] / this["plain"])
    gate_calls = [timed(lambda: real_gate(gated.optimizer.param_groups, archs[0], gated.scheduler.get_last_lr()))
                  for _ in range(100)]
    Path(out_json).write_text(json.dumps({
        "config": str(DS_CONFIG.relative_to(ROOT)),
        "zero_stage": 2,
        "groups": {"gated": len(gated.optimizer.param_groups), "plain": len(plain.optimizer.param_groups)},
        "step_ms": {name: 1000 * statistics.median(v) for name, v in times.items()},
        "ratio_gated_vs_plain": ratio_stats(ratios),
        "ratio_of_best": min(every["gated"]) / min(every["plain"]),
        "gate_call_us_median": 1e6 * statistics.median(gate_calls),
        "rounds": dims["ds_rounds"], "steps_per_round": dims["steps"],
        "threads": torch.get_num_threads(),
    }))
    plain.close()  # ends the process group both trainers share


def bench_deepspeed(args, tmp: str) -> dict:
    out_json = f"{tmp}/deepspeed.json"
    cmd = [sys.executable, __file__, "--worker", "deepspeed", "--out", out_json, "--tmp", tmp, "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    env = dict(os.environ, PYTHONPATH=_pythonpath(), DS_ACCELERATOR="cpu")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "bertnas" / "torch_extensions"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(key, None)
    Path(env["TORCH_EXTENSIONS_DIR"]).mkdir(parents=True, exist_ok=True)
    # the first run on a machine JIT-builds DeepSpeed's CPU communication op (about a minute)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"DeepSpeed bench failed:\n{proc.stderr[-4000:]}")
    return json.loads(Path(out_json).read_text())


# ----------------------------------------------------------------------------------------
# Memory: a fresh process per variant
# ----------------------------------------------------------------------------------------


class PeakRSS:
    """Peak resident memory above the baseline at start, in MB: the kernel's high-water mark
    (VmHWM, reset at start through /proc/self/clear_refs) where the kernel allows the reset,
    else RSS sampled every 2 ms by a thread (which can miss short peaks on a loaded machine)."""

    def __init__(self):
        import threading

        self.page = os.sysconf("SC_PAGE_SIZE")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.kernel = True
        except OSError:
            self.kernel = False
        self.base = self.current()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    @staticmethod
    def hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.current())

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())
        sampled = (self.peak - self.base) / 2**20
        kernel = (self.hwm() - self.base) / 2**20 if self.kernel else None
        return {"added_rss_mb": kernel if kernel is not None else sampled, "sampled_mb": sampled,
                "source": "VmHWM" if kernel is not None else "sampled"}


def memory_worker(dims: dict, mode: str, out_json: str, tmp: str) -> None:
    """Memory that the model, optimizer, gradients and activations add above the process after
    imports and data loading (so only what differs between the variants is counted)."""
    import gc

    from bertnas import BertNasConfig, BertNasForMaskedLM
    from bertnas.tasks.bert import MLMTask
    from bertnas.train.optim import param_groups
    from bertnas.supernet.stream import BatchStream
    from bertnas.pipelines.pretrain import build_trainer as SupernetTrainer
    from bertnas.tasks.objectives import MLMObjective

    cfg = bench_config(dims, f"{tmp}/m", sampler="uniform", align=(mode == "supernet+align"))
    # the data alone (no model yet): the trainer below finds it in the process-wide cache
    probe = MLMTask()
    probe.setup_data(cfg)
    tokenizer, train = probe.tokenizer, probe.train_data
    gc.collect()
    meter = PeakRSS()
    layers = dims["layers"]
    ops = (FIXED_ARCH * layers)[:layers]
    if mode == "static":  # the fixed-arch model of the same path (what `extract` returns)
        model = BertNasForMaskedLM(BertNasConfig(**cfg.model, vocab_size=len(tokenizer),
                                                 pad_token_id=tokenizer.pad_token_id, arch=ops))
        opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
        objective = MLMObjective(model, tokenizer, 0.15)
        stream = BatchStream(train, cfg.batch_size, 1, 0, cfg.seed)
        g = torch.Generator().manual_seed(0)

        def step():
            objective.compute(stream.next(), ops, g).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        params = sum(p.numel() for p in model.parameters())
    else:
        trainer = SupernetTrainer(cfg)
        arch = trainer.space.arch(ops)

        def step():
            trainer._train_step(arch)
        params = sum(p.numel() for p in trainer.model.parameters())
    for _ in range(dims["memory_steps"]):
        step()
    Path(out_json).write_text(json.dumps({"mode": mode, **meter.stop(), "params": params}))


def bench_memory(args, tmp: str, repeats: int) -> dict:
    """Each mode in a fresh process, `repeats` times (modes alternating); per mode the median MB,
    and supernet / static as the median of the per-repeat ratios."""
    modes = ("static", "supernet", "supernet+align")
    runs = {mode: [] for mode in modes}
    for r in range(repeats):
        for mode in (modes if r % 2 == 0 else tuple(reversed(modes))):
            out_json = f"{tmp}/mem_{mode}_{r}.json"
            cmd = [sys.executable, __file__, "--worker", "memory", "--mode", mode, "--out", out_json, "--tmp", tmp]
            cmd += ["--quick"] if args.quick else []
            proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=_pythonpath()), capture_output=True,
                                  text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"memory bench ({mode}) failed:\n{proc.stderr[-4000:]}")
            runs[mode].append(json.loads(Path(out_json).read_text()))
    results = {}
    for mode in modes:
        mbs = [run["added_rss_mb"] for run in runs[mode]]
        results[mode] = {"added_rss_mb": statistics.median(mbs), "runs_mb": mbs,
                         "sampled_mb": [run["sampled_mb"] for run in runs[mode]],
                         "source": runs[mode][0]["source"], "params": runs[mode][0]["params"]}
    for mode in ("supernet", "supernet+align"):
        ratios = [s["added_rss_mb"] / t["added_rss_mb"] for s, t in zip(runs[mode], runs["static"])]
        results[mode]["vs_static"] = statistics.median(ratios)
        results[mode]["vs_static_runs"] = ratios
    # What a supernet cannot avoid: its idle candidates' fp32 weights (no grads, no AdamW moments).
    idle_mb = (results["supernet"]["params"] - results["static"]["params"]) * 4 / 2**20
    results["supernet"]["idle_weights_mb"] = idle_mb
    results["supernet"]["floor_vs_static"] = (results["static"]["added_rss_mb"] + idle_mb) / results["static"]["added_rss_mb"]
    results["supernet"]["target"] = TARGETS["memory_supernet_vs_static"]
    return results


# ----------------------------------------------------------------------------------------


def _pass(value, target):
    return "yes" if value <= target else "**no**"


def markdown(report: dict) -> str:
    d = report["dims"]
    ms = report["magic_vs_spos"]
    tr = report["two_rank"]
    ds = report.get("deepspeed")
    mem = report["memory"]
    sm = ms["step_ms"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}. Machine: {report['machine']}. Dims: {d['layers']} chain layers x hidden {d['hidden']} "
        f"(intermediate {d['intermediate']}), 7 candidates per layer, batch {d['batch']} x seq {d['seq']}, "
        f"vocab {report['vocab_size']}, fp32, dropout 0.1 unless said; alignment on from step 0 (weight 0.1, "
        "block 2, normalised, cap 0.5).",
        "",
        "| bench | measured (medians) | ratio median [min, max] | ratio of best times | target | pass |",
        "|---|---|---|---|---|---|",
        f"| MAGIC-A / SPOS step time (1 process; base in train mode, shared dropout masks) | "
        f"{ms['magic_step_ms']:.1f} ms / {ms['spos_step_ms']:.1f} ms | "
        f"{_fmt(ms['ratio'])} | {ms['ratio_of_best']['magic_vs_spos']:.3f} | <= {ms['target']} | "
        f"{_pass(ms['ratio']['median'], ms['target'])} |",
        f"| ... the same at dropout 0 (why: no dropout kernels, masks free) | {sm['magic_p0']:.1f} ms / "
        f"{sm['spos_p0']:.1f} ms | {_fmt(ms['ratio_dropout0'])} | {ms['ratio_of_best']['magic_vs_spos_dropout0']:.3f} "
        "| - | - |",
        f"| ... MAGIC-A with the base in eval mode (the earlier design) / SPOS | {sm['magic_eval_base']:.1f} ms / "
        f"{sm['spos']:.1f} ms | {_fmt(ms['ratio_eval_base'])} | {ms['ratio_of_best']['magic_eval_base_vs_spos']:.3f} "
        "| - | - |",
        f"| ... MAGIC-A with the base's forward run whole (before issue 24: embeddings and every layer) / SPOS | "
        f"{sm['magic_whole_base']:.1f} ms / {sm['spos']:.1f} ms | {_fmt(ms['ratio_whole_base'])} | "
        f"{ms['ratio_of_best']['magic_whole_base_vs_spos']:.3f} | - | - |",
        f"| 2 ranks: supernet / DDP static, path {' '.join(tr['arch'])} | {tr['step_ms']['supernet']:.1f} ms / "
        f"{tr['step_ms']['ddp_static']:.1f} ms | {_fmt(tr['ratio_vs_ddp_static'])} | "
        f"{tr['ratio_of_best_vs_ddp_static']:.3f} | <= {tr['target']} | "
        f"{_pass(tr['ratio_vs_ddp_static']['median'], tr['target'])} |",
        f"| 2 ranks: supernet / DDP(supernet, find_unused_parameters) | {tr['step_ms']['supernet']:.1f} ms / "
        f"{tr['step_ms']['ddp_supernet_find_unused']:.1f} ms | {_fmt(tr['ratio_vs_ddp_supernet_find_unused'])} | "
        f"{tr['best_step_ms']['supernet'] / tr['best_step_ms']['ddp_supernet_find_unused']:.3f} | - | - |",
    ]
    ac = tr.get("arch_check")
    if ac:
        lines.append(
            f"| 2 ranks: step with / without the per-step arch-hash check (`assert_same_arch`; one call alone: "
            f"{ac['call_us_median']:.0f} us, {100 * ac['share_of_step']:.2f} % of a step) | "
            f"{tr['step_ms']['supernet_arch_check']:.1f} ms / {tr['step_ms']['supernet']:.1f} ms | "
            f"{_fmt(ac['ratio_step_with_vs_without'])} | {ac['ratio_of_best']:.3f} | - | - |")
    if ds:
        lines.append(
            f"| DeepSpeed ZeRO-2, 1 process: {ds['groups']['gated']} per-candidate groups + gating / "
            f"{ds['groups']['plain']} plain groups, ungated (gate call alone: {ds['gate_call_us_median']:.0f} us) | "
            f"{ds['step_ms']['gated']:.1f} ms / {ds['step_ms']['plain']:.1f} ms | {_fmt(ds['ratio_gated_vs_plain'])} "
            f"| {ds['ratio_of_best']:.3f} | - | - |")
    target = mem["supernet"]["target"]
    runs = ", ".join(f"{r:.3f}" for r in mem["supernet"]["vs_static_runs"])
    lines.append(
        f"| peak memory of supernet training / static model's (added peak RSS, {mem['supernet']['source']}; "
        f"median of {len(mem['supernet']['vs_static_runs'])} fresh-process pairs: {runs}) | "
        f"{mem['supernet']['added_rss_mb']:.0f} MB / {mem['static']['added_rss_mb']:.0f} MB | "
        f"{mem['supernet']['vs_static']:.3f} | - | <= {target} | {_pass(mem['supernet']['vs_static'], target)} |")
    lines.append(
        f"| ... floor: static + the idle candidates' fp32 weights ({mem['supernet']['idle_weights_mb']:.1f} MB) / static "
        f"| {mem['static']['added_rss_mb'] + mem['supernet']['idle_weights_mb']:.0f} MB / "
        f"{mem['static']['added_rss_mb']:.0f} MB | {mem['supernet']['floor_vs_static']:.3f} | - | - | - |")
    lines += [
        "",
        "| tokens/s (1 process) | " + " | ".join(report["tokens_per_s"]) + " |",
        "|---|" + "---|" * len(report["tokens_per_s"]),
        "| | " + " | ".join(f"{v:.0f}" for v in report["tokens_per_s"].values()) + " |",
        "",
        "| memory added by model + training (peak RSS above the loaded data) | MB (median) | runs | params | vs static |",
        "|---|---|---|---|---|",
    ]
    for mode, m in mem.items():
        lines.append(f"| {mode} | {m['added_rss_mb']:.0f} | {', '.join(f'{x:.0f}' for x in m['runs_mb'])} | "
                     f"{m['params']:,} | {m.get('vs_static', 1.0):.2f} |")
    return "\n".join(lines) + "\n"


def _fmt(r):
    return f"{r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=["two_rank", "memory", "deepspeed"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of the 1-process benches (default 2; the 2-rank one uses 1 per rank)")
    parser.add_argument("--magic-only", action="store_true",
                        help="only the MAGIC-A / SPOS alternation (bench/results/pretrain_magic.json)")
    parser.add_argument("--skip-two-rank", action="store_true")
    parser.add_argument("--skip-deepspeed", action="store_true",
                        help="leave out the DeepSpeed bench (its first run on a machine JIT-builds a CPU op)")
    args = parser.parse_args()
    dims = QUICK if args.quick else FULL
    import logging

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="MAGIC-A outside Aligner.shared_randomness")
    torch.set_num_threads(args.threads if args.worker != "two_rank" else 1)
    if args.worker == "two_rank":
        return two_rank_worker(dims, args.out, args.tmp)
    if args.worker == "memory":
        return memory_worker(dims, args.mode, args.out, args.tmp)
    if args.worker == "deepspeed":
        return deepspeed_worker(dims, args.out, args.tmp)

    t0 = time.time()
    load_before = os.getloadavg()[0]  # other jobs on the machine skew timings: say how busy it was
    tmp = tempfile.mkdtemp(prefix="bench_pretrain_")
    if args.magic_only:
        try:
            single = bench_single(dims, tmp, magic_only=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report = {"command": ".venv/bin/python bench/bench_pretrain.py --magic-only" + (" --quick" if args.quick else "")
                  + (f" --threads {args.threads}" if args.threads != 2 else ""),
                  "date": time.strftime("%Y-%m-%d"),
                  "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                             f"{torch.__version__} ({torch.get_num_threads()} threads)",
                  "load_avg_start": load_before, "load_avg_end": os.getloadavg()[0], "dims": dims,
                  "magic_vs_spos": single["magic_vs_spos"], "seconds": time.time() - t0}
        name = "pretrain_magic_quick" if args.quick else "pretrain_magic"
        (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["magic_vs_spos"], indent=2))
        return None
    try:
        single = bench_single(dims, tmp)
        print(json.dumps(single["magic_vs_spos"]), flush=True)
        two_rank = None if args.skip_two_rank else bench_two_rank(args, tmp)
        print(json.dumps(two_rank), flush=True)
        deepspeed = None if args.skip_deepspeed else bench_deepspeed(args, tmp)
        print(json.dumps(deepspeed), flush=True)
        memory = bench_memory(args, tmp, dims["memory_repeats"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from bertnas.tasks.text_data import build_tokenizer, load_texts

    vocab = len(build_tokenizer(None, load_texts(None), vocab_size=dims["vocab"]))
    report = {
        "command": ".venv/bin/python bench/bench_pretrain.py" + "".join(
            f" --{k.replace('_', '-')}" for k in ("quick", "skip_two_rank", "skip_deepspeed") if getattr(args, k))
        + (f" --threads {args.threads}" if args.threads != 2 else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads in the 1-process benches, 1 per rank in the 2-rank one), "
                   f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "dims": dims,
        "vocab_size": vocab,
        "magic_vs_spos": single["magic_vs_spos"],
        "tokens_per_s": single["tokens_per_s"],
        "two_rank": two_rank,
        "deepspeed": deepspeed,
        "memory": memory,
        "targets": {
            "magic_vs_spos": {"value": single["magic_vs_spos"]["ratio"]["median"], "target": TARGETS["magic_vs_spos"]},
            "two_rank_vs_ddp_static": None if two_rank is None else
            {"value": two_rank["ratio_vs_ddp_static"]["median"], "target": TARGETS["two_rank_vs_ddp_static"]},
            "memory_supernet_vs_static": {"value": memory["supernet"]["vs_static"],
                                          "target": TARGETS["memory_supernet_vs_static"]},
        },
        "seconds": time.time() - t0,
    }
    for entry in report["targets"].values():
        if entry is not None:
            entry["pass"] = entry["value"] <= entry["target"]
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    name = "pretrain_quick" if args.quick else "pretrain"
    (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if two_rank is not None:
        (results / f"{name}.md").write_text(markdown(report))
    print(markdown(report) if two_rank is not None else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
