"""Cost of supernet pre-training steps (issue 3 targets). Not a test.

  magic_vs_spos   one process: step time of MAGIC-A (walk + alignment to a base subnet: one
                  extra no-grad forward) / SPOS (uniform, no alignment), on the SAME sequence of
                  subnets, so only the alignment differs. Target <= 1.35.
  two_rank        two gloo ranks (torchrun, 1 thread each): the supernet's step (no DDP wrapper;
                  the active path's gradients all-reduced in one flat bucket) / DDP of the static
                  model cut from the same path (`extract`). Target <= 1.05. For reference also
                  DDP(supernet, find_unused_parameters=True), which all-reduces every candidate.
  tokens_per_s    one process: uniform, walk, walk+align, each with its own sampler.
  memory          resident memory that building and training the supernet (and with alignment)
                  adds above a fresh process with its data loaded, vs the static model of the
                  same path (sampled every 2 ms).

Every step is `SupernetTrainer._train_step` (the training loop's own step: micro-batch forward,
backward, gradient sync, clipping, AdamW, scheduler). Timings alternate between the compared
variants round by round (which goes first alternates too); ratios are medians of per-round
ratios with [min, max].

    .venv/bin/python bench/bench_pretrain.py           # 4 chain layers x hidden 240; writes bench/results/pretrain.{json,md}
    .venv/bin/python bench/bench_pretrain.py --quick   # tiny sanity run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

TARGETS = {"magic_vs_spos": 1.35, "two_rank_vs_ddp_static": 1.05}
CANDIDATES = ["mha6", "mha8", "mha12", "ffn", "ffn_wide", "conv3", "conv5"]
FULL = dict(layers=4, hidden=240, intermediate=960, seq=128, batch=8, vocab=2000,
            rounds=6, steps=3, warmup=2, two_rank_rounds=8, memory_steps=3)
QUICK = dict(layers=2, hidden=48, intermediate=96, seq=32, batch=4, vocab=500,
             rounds=3, steps=2, warmup=1, two_rank_rounds=3, memory_steps=2)
BASE_ARCH = ["mha12", "ffn"]  # repeated: the BERT path, MAGIC-A's usual base
FIXED_ARCH = ["mha12", "ffn", "conv5", "ffn_wide"]  # the path of the two-rank comparison


def bench_config(dims: dict, out: str, **overrides):
    from bertnas.train.config import load_config

    layers = dims["layers"]
    options = dict(
        output_dir=out, progress=False, max_steps=10**6, save_steps=0, seed=0,
        model=dict(num_hidden_layers=layers, hidden_size=dims["hidden"], intermediate_size=dims["intermediate"],
                   ffn_wide_size=dims["intermediate"] * 3 // 2, max_position_embeddings=max(512, dims["seq"]),
                   candidates=CANDIDATES, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
        seq_len=dims["seq"], batch_size=dims["batch"], tokenizer_vocab_size=dims["vocab"], objective="mlm",
        sampler="uniform", align=False, base_arch=(BASE_ARCH * layers)[:layers], base_replacement="none",
        align_block_size=2, warmup_steps=10, lr=1e-4,
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


def bench_single(dims: dict, tmp: str) -> dict:
    from bertnas.train.trainer import SupernetTrainer

    trainers = {
        "uniform": SupernetTrainer(bench_config(dims, f"{tmp}/u", sampler="uniform", align=False)),
        "walk": SupernetTrainer(bench_config(dims, f"{tmp}/w", sampler="walk", align=False)),
        "walk+align": SupernetTrainer(bench_config(dims, f"{tmp}/wa", sampler="walk", align=True)),
    }
    space = trainers["uniform"].space
    rng = random.Random(1)
    for t in trainers.values():  # warm-up
        for _ in range(dims["warmup"]):
            t._train_step(space.sample(rng))

    # MAGIC-A / SPOS on identical subnets: the only difference is the alignment forward.
    spos, magic = trainers["uniform"], trainers["walk+align"]
    per_round, times = [], {"spos": [], "magic": []}
    for r in range(dims["rounds"]):
        archs = [space.sample(rng) for _ in range(dims["steps"])]
        order = [("spos", spos), ("magic", magic)]
        if r % 2:
            order.reverse()
        round_times = {}
        for name, t in order:
            round_times[name] = statistics.median(timed(lambda a=a: t._train_step(a)) for a in archs)
            times[name].append(round_times[name])
        per_round.append(round_times["magic"] / round_times["spos"])
    result = {
        "magic_vs_spos": {
            "spos_step_ms": 1000 * statistics.median(times["spos"]),
            "magic_step_ms": 1000 * statistics.median(times["magic"]),
            "ratio": ratio_stats(per_round),
            "target": TARGETS["magic_vs_spos"],
        }
    }

    # tokens/s with each variant's own sampler, alternating.
    tokens = {name: [0, 0.0] for name in trainers}
    for r in range(dims["rounds"]):
        names = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for name in names:
            t = trainers[name]
            for _ in range(dims["steps"]):
                arch = t.sampler.next()
                t0 = time.perf_counter()
                record = t._train_step(arch)
                tokens[name][1] += time.perf_counter() - t0
                tokens[name][0] += record["tokens"]
    result["tokens_per_s"] = {name: n / s for name, (n, s) in tokens.items()}
    for t in trainers.values():
        t.close()
    return result


# ----------------------------------------------------------------------------------------
# Two ranks: supernet (active-path all-reduce) vs DDP static / DDP supernet
# ----------------------------------------------------------------------------------------


def two_rank_worker(dims: dict, out_json: str, tmp: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bertnas.train.optim import param_groups
    from bertnas.train.trainer import SupernetTrainer
    from bertnas.train.objectives import MLMObjective

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
        objective = MLMObjective(ddp, trainer.tokenizer, cfg.mlm_probability)
        g = torch.Generator().manual_seed(100 + rank)
        return lambda: plain_step(ddp, module, opt, objective, g)

    static = trainer.model.extract(arch)
    supernet_copy = type(trainer.model)(trainer.model.config)
    supernet_copy.load_state_dict(trainer.model.state_dict())
    variants = {
        "supernet": lambda: trainer._train_step(arch),
        "ddp_static": make_ddp(static, find_unused=False),
        "ddp_supernet_find_unused": make_ddp(supernet_copy, find_unused=True),
    }
    for fn in variants.values():
        for _ in range(dims["warmup"]):
            fn()
    times = {name: [] for name in variants}
    ratios = {"ddp_static": [], "ddp_supernet_find_unused": []}
    for r in range(dims["two_rank_rounds"]):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
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
    if rank == 0:
        active = sum(p.numel() for p in static.parameters())
        everything = sum(p.numel() for p in trainer.model.parameters())
        Path(out_json).write_text(json.dumps({
            "arch": list(arch.ops),
            "world_size": trainer.world_size,
            "step_ms": {name: 1000 * statistics.median(v) for name, v in times.items()},
            "ratio_vs_ddp_static": ratio_stats(ratios["ddp_static"]),
            "ratio_vs_ddp_supernet_find_unused": ratio_stats(ratios["ddp_supernet_find_unused"]),
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
# Memory: a fresh process per variant
# ----------------------------------------------------------------------------------------


class PeakRSS:
    """Resident memory sampled every 2 ms by a thread; `peak_mb` above the baseline at start."""

    def __init__(self):
        import threading

        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.current()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.current())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())
        return (self.peak - self.base) / 2**20


def memory_worker(dims: dict, mode: str, out_json: str, tmp: str) -> None:
    """Memory that the model, optimizer, gradients and activations add above the process after
    imports and data loading (so only what differs between the variants is counted)."""
    import gc

    from bertnas import BertNasConfig, BertNasForMaskedLM
    from bertnas.tasks.bert import MLMTask
    from bertnas.train.optim import param_groups
    from bertnas.train.stream import BatchStream
    from bertnas.train.trainer import SupernetTrainer
    from bertnas.train.objectives import MLMObjective

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
    Path(out_json).write_text(json.dumps({"mode": mode, "added_rss_mb": meter.stop(), "params": params}))


def bench_memory(args, tmp: str) -> dict:
    results = {}
    for mode in ("static", "supernet", "supernet+align"):
        out_json = f"{tmp}/mem_{mode}.json"
        cmd = [sys.executable, __file__, "--worker", "memory", "--mode", mode, "--out", out_json, "--tmp", tmp]
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=_pythonpath()), capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"memory bench ({mode}) failed:\n{proc.stderr[-4000:]}")
        results[mode] = json.loads(Path(out_json).read_text())
    static = results["static"]["added_rss_mb"]
    for mode in ("supernet", "supernet+align"):
        results[mode]["vs_static"] = results[mode]["added_rss_mb"] / static
    return results


# ----------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    d = report["dims"]
    ms = report["magic_vs_spos"]
    tr = report["two_rank"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}. Dims: {d['layers']} chain layers x hidden {d['hidden']} "
        f"(intermediate {d['intermediate']}), 7 candidates per layer, batch {d['batch']} x seq {d['seq']}, "
        f"vocab {report['vocab_size']}, fp32, dropout 0.1.",
        "",
        "| bench | measured | ratio median [min, max] | target | pass |",
        "|---|---|---|---|---|",
        f"| MAGIC-A / SPOS step time (1 process) | {ms['magic_step_ms']:.1f} ms / {ms['spos_step_ms']:.1f} ms | "
        f"{_fmt(ms['ratio'])} | <= {ms['target']} | {'yes' if ms['ratio']['median'] <= ms['target'] else 'no'} |",
        f"| 2 ranks: supernet / DDP static, path {' '.join(tr['arch'])} | {tr['step_ms']['supernet']:.1f} ms / "
        f"{tr['step_ms']['ddp_static']:.1f} ms | {_fmt(tr['ratio_vs_ddp_static'])} | <= {tr['target']} | "
        f"{'yes' if tr['ratio_vs_ddp_static']['median'] <= tr['target'] else 'no'} |",
        f"| 2 ranks: supernet / DDP(supernet, find_unused_parameters) | {tr['step_ms']['supernet']:.1f} ms / "
        f"{tr['step_ms']['ddp_supernet_find_unused']:.1f} ms | {_fmt(tr['ratio_vs_ddp_supernet_find_unused'])} | - | - |",
        "",
        "| tokens/s (1 process) | " + " | ".join(report["tokens_per_s"]) + " |",
        "|---|" + "---|" * len(report["tokens_per_s"]),
        "| | " + " | ".join(f"{v:.0f}" for v in report["tokens_per_s"].values()) + " |",
        "",
        "| memory added by model + training (peak RSS above the loaded data) | MB | params | vs static |",
        "|---|---|---|---|",
    ]
    for mode, m in report["memory"].items():
        lines.append(f"| {mode} | {m['added_rss_mb']:.0f} | {m['params']:,} | {m.get('vs_static', 1.0):.2f} |")
    return "\n".join(lines) + "\n"


def _fmt(r):
    return f"{r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=["two_rank", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--skip-two-rank", action="store_true")
    args = parser.parse_args()
    dims = QUICK if args.quick else FULL
    import logging

    logging.disable(logging.WARNING)
    if args.worker == "two_rank":
        return two_rank_worker(dims, args.out, args.tmp)
    if args.worker == "memory":
        return memory_worker(dims, args.mode, args.out, args.tmp)

    t0 = time.time()
    load_before = os.getloadavg()[0]  # other jobs on the machine skew timings: say how busy it was
    tmp = tempfile.mkdtemp(prefix="bench_pretrain_")
    try:
        single = bench_single(dims, tmp)
        print(json.dumps(single["magic_vs_spos"]), flush=True)
        two_rank = None if args.skip_two_rank else bench_two_rank(args, tmp)
        print(json.dumps(two_rank), flush=True)
        memory = bench_memory(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from bertnas.train.data import build_tokenizer, load_texts

    vocab = len(build_tokenizer(None, load_texts(None), vocab_size=dims["vocab"]))
    report = {
        "command": "python bench/bench_pretrain.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads in the 1-process benches, 1 per rank in the 2-rank one), "
                   f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "dims": dims,
        "vocab_size": vocab,
        "magic_vs_spos": single["magic_vs_spos"],
        "tokens_per_s": single["tokens_per_s"],
        "two_rank": two_rank,
        "memory": memory,
        "seconds": time.time() - t0,
    }
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    name = "pretrain_quick" if args.quick else "pretrain"
    (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if two_rank is not None:
        (results / f"{name}.md").write_text(markdown(report))
    print(markdown(report) if two_rank is not None else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
