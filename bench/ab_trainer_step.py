"""Trainer step time of two source trees side by side (before / after a change). Not a test.

    git archive <base> | tar -x -C ../before
    .venv/bin/python bench/ab_trainer_step.py ../before . --rounds 10 --steps 3

One worker process per tree (1 thread each, both alive at once), each holding three trainers of
bench_pretrain.py's dims (4 chain layers x hidden 240, batch 8 x 128): SPOS (uniform), MAGIC-A
(walk + alignment) and DARTS (bilevel; one weight + one architecture step). Rounds alternate the
trees (which goes first flips each round) on the same subnets; a ratio is after / before per
round, reported as median [min, max], with the load average around the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time


def worker(tree: str) -> None:
    sys.path.insert(0, tree)
    sys.path.insert(0, os.path.join(tree, "bench"))
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import logging

    import torch

    torch.set_num_threads(1)
    import bench_pretrain as bp

    import bertnas
    from bertnas.pipelines.pretrain import build_trainer

    assert bertnas.__file__.startswith(os.path.abspath(tree)), bertnas.__file__
    logging.disable(logging.WARNING)
    tmp = tempfile.mkdtemp()

    def make(name, **options):
        return build_trainer(bp.bench_config(bp.FULL, f"{tmp}/{name}", **options))

    trainers = {"spos": make("u", sampler="uniform", align=False), "magic": make("wa", sampler="walk", align=True),
                "darts": make("d", strategy="darts", align=False, sampler="uniform")}
    space = trainers["spos"].space

    def step(name, t, rng):
        arch = t.policy.choose(t.step) if name == "darts" else space.sample(rng)
        t0 = time.perf_counter()
        t._train_step(arch)
        if name == "darts":
            t.policy.after_weight_step(t.context, t.step, arch)
            t.step += 1
        return time.perf_counter() - t0

    for name, t in trainers.items():
        for _ in range(2):
            step(name, t, random.Random(0))
    print("ready", flush=True)
    for line in sys.stdin:
        name, seed, steps = line.split()
        rng = random.Random(int(seed))
        print(json.dumps([step(name, trainers[name], rng) for _ in range(int(steps))]), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    trees = {"before": args.before, "after": args.after}
    procs = {k: subprocess.Popen([sys.executable, __file__, "x", "y", "--worker", os.path.abspath(v)], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
             for k, v in trees.items()}
    for proc in procs.values():
        assert proc.stdout.readline().strip() == "ready"
    load = [os.getloadavg()]
    times = {v: {k: [] for k in trees} for v in ("spos", "magic", "darts")}
    ratios = {v: [] for v in times}
    for r in range(args.rounds):
        for variant in times:
            medians = {}
            for k in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                proc = procs[k]
                proc.stdin.write(f"{variant} {r} {1 if variant == 'darts' else args.steps}\n")
                proc.stdin.flush()
                got = json.loads(proc.stdout.readline())
                times[variant][k] += got
                medians[k] = statistics.median(got)
            ratios[variant].append(medians["after"] / medians["before"])
    load.append(os.getloadavg())
    out = {"load_average_start_end": load, "rounds": args.rounds, "steps": args.steps}
    for variant, t in times.items():
        out[variant] = {"before_ms": 1000 * statistics.median(t["before"]), "after_ms": 1000 * statistics.median(t["after"]),
                        "best_before_ms": 1000 * min(t["before"]), "best_after_ms": 1000 * min(t["after"]),
                        "after_over_before": {"median": statistics.median(ratios[variant]),
                                              "min": min(ratios[variant]), "max": max(ratios[variant])}}
    print(json.dumps(out, indent=1))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()


if __name__ == "__main__":
    main()
