"""Do bertnas's zero-cost proxies agree with NASLib's published values on NAS-Bench-201?

For every arch of NASLib's `zc_nasbench201.json` (724 CIFAR-10 cells) the package's proxies
(`bertnas.analysis.zero_cost.ZeroCostScorer`) are computed on the NB201 network (C=16, N=5,
the benchmark's own) at initialisation (one seeded supernet; each arch is its extracted path), on
one seeded batch of CIFAR-10 training images. Then, per proxy:

- Spearman between the two implementations (ours vs NASLib's values) on the same archs;
- Kendall tau of each against the real 200-epoch CIFAR-10 test accuracy (`Nb201Benchmark`),
  and the difference ours - NASLib's.

-inf / NaN proxy values (cells whose output is cut off) rank below every finite value, tied.
Resumable: the per-arch values are saved to `--cache` every 20 archs and reused.

    OMP_NUM_THREADS=1 python bench/zero_cost_check.py --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/portable.py, also when imported by a test
from portable import portable_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
SHARED = REPO.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"

# our proxy -> NASLib's name in zc_nasbench201.json (zen has no NASLib value on NB201)
NASLIB_NAMES = {"params": "params", "flops": "flops", "synflow": "synflow", "snip": "snip", "grasp": "grasp",
                "jacob_cov": "jacov", "nwot": "nwot", "grad_norm": "grad_norm", "zen": None}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zero-cost", default=str(SHARED / "nasbench" / "naslib" / "zc_nasbench201.json"))
    p.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 training images (npz / zip / folder)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-archs", type=int, default=0, help="N archs of the file drawn with --seed (0: all)")
    p.add_argument("--proxies", default="", help="comma-separated subset (default: every proxy)")
    p.add_argument("--init", choices=("bertnas", "pytorch"), default="bertnas",
                   help="the network's initialisation: bertnas's (Kaiming normal, fan out) or PyTorch's layer "
                        "defaults (what NASLib's networks use)")
    p.add_argument("--cache", default=str(REPO / "bench" / "results" / "zero_cost_values.json"))
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "zero_cost_check.json"))
    p.add_argument("--compare-only", action="store_true",
                   help="compute nothing: compare the archs already in --cache (a partial run)")
    return p.parse_args(argv)


def ranked(values: dict) -> dict:
    """Non-finite values just below every finite one (NaN too: a proxy that cannot score a cell)."""
    finite = [v for v in values.values() if math.isfinite(v)]
    low = min(finite) - 1.0 if finite else 0.0
    return {k: (v if math.isfinite(v) else (max(finite) + 1.0 if v == math.inf else low)) for k, v in values.items()}


def compare(ours: dict, naslib: dict, truth: dict, proxies=tuple(NASLIB_NAMES)) -> dict:
    from scipy import stats

    archs = sorted(set(ours) & set(naslib) & set(truth))
    t = [truth[a] for a in archs]
    rows = {}
    for name, ref in NASLIB_NAMES.items():
        if name not in proxies:
            continue
        mine = ranked({a: ours[a][name] for a in archs})
        m = [mine[a] for a in archs]
        row = {"n": len(archs), "nonfinite_ours": sum(not math.isfinite(ours[a][name]) for a in archs),
               "kendall_tau_ours": float(stats.kendalltau(m, t).statistic)}
        if ref is not None:
            theirs = ranked({a: naslib[a][ref] for a in archs})
            r = [theirs[a] for a in archs]
            row["spearman_between"] = float(stats.spearmanr(m, r).statistic)
            row["kendall_tau_naslib"] = float(stats.kendalltau(r, t).statistic)
            row["kendall_diff"] = row["kendall_tau_ours"] - row["kendall_tau_naslib"]
            row["within_0.05"] = abs(row["kendall_diff"]) <= 0.05
        rows[name] = row
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from nb201_ranking import load_zero_cost

    from bertnas.analysis.zero_cost import PROXIES, ZeroCostScorer
    from bertnas.spaces.nb201 import Nb201Benchmark
    from bertnas.tasks.vision import build_nb201, channel_stats, load_images, normalise

    naslib = load_zero_cost(Path(args.zero_cost))
    archs = sorted(naslib)
    if args.num_archs:
        archs = sorted(random.Random(args.seed).sample(archs, args.num_archs))
    bench = Nb201Benchmark()
    truth = {a: bench.accuracy(a, "cifar10") for a in archs}

    images = load_images(args.data)
    mean, std = channel_stats(images.images)
    pick = torch.randperm(len(images.labels), generator=torch.Generator().manual_seed(args.seed))[: args.batch_size]
    batch = {"pixel_values": normalise(images.images[pick], mean, std), "labels": images.labels[pick]}
    torch.manual_seed(args.seed)
    model, space = build_nb201({"C": args.channels, "N": args.cells}, 10)
    if args.init == "pytorch":
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
                module.reset_parameters()
    proxies = tuple(p for p in args.proxies.split(",") if p) or PROXIES
    scorer = ZeroCostScorer(model, space, [batch], proxies, seed=args.seed)

    cache_path = Path(args.cache)
    setting = {"channels": args.channels, "cells": args.cells, "batch_size": args.batch_size, "seed": args.seed,
               "data": str(args.data)}
    if args.init != "bertnas" or proxies != PROXIES:
        setting.update(init=args.init, proxies=list(proxies))
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    values = cache.get("values", {}) if cache.get("setting") == setting else {}
    start = time.time()
    todo = [] if args.compare_only else [a for a in archs if a not in values]
    # a seeded random order, so that a run stopped early (--compare-only) still covers the space
    random.Random(args.seed).shuffle(todo)
    if args.compare_only:
        archs = [a for a in archs if a in values]
    for i, arch in enumerate(todo, 1):
        values[arch] = scorer.score(arch)
        if i % 20 == 0 or i == len(todo):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps({"setting": setting, "values": values}))
            print(f"{len(values)}/{len(archs)} archs, {time.time() - start:.0f} s", flush=True)
    rows = compare(values, naslib, truth, proxies)
    out = {"setting": {**setting, "num_archs": len(archs), "compare_only": bool(args.compare_only), "proxies": list(proxies), "init_scheme": args.init,
                       "truth": "NB201 CIFAR-10 test accuracy, 200 epochs (NATS-Bench tss)",
                       "init": f"one seeded supernet ({args.init} initialisation); each arch its extracted path",
                       "seconds_this_run": round(time.time() - start, 1), "python": platform.python_version(),
                       "torch": torch.__version__,
                       "command": "OMP_NUM_THREADS=1 python bench/zero_cost_check.py " + " ".join(sys.argv[1:])},
           "proxies": rows}
    Path(args.json).write_text(portable_json(out, indent=2) + "\n")
    print(json.dumps(rows, indent=1))
    return out


if __name__ == "__main__":
    main()
