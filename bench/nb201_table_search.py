"""Table-lookup NAS on NAS-Bench-201 under the NB201 / NATS-Bench protocol: random search, regularised
evolution (REA), REINFORCE and PPO with a simulated time budget (12,000 s on CIFAR-10), many seeded
runs each; no network is trained, every query is a look-up in the real table.

The protocol (Dong & Yang, ICLR 2020, NAS-Bench-201 Sec. 5 and its code, exps/NAS-Bench-201-algos/
{RANDOM,R_EA,reinforce}.py of D-X-Y/AutoDL-Projects):
- a query "trains" an arch: it returns the guide metric and charges the arch's training time;
- the search stops when the next query would overflow the budget (that query is not charged and its
  result is not used); REA's initial population is charged without the check, as NB201 does;
- the found arch is the queried arch with the best guide value; its 200-epoch CIFAR-10 test accuracy
  is reported.
- random search: uniform archs. REA (Real et al. 2019): population 10, tournament of 3 drawn with
  replacement, the child mutates one edge to a different op, the oldest member dies. REINFORCE:
  independent per-edge softmax logits, Adam (lr 0.001 in NB201's script), moving-average baseline
  (momentum 0.9), one arch per update. PPO (not in NB201): the same controller and baseline, clipped
  surrogate (0.2), 4 Adam steps per arch.

What the shared table lacks, and what stands in (docs/results.md reports the difference):
- the guide: NB201 uses the validation accuracy after a 12-epoch schedule (`hp="12"`, one random
  seed per query); the shared table holds only the 200-epoch *test* accuracy (mean over seeds). The
  default guide is that test accuracy (`--guide test`: an oracle-like guide, so the numbers are an
  upper bound of the protocol's); `--guide noisy` adds Gaussian noise per query with the spread of
  200-epoch validation vs test accuracy measured on NASLib's 724 archs (`--noise-sd`, 0.47).
- the cost: NB201 charges each arch's recorded 12-epoch training time plus one validation pass; the
  table has no times. `--cost flops` (default) charges mean_seconds * FLOPs(arch) / mean FLOPs of
  all 15,625 archs (`Nb201Space.flops`, the C=16, N=5 network); `--cost constant` charges
  mean_seconds for every arch. mean_seconds = 12 epochs x 9.14 s + one validation pass (a third of
  an epoch: forward only) = 112.7 s: 9.14 s is the mean NATS-Bench `train-per-time` of a
  cifar10-valid epoch over the topology space (see docs/results.md for how it was sourced).

    python bench/nb201_table_search.py --runs 500 --json bench/results/nb201_table_search.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BUDGET_S = 12_000.0
EPOCH_S = 9.14           # mean train-per-time of one cifar10-valid epoch (NATS-Bench tss, 1080Ti)
EPOCHS = 12              # NB201's search-time schedule (hp="12")
VALID_FRACTION = 1 / 3   # one validation pass of 25k images, forward only: about a third of an epoch
MEAN_ARCH_S = EPOCHS * EPOCH_S + VALID_FRACTION * EPOCH_S
NOISE_SD = 0.47          # sd of (test - validation) over the 411 NASLib archs above 90 % test accuracy
METHODS = ("random", "rea", "reinforce", "ppo")
# NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5: CIFAR-10 test accuracy, 200 epochs, mean +- std
# over 500 runs of each search with a 12,000 s budget.
PUBLISHED = {
    "random": {"mean": 93.70, "std": 0.36, "source": "NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5, RS"},
    "rea": {"mean": 93.92, "std": 0.30, "source": "NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5, REA"},
    "reinforce": {"mean": 93.85, "std": 0.37, "source": "NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5, REINFORCE"},
    "ppo": None,
}


# ------------------------------------------------------------------------------------------------
# The simulated evaluation: guide value and charged seconds per query
# ------------------------------------------------------------------------------------------------

class TableOracle:
    """Answers queries from the NB201 table: `query(arch)` -> (guide value, seconds charged).

    Args:
        bench: an `Nb201Benchmark` (anything with `accuracy(arch, dataset)`).
        space: the `Nb201Space` whose `flops` prices an arch.
        guide: "test" (the table's test accuracy) or "noisy" (plus N(0, noise_sd) per query).
        cost: "flops" or "constant".
        mean_seconds: the mean charge per arch over the whole space.
    """

    def __init__(self, bench, space, guide: str = "test", cost: str = "flops", mean_seconds: float = MEAN_ARCH_S,
                 noise_sd: float = NOISE_SD, dataset: str = "cifar10"):
        if guide not in ("test", "noisy"):
            raise ValueError(f"guide must be 'test' or 'noisy', got {guide!r}")
        if cost not in ("flops", "constant"):
            raise ValueError(f"cost must be 'flops' or 'constant', got {cost!r}")
        self.bench, self.space, self.guide, self.cost = bench, space, guide, cost
        self.mean_seconds, self.noise_sd, self.dataset = mean_seconds, noise_sd, dataset
        self._flops: dict = {}
        self._mean_flops = None
        if cost == "flops":
            total = 0
            for arch in space.enumerate():
                self._flops[arch] = space.flops(arch)
                total += self._flops[arch]
            self._mean_flops = total / len(self._flops)

    def seconds(self, arch) -> float:
        if self.cost == "constant":
            return self.mean_seconds
        return self.mean_seconds * self._flops[arch] / self._mean_flops

    def test_accuracy(self, arch) -> float:
        return self.bench.accuracy(arch, self.dataset)

    def query(self, arch, noise_rng: random.Random) -> tuple[float, float]:
        value = self.test_accuracy(arch)
        if self.guide == "noisy":
            value += noise_rng.gauss(0.0, self.noise_sd)
        return value, self.seconds(arch)


class Budget:
    """The simulated clock of one run: `charge` refuses a query that would overflow the budget
    (NB201: `if total + cost > budget: stop`), `force` charges without the check (REA's initial
    population). `history` holds (arch, guide value, seconds) of every charged query."""

    def __init__(self, oracle: TableOracle, budget: float, noise_rng: random.Random):
        self.oracle, self.budget, self.noise_rng = oracle, budget, noise_rng
        self.spent = 0.0
        self.history: list[tuple] = []

    def _query(self, arch):
        return self.oracle.query(arch, self.noise_rng)

    def charge(self, arch):
        """The guide value of `arch`, or None (nothing charged) when its time overflows the budget."""
        value, seconds = self._query(arch)
        if self.spent + seconds > self.budget:
            return None
        self.spent += seconds
        self.history.append((arch, value, seconds))
        return value

    def force(self, arch) -> float:
        value, seconds = self._query(arch)
        self.spent += seconds
        self.history.append((arch, value, seconds))
        return value

    @property
    def open(self) -> bool:
        return self.spent < self.budget

    def best(self):
        """(arch, guide value) of the best query so far; ties go to the earliest."""
        arch, value, _ = max(self.history, key=lambda h: h[1])
        return arch, value


# ------------------------------------------------------------------------------------------------
# The four searches
# ------------------------------------------------------------------------------------------------

def random_search(budget: Budget, rng: random.Random, space) -> None:
    while budget.open:
        if budget.charge(space.sample(rng)) is None:
            return


def regularized_evolution(budget: Budget, rng: random.Random, space, population_size: int = 10,
                          sample_size: int = 3) -> None:
    from collections import deque

    population: deque = deque()
    while len(population) < population_size:
        arch = space.sample(rng)
        population.append((arch, budget.force(arch)))
    while budget.open:
        sample = [rng.choice(population) for _ in range(sample_size)]  # with replacement, as NB201's
        parent = max(sample, key=lambda m: m[1])[0]
        child = space.neighbour(parent, k=1, rng=rng)  # one edge to a different op
        value = budget.charge(child)
        if value is None:
            return
        population.append((child, value))
        population.popleft()


def _policy_search(budget: Budget, seed: int, space, update, lr: float, momentum: float) -> None:
    """REINFORCE / PPO: the package's controller (per-edge logits, Adam) draws one arch per step;
    `update` steps it on (arch, reward) with the moving-average baseline."""
    from bertnas.strategies.controller import Controller, MovingBaseline

    controller = Controller(space, seed=seed, lr=lr)
    baseline = MovingBaseline(momentum)
    while budget.open:
        arch = controller.sample()
        reward = budget.charge(arch)
        if reward is None:
            return
        update(controller, [arch], [reward], baseline)


def reinforce(budget: Budget, seed: int, space, lr: float = 0.001, momentum: float = 0.9) -> None:
    from bertnas.strategies.controller import reinforce_update

    _policy_search(budget, seed, space, reinforce_update, lr, momentum)


def ppo(budget: Budget, seed: int, space, lr: float = 0.001, momentum: float = 0.9) -> None:
    from bertnas.strategies.controller import ppo_update

    _policy_search(budget, seed, space, lambda c, a, r, b: ppo_update(c, a, r, b, clip=0.2, epochs=4), lr, momentum)


def run_one(method: str, seed: int, oracle: TableOracle, space, budget_s: float = BUDGET_S,
            rl_lr: float = 0.001, sample_size: int = 3) -> dict:
    """One seeded search; returns the found arch, its test accuracy and rank, and the spend."""
    rng = random.Random(seed)
    budget = Budget(oracle, budget_s, random.Random(f"guide-noise-{seed}"))
    if method == "random":
        random_search(budget, rng, space)
    elif method == "rea":
        regularized_evolution(budget, rng, space, sample_size=sample_size)
    elif method == "reinforce":
        reinforce(budget, seed, space, lr=rl_lr)
    elif method == "ppo":
        ppo(budget, seed, space, lr=rl_lr)
    else:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    arch, guide = budget.best()
    return {"seed": seed, "arch": space.to_string(arch), "accuracy": oracle.test_accuracy(arch),
            "rank": oracle.bench.rank(arch, oracle.dataset), "guide": round(guide, 4),
            "queries": len(budget.history), "charged_s": round(budget.spent, 3)}


def summarise(runs: list[dict]) -> dict:
    accs = [r["accuracy"] for r in runs]
    return {"mean": round(statistics.fmean(accs), 3), "std": round(statistics.pstdev(accs), 3), "n": len(runs),
            "median_rank": statistics.median(r["rank"] for r in runs),
            "mean_queries": round(statistics.fmean(r["queries"] for r in runs), 1)}


# ------------------------------------------------------------------------------------------------
# Floors and the weight-sharing rows already measured
# ------------------------------------------------------------------------------------------------

def zero_cost_picks(bench, path: Path, proxies=("synflow", "nwot")) -> dict:
    """For each proxy: the arch with the best score among NASLib's 724 archs, its real accuracy and rank."""
    sys.path.insert(0, str(REPO / "bench"))
    from nb201_ranking import load_zero_cost

    scores = load_zero_cost(path)
    out = {}
    for proxy in proxies:
        finite = {a: s[proxy] for a, s in scores.items() if math.isfinite(s[proxy])}
        arch = max(finite, key=finite.get)
        out[proxy] = {"arch": arch, "score": finite[arch], "accuracy": bench.accuracy(arch),
                      "rank": bench.rank(arch), "archs": len(scores)}
    return out


def weight_sharing_rows(path: Path) -> dict:
    """Per strategy of bench/results/nb201_strategies.json (the smoke-scale runs): the found archs'
    real accuracies over seeds, their mean and std, and their ranks."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    runs = data.get("runs", data)
    rows: dict = {}
    for run in runs if isinstance(runs, list) else runs.values():
        rows.setdefault(run["run"], []).append(run)
    out = {}
    for name, rs in rows.items():
        accs = [r["cifar10_test"] for r in rs]
        out[name] = {"accuracies": accs, "ranks": [r["rank_cifar10"] for r in rs],
                     "mean": round(statistics.fmean(accs), 2), "std": round(statistics.pstdev(accs), 2),
                     "seeds": [r["seed"] for r in rs], "steps": rs[0].get("steps"),
                     "published": rs[0].get("published_cifar10_test")}
    return out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

NAMES = {"random": "random search", "rea": "regularised evolution (REA)", "reinforce": "REINFORCE",
         "ppo": "PPO"}


def _pm(mean, std, n=None):
    return f"{mean:.2f} +- {std:.2f}" + (f" ({n} runs)" if n else "")


def report(doc: dict) -> str:
    """The docs/results.md tables of a results JSON: the methods against their published rows, the
    zero-cost floor and the smoke-scale weight-sharing runs; then the sensitivity variants."""
    p = doc["protocol"]
    budget = f"{p['budget_s']:,.0f} s simulated"
    lines = ["| method | protocol | budget | ours (mean +- std over seeds) | published | median rank of the found archs (of 15,625) |",
             "|---|---|---|---|---|---|"]
    for m, r in doc["methods"].items():
        pub = r.get("published")
        pub_s = f"{pub['mean']:.2f} +- {pub['std']:.2f}" if pub else "-"
        lines.append(f"| {NAMES.get(m, m)} | table-lookup (guide: {p['guide']} acc., cost: {p['cost']}) | {budget}, "
                     f"{r['mean_queries']:.0f} queries | {_pm(r['mean'], r['std'], r['n'])} | {pub_s} | {r['median_rank']:g} |")
    for proxy, z in doc.get("zero_cost_pick", {}).items():
        lines.append(f"| zero-cost pick ({proxy}) | best NASLib proxy score among {z['archs']} archs, no training | "
                     f"{z['archs']} proxy evaluations | {z['accuracy']:.2f} (one arch) | - | {z['rank']} |")
    for name, w in doc.get("weight_sharing_smoke", {}).items():
        accs = ", ".join(f"{a:.2f}" for a in w["accuracies"])
        pub = f"{w['published']:.2f}" if w.get("published") else "-"
        lines.append(f"| {name} (weight sharing, **smoke scale**) | C=8, N=1, 5k-image subset | {w['steps']} steps of 32 "
                     f"images | {_pm(w['mean'], w['std'])} (seeds {', '.join(map(str, w['seeds']))}: {accs}) | {pub} | "
                     f"{', '.join(map(str, w['ranks']))} |")
    best = doc.get("table_best")
    if best:
        lines.append(f"| table optimum | - | - | {best['accuracy']:.2f} | 94.37 | 1 |")
    out = "\n".join(lines)
    if doc.get("variants"):
        methods = list(doc["methods"])
        head = "| variant | " + " | ".join(NAMES.get(m, m) for m in methods) + " |"
        rows = [head, "|---" * (len(methods) + 1) + "|"]
        rows.append("| main protocol (above) | " + " | ".join(
            f"{doc['methods'][m]['mean']:.2f} +- {doc['methods'][m]['std']:.2f} ({doc['methods'][m]['mean_queries']:.0f} q.)"
            for m in methods) + " |")
        for name, res in doc["variants"].items():
            cells = [f"{res[m]['mean']:.2f} +- {res[m]['std']:.2f} ({res[m]['mean_queries']:.0f} q.)" if m in res else "-"
                     for m in methods]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        out += "\n\n" + "\n".join(rows)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=500, help="seeded runs per method (NB201: 500); seeds 0..runs-1")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budget", type=float, default=BUDGET_S)
    p.add_argument("--guide", default="test", choices=("test", "noisy"))
    p.add_argument("--cost", default="flops", choices=("flops", "constant"))
    p.add_argument("--mean-arch-seconds", type=float, default=MEAN_ARCH_S)
    p.add_argument("--noise-sd", type=float, default=NOISE_SD)
    p.add_argument("--rl-lr", type=float, default=0.001, help="REINFORCE / PPO Adam lr (NB201's script: 0.001)")
    p.add_argument("--sample-size", type=int, default=3, help="REA tournament size (NB201 / NATS scripts: 3)")
    p.add_argument("--variant-runs", type=int, default=200,
                   help="runs per method of each sensitivity variant (0: main protocol only)")
    p.add_argument("--table", default=None, help="NB201 csv (default: the shared table)")
    p.add_argument("--zero-cost", default=str(REPO.parent / "shared" / "data" / "nasbench" / "naslib" / "zc_nasbench201.json"))
    p.add_argument("--ws-json", default=str(REPO / "bench" / "results" / "nb201_strategies.json"))
    p.add_argument("--json", default="bench/results/nb201_table_search.json")
    p.add_argument("--report", default=None, metavar="JSON", help="print the Markdown tables of a results JSON and exit")
    return p.parse_args(argv)


def run_methods(methods, runs, oracle, space, args) -> dict:
    out = {}
    for method in methods:
        t0 = time.time()
        rs = [run_one(method, seed, oracle, space, args.budget, args.rl_lr, args.sample_size) for seed in range(runs)]
        out[method] = {**summarise(rs), "runs": rs, "wall_s": round(time.time() - t0, 1)}
        print(f"  {method:10s} {out[method]['mean']:.2f} +- {out[method]['std']:.2f} over {runs} runs, "
              f"{out[method]['mean_queries']} queries per run ({out[method]['wall_s']} s)", flush=True)
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return None
    import torch

    torch.set_num_threads(1)
    from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space

    bench = Nb201Benchmark(args.table)
    space = Nb201Space()
    methods = [m for m in args.methods.split(",") if m]
    oracle = TableOracle(bench, space, args.guide, args.cost, args.mean_arch_seconds, args.noise_sd)
    print(f"main protocol: guide={args.guide} cost={args.cost} mean {args.mean_arch_seconds:.1f} s/arch, "
          f"budget {args.budget:.0f} s", flush=True)
    results = run_methods(methods, args.runs, oracle, space, args)
    doc = {
        "command": "python bench/nb201_table_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "protocol": {"name": "table-lookup", "dataset": "cifar10", "budget_s": args.budget, "guide": args.guide,
                     "cost": args.cost, "mean_arch_seconds": round(args.mean_arch_seconds, 3),
                     "noise_sd": args.noise_sd, "rl_lr": args.rl_lr, "rea_population": 10,
                     "rea_sample_size": args.sample_size, "baseline_momentum": 0.9, "ppo_clip": 0.2, "ppo_epochs": 4,
                     "std": "population std over runs (numpy's default, as NB201's tables)",
                     "reported": "200-epoch CIFAR-10 test accuracy, mean over the benchmark's seeds"},
        "methods": {m: {"protocol": "table-lookup", "budget_s": args.budget, "published": PUBLISHED.get(m), **r}
                    for m, r in results.items()},
        "table_best": dict(zip(("arch", "accuracy"), bench.best("cifar10"))),
    }
    if args.variant_runs:
        variants = {
            "cost-constant": dict(cost="constant"),
            "guide-noisy": dict(guide="noisy"),
            "cost-half": dict(mean_seconds=args.mean_arch_seconds / 2),
            "cost-double": dict(mean_seconds=args.mean_arch_seconds * 2),
            "reinforce-lr-0.01 (NATS-Bench script)": dict(rl_lr=0.01, methods=["reinforce", "ppo"]),
        }
        doc["variants"] = {}
        for name, v in variants.items():
            print(f"variant {name}", flush=True)
            o = TableOracle(bench, space, v.get("guide", args.guide), v.get("cost", args.cost),
                            v.get("mean_seconds", args.mean_arch_seconds), args.noise_sd)
            vargs = argparse.Namespace(**{**vars(args), "rl_lr": v.get("rl_lr", args.rl_lr)})
            res = run_methods(v.get("methods", methods), args.variant_runs, o, space, vargs)
            doc["variants"][name] = {m: {k: r[k] for k in ("mean", "std", "n", "median_rank", "mean_queries")}
                                     for m, r in res.items()}
    zc = Path(args.zero_cost)
    if zc.is_file():
        doc["zero_cost_pick"] = zero_cost_picks(bench, zc)
    doc["weight_sharing_smoke"] = weight_sharing_rows(Path(args.ws_json))
    doc["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return doc


if __name__ == "__main__":
    main()
