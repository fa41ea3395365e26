"""How well an NB201 supernet ranks archs: read a `bertnas search` output folder (its
evaluated.json carries each arch's real NB201 accuracies) and print the best found arch's real
accuracy and rank among all 15,625, and the Kendall tau of supernet scores vs the benchmark.

    python bench/nb201_check.py runs/nb201-search [--dataset cifar10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("search_dir")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100", "imagenet16-120"))
    args = p.parse_args()
    from scipy.stats import kendalltau, spearmanr

    from bertnas.spaces.nb201 import Nb201Benchmark, to_string

    folder = Path(args.search_dir)
    evaluated = json.loads((folder / "evaluated.json").read_text())  # best first
    meta = json.loads((folder / "search.json").read_text())
    bench = Nb201Benchmark()
    scores = [e["score"] for e in evaluated]
    real = [bench.accuracy(e["arch"], args.dataset) for e in evaluated]
    if not meta.get("higher_is_better", False):
        scores = [-s for s in scores]
    tau = kendalltau(scores, real)
    rho = spearmanr(scores, real)
    best = evaluated[0]["arch"]
    found_best = max(real)
    report = {
        "archs_scored": len(evaluated),
        "metric": meta.get("metric"),
        "search_seconds": meta.get("seconds"),
        "best_found": to_string(best),
        "best_found_score": evaluated[0]["score"],
        f"best_found_{args.dataset}": bench.accuracy(best, args.dataset),
        "best_found_rank": bench.rank(best, args.dataset),
        f"best_of_scored_{args.dataset}": found_best,
        "kendall_tau": round(float(tau.statistic), 4),
        "kendall_p": float(tau.pvalue),
        "spearman_rho": round(float(rho.statistic), 4),
        f"optimum_{args.dataset}": bench.best(args.dataset)[1],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
