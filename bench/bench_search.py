"""Cost of searching a supernet. Not a test.

  throughput   archs scored per second by the `Evaluator` / archs per second of a raw forward
               pass over the SAME held-out batches (`model(**inputs, arch=arch)`, eval, no_grad),
               on the same never-scored archs. Target >= 0.9. Also against the backbone alone
               (`model.bert(...)`: no MLM head at all), a lower bound of any MLM scoring.
  scaling      wall time of a whole search (random search; progressive shrinking with growing E)
               against the number of archs it scored; a least-squares line t = a + b * n with
               its R^2 and the largest relative deviation from the line (linear = R^2 ~ 1), and
               the search's own overhead (wall time minus scoring time). Random search uses one
               seed, so the archs of a smaller run are a prefix of a larger run's: per-arch
               costs are the same across runs. Shrinking scores different archs per E (its
               populations depend on E), so its per-arch cost varies with the archs it picks.
  latency      a latency table of the bench supernet on this machine and its prediction error
               (mean absolute % error over random whole subnets).

Timings alternate between the compared sides round by round (which goes first alternates too);
the ratio is the median of per-round ratios, with [min, max]. One torch thread by default: on
a machine shared with other jobs, several threads make every timing wait on descheduled threads.

    .venv/bin/python bench/bench_search.py           # ~2-4 min: bench/results/search.json + docs/search.md table
    .venv/bin/python bench/bench_search.py --quick   # tiny sanity run: bench/results/search_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

TARGET_RATIO = 0.9
CANDIDATES = ["mha6", "mha8", "mha12", "ffn", "ffn_wide", "conv3", "conv5", "identity"]
FULL = dict(layers=8, hidden=240, intermediate=960, vocab=8000, seq=128, batch=16, eval_batches=4,
            rounds=6, archs_per_round=3, scaling_batches=1, random_n=[8, 16, 32, 64], shrink_e=[2, 4, 8, 16],
            latency_archs=6)
QUICK = dict(layers=2, hidden=48, intermediate=96, vocab=500, seq=32, batch=4, eval_batches=2,
             rounds=3, archs_per_round=2, scaling_batches=1, random_n=[4, 8, 16], shrink_e=[2, 4, 8],
             latency_archs=2)
DOC = ROOT / "docs" / "search.md"
BEGIN, END = "<!-- bench_search:begin -->", "<!-- bench_search:end -->"


def build(dims: dict):
    from bertnas import BertNasConfig, BertNasForMaskedLM
    from bertnas.spaces import BertSpace

    torch.manual_seed(0)
    config = BertNasConfig(vocab_size=dims["vocab"], hidden_size=dims["hidden"], num_hidden_layers=dims["layers"],
                           intermediate_size=dims["intermediate"], candidates=CANDIDATES,
                           max_position_embeddings=max(128, dims["seq"]))
    model = BertNasForMaskedLM(config).eval()
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(dims["eval_batches"]):
        ids = torch.randint(5, dims["vocab"], (dims["batch"], dims["seq"]), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, torch.full_like(ids, -100))
        ids = torch.where(labels != -100, torch.full_like(ids, 4), ids)  # [MASK] = 4
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "token_type_ids": torch.zeros_like(ids), "labels": labels})
    return model, BertSpace(config), batches


def bench_throughput(dims: dict) -> dict:
    from bertnas.search import Evaluator
    from bertnas.search.latency import distinct_archs

    model, space, batches = build(dims)
    evaluator = Evaluator(model, batches, space=space)
    inputs = [{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")} for b in batches]
    # every arch drawn once over the whole bench (warm-ups included), so the cache cannot help
    draws = iter(distinct_archs(space, 4 + dims["rounds"] * dims["archs_per_round"], seed=0))

    def fresh_archs(n):
        return [next(draws) for _ in range(n)]

    @torch.no_grad()
    def raw(archs):
        for arch in archs:
            for x in inputs:
                model(**x, arch=arch.ops)

    @torch.no_grad()
    def backbone(archs):
        for arch in archs:
            for x in inputs:
                model.bert(**x, arch=arch.ops)

    def scored(archs):
        for arch in archs:
            evaluator(arch)

    sides = {"evaluator": scored, "raw_forward": raw, "backbone_forward": backbone}
    scored(fresh_archs(2))  # warm-up (allocator, kernels) on every side
    warm = fresh_archs(2)
    raw(warm)
    backbone(warm)
    rounds = []
    for r in range(dims["rounds"]):
        archs = fresh_archs(dims["archs_per_round"])  # never scored: the cache cannot help
        order = list(sides) if r % 2 == 0 else list(reversed(list(sides)))
        times = {}
        for name in order:
            start = time.perf_counter()
            sides[name](archs)
            times[name] = time.perf_counter() - start
        rounds.append({k: len(archs) / v for k, v in times.items()})  # archs per second
    ratio_raw = [r["evaluator"] / r["raw_forward"] for r in rounds]
    ratio_bb = [r["evaluator"] / r["backbone_forward"] for r in rounds]
    med = {k: statistics.median(r[k] for r in rounds) for k in sides}
    return {
        "archs_per_s": med,
        "ratio_vs_raw_forward": {"median": statistics.median(ratio_raw), "min": min(ratio_raw), "max": max(ratio_raw)},
        "ratio_vs_backbone_forward": {"median": statistics.median(ratio_bb), "min": min(ratio_bb),
                                      "max": max(ratio_bb)},
        "rounds": rounds,
        "tokens_per_arch": dims["eval_batches"] * dims["batch"] * dims["seq"],
    }


def fit_line(xs, ys) -> dict:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    dev = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
    return {"intercept_s": a, "seconds_per_arch": b, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
            "max_rel_deviation": dev}


def bench_scaling(dims: dict) -> dict:
    from bertnas.search import Constraints, Evaluator, progressive_shrinking, random_search

    model, space, batches = build(dims)
    batches = batches[: dims["scaling_batches"]]
    constraints = Constraints(seq_len=dims["seq"])
    Evaluator(model, batches)(space.sample(random.Random(9)))  # warm-up
    out = {}
    runs = {"random": [], "shrinking": []}
    for n in dims["random_n"]:
        evaluator = Evaluator(model, batches, space=space)  # fresh cache every run
        start = time.perf_counter()
        res = random_search(space, evaluator, constraints, num_samples=n, seed=0, progress=False)
        seconds = time.perf_counter() - start
        runs["random"].append({"archs_scored": len(res.evaluated), "seconds": seconds,
                               "scoring_seconds": evaluator.seconds, "overhead_seconds": seconds - evaluator.seconds})
    for e in dims["shrink_e"]:
        evaluator = Evaluator(model, batches, space=space)
        start = time.perf_counter()
        res = progressive_shrinking(space, evaluator, constraints, num_bins=2, candidates_per_bin=e,
                                    survivors_per_bin=1, seed=e, progress=False)
        seconds = time.perf_counter() - start
        runs["shrinking"].append({"E": e, "archs_scored": res.info["num_evaluated"], "seconds": seconds,
                                  "scoring_seconds": evaluator.seconds, "overhead_seconds": seconds - evaluator.seconds,
                                  "stages": len(res.info["stages"])})
    for name, rows in runs.items():
        out[name] = {"runs": rows, "fit": fit_line([r["archs_scored"] for r in rows], [r["seconds"] for r in rows])}
    return out


def bench_latency(dims: dict) -> dict:
    from bertnas.search.latency import build_latency_table

    model, _, _ = build(dims)
    table = build_latency_table(model.config, [dims["seq"]], batch_size=1, check_archs=dims["latency_archs"],
                                progress=False)
    err = table.data["prediction_error"]
    return {"seq_len": dims["seq"], "batch_size": 1, "overhead_ms": table.overhead_ms(dims["seq"]),
            "ops_ms": {op: table.op_ms(op, dims["seq"]) for op in table.ops},
            "mean_abs_pct_error": err["mean_abs_pct_error"], "max_abs_pct_error": err["max_abs_pct_error"],
            "archs": err["archs"]}


def markdown(result: dict, command: str) -> str:
    d, t, s, lat = result["dims"], result["throughput"], result["scaling"], result["latency"]
    lines = [
        f"Measured by `{command}` on {result['machine']['cpu_count']} CPU cores "
        f"(load average {result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} after), "
        f"torch {result['machine']['torch']} with {result['machine']['torch_threads']} thread(s). Supernet: "
        f"{d['layers']} chain layers x hidden {d['hidden']} (FFN {d['intermediate']}), {len(CANDIDATES)} candidates, "
        f"vocab {d['vocab']}; held-out set {d['eval_batches']} batches x {d['batch']} x {d['seq']} tokens.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| archs scored / s, `Evaluator` | {t['archs_per_s']['evaluator']:.2f} | |",
        f"| archs / s, raw forward `model(**inputs, arch=...)` | {t['archs_per_s']['raw_forward']:.2f} | |",
        f"| ratio evaluator / raw forward (median [min, max] of {d['rounds']} rounds) | "
        f"**{t['ratio_vs_raw_forward']['median']:.2f}** [{t['ratio_vs_raw_forward']['min']:.2f}, "
        f"{t['ratio_vs_raw_forward']['max']:.2f}] | >= {TARGET_RATIO} |",
        f"| ratio evaluator / backbone-only forward (no MLM head) | {t['ratio_vs_backbone_forward']['median']:.2f} "
        f"[{t['ratio_vs_backbone_forward']['min']:.2f}, {t['ratio_vs_backbone_forward']['max']:.2f}] | |",
    ]
    for name, label in (("random", "random search"), ("shrinking", "progressive shrinking (B=2, m=1, E varied)")):
        f = s[name]["fit"]
        ns = ", ".join(str(r["archs_scored"]) for r in s[name]["runs"])
        overheads = [r["overhead_seconds"] for r in s[name]["runs"]]
        lines.append(f"| {label}: time vs archs scored ({ns}) | {f['seconds_per_arch'] * 1000:.0f} ms/arch "
                     f"{f['intercept_s']:+.2f} s, R^2 = {f['r2']:.3f}, max deviation "
                     f"{100 * f['max_rel_deviation']:.0f}%; search overhead (not scoring) "
                     f"{min(overheads):.2f}-{max(overheads):.2f} s | linear |")
    lines.append(f"| latency table (seq {lat['seq_len']}, batch 1): prediction error on {len(lat['archs'])} random "
                 f"subnets | mean {lat['mean_abs_pct_error']:.1f}%, max {lat['max_abs_pct_error']:.1f}% | |")
    lines += [
        "",
        "The evaluator scores faster than a raw forward because it runs the MLM head on the masked",
        "positions only (the loss is identical); against the backbone alone, the difference is the",
        "head on those positions plus the loss.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny dims, seconds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier timings on a machine shared with other jobs)")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/search.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bertnas.search.latency import machine_info

    dims = QUICK if args.quick else FULL
    result = {"dims": dims, "machine": machine_info("cpu"), "load_before": os.getloadavg()}
    start = time.perf_counter()
    result["throughput"] = bench_throughput(dims)
    result["scaling"] = bench_scaling(dims)
    result["latency"] = bench_latency(dims)
    result["load_after"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - start
    ratio = result["throughput"]["ratio_vs_raw_forward"]["median"]
    result["targets"] = {"ratio_vs_raw_forward": {"target": TARGET_RATIO, "value": ratio, "pass": ratio >= TARGET_RATIO}}
    command = "python bench/bench_search.py" + (" --quick" if args.quick else "")
    name = "search_quick" if args.quick else "search"
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result, command)
    (out_dir / f"{name}.md").write_text(table + "\n")
    if not args.quick and not args.no_doc and DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
