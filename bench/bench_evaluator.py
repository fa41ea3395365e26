"""Archs scored per second with the evaluator's prefix reuse on vs off. Not a test.

For each supernet (the toy of `recipes/configs/toy.yaml`, and a MiniLM-size one: 6 BERT layers =
12 chain layers x hidden 384, 12 heads, intermediate 1536, vocab 30522) and each search method
(progressive shrinking, evolution, random search), a search runs with a paired scorer: every
population the method asks for (a shrinking stage, an evolution generation, the random sample)
is scored by two evaluators one right after the other, `Evaluator(head_fn=None)` (reuse off:
every arch whole, one by one, the path before prefix reuse) and `head_fn=mlm_head` (reuse on, the
`bertnas search` default: shared layer prefixes computed once per held-out batch, prefix states
kept up to `prefix_cache_mb`), the first side alternating call by call so both see the same
load, and every score must be identical (`==`, else the bench fails). archs/s = archs scored /
that side's scoring time over the whole search. A search's speed-up is off time / on time; it
is repeated over rounds (a first, uncounted round warms up) and the median is reported with
[min, max]; the load average is recorded beside every population's timing (other jobs share this
machine). Target: >= 2x for shrinking and evolution on both supernets.

    .venv/bin/python bench/bench_evaluator.py           # bench/results/evaluator.json + the table in docs/search.md
    .venv/bin/python bench/bench_evaluator.py --quick   # seconds: bench/results/evaluator_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from portable import portable_json  # noqa: E402

TARGET = 2.0
TOY_CANDIDATES = ["mha6", "mha8", "mha12", "ffn", "ffn_wide", "conv3", "conv5"]
SUPERNETS = {
    # recipes/configs/toy.yaml (vocab: its tokenizer_vocab_size; held-out: its eval_batches x batch_size x seq_len)
    "toy": dict(layers=2, hidden=48, intermediate=96, ffn_wide=144, vocab=1000, candidates=TOY_CANDIDATES,
                batch=4, seq=32, eval_batches=2),
    # MiniLM-L6-H384 dims as a chain: [mha12, ffn] x 6; ffn_wide 1.5 x the FFN
    "minilm": dict(layers=12, hidden=384, intermediate=1536, ffn_wide=2304, vocab=30522, candidates=TOY_CANDIDATES,
                   batch=8, seq=64, eval_batches=2),
}
METHODS = {
    "toy": {"shrinking": dict(num_bins=3, candidates_per_bin=16, survivors_per_bin=2),
            "evolution": dict(population=8, generations=4, parents=4),
            "random": dict(num_samples=24)},
    "minilm": {"shrinking": dict(num_bins=2, candidates_per_bin=8, survivors_per_bin=1),
               "evolution": dict(population=8, generations=3, parents=3),
               "random": dict(num_samples=8)},
}
QUICK_SUPERNETS = {"toy": SUPERNETS["toy"],
                   "minilm": dict(SUPERNETS["minilm"], layers=4, hidden=96, intermediate=384, ffn_wide=576,
                                  vocab=2000, batch=4, seq=32)}


def build(dims: dict):
    from bertnas import BertNasConfig, BertNasForMaskedLM
    from bertnas.spaces import BertSpace

    torch.manual_seed(0)
    config = BertNasConfig(vocab_size=dims["vocab"], hidden_size=dims["hidden"], num_hidden_layers=dims["layers"],
                           intermediate_size=dims["intermediate"], ffn_wide_size=dims["ffn_wide"],
                           candidates=dims["candidates"], max_position_embeddings=max(128, dims["seq"]),
                           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
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


def run_search(method: str, space, scorer, options: dict):
    from bertnas.search import evolution_search, progressive_shrinking, random_search

    fn = {"shrinking": progressive_shrinking, "evolution": evolution_search, "random": random_search}[method]
    return fn(space, scorer, seed=0, progress=False, **options)


class Paired:
    """A scorer for the search methods that scores every population with both evaluators, one
    right after the other (which goes first alternates call by call, so both sides see the same
    load), checks the scores are identical, and times each side."""

    def __init__(self, evaluators: dict):
        self.evaluators = evaluators
        self.seconds = {side: 0.0 for side in evaluators}
        self.calls = []
        self.higher_is_better = False

    def score_many(self, archs):
        order = list(self.evaluators)
        if len(self.calls) % 2:
            order.reverse()
        scores, call = {}, {"archs": len(archs), "load_avg_1min": os.getloadavg()[0]}
        for side in order:
            start = time.perf_counter()
            scores[side] = self.evaluators[side].score_many(archs)
            took = time.perf_counter() - start
            self.seconds[side] += took
            call[side] = took
        if len({tuple(v) for v in scores.values()}) != 1:
            raise AssertionError("prefix reuse changed a score")
        self.calls.append(call)
        return scores[order[0]]

    def __call__(self, arch):
        return self.score_many([arch])[0]


def bench_one(name: str, dims: dict, methods: dict, rounds: int, cache_mb: float) -> dict:
    from bertnas.search import Evaluator
    from bertnas.supernet.scoring import mlm_head

    model, space, batches = build(dims)
    heads = {"off": None, "on": mlm_head}
    out = {"dims": dims, "space_size": space.size(), "prefix_cache_mb": cache_mb, "methods": {}}
    warm = Paired({side: Evaluator(model, batches, space=space, head_fn=heads[side]) for side in heads})
    warm.score_many([space.sample(random.Random(9)) for _ in range(3)])  # allocator, kernels: both sides
    for method, options in methods.items():
        per_round = []
        for r in range(1, rounds + 1):
            sides = ["off", "on"] if r % 2 else ["on", "off"]
            evaluators = {side: Evaluator(model, batches, space=space, head_fn=heads[side], prefix_cache_mb=cache_mb)
                          for side in sides}
            paired = Paired(evaluators)
            run_search(method, space, paired, options)
            on, off = evaluators["on"], evaluators["off"]
            archs = on.num_evaluated
            row = {
                "archs": archs,
                "off": {"seconds": paired.seconds["off"], "archs_per_s": archs / paired.seconds["off"]},
                "on": {"seconds": paired.seconds["on"], "archs_per_s": archs / paired.seconds["on"],
                       "layers_run_share": on.layers_run / (archs * dims["layers"] * len(batches)),
                       "kept_state_mb": on._state_bytes / 2**20},
                "speedup": paired.seconds["off"] / paired.seconds["on"],
                "populations": len(paired.calls),
                "load_avg_1min": [c["load_avg_1min"] for c in paired.calls],
                "calls": paired.calls,
            }
            per_round.append(row)
            print(f"{name} {method} round {r}: {archs} archs, off {row['off']['archs_per_s']:.2f} archs/s, "
                  f"on {row['on']['archs_per_s']:.2f} archs/s, x{row['speedup']:.2f}, layers run "
                  f"{row['on']['layers_run_share']:.0%} (load {min(row['load_avg_1min']):.1f}-"
                  f"{max(row['load_avg_1min']):.1f})", flush=True)
        speedups = [r["speedup"] for r in per_round]
        loads = [x for r in per_round for x in r["load_avg_1min"]]
        out["methods"][method] = {
            "options": options,
            "archs_scored": per_round[0]["archs"],
            "archs_per_s_off": statistics.median(r["off"]["archs_per_s"] for r in per_round),
            "archs_per_s_on": statistics.median(r["on"]["archs_per_s"] for r in per_round),
            "speedup": {"median": statistics.median(speedups), "min": min(speedups), "max": max(speedups)},
            "layers_run_share": statistics.median(r["on"]["layers_run_share"] for r in per_round),
            "identical_outcome": True,  # Paired raises on any differing score
            "load_avg_1min": {"min": min(loads), "max": max(loads)},
            "rounds": per_round,
            "target": TARGET if method in ("shrinking", "evolution") else None,
        }
    return out


def markdown(report: dict) -> str:
    runs = "; ".join(f"{name}: `{sup['command']}`, load average (1 min) {sup['load_avg_start']:.1f} at the start, "
                     f"{sup['load_avg_end']:.1f} at the end" for name, sup in report["supernets"].items())
    lines = [
        f"Measured on {report['machine']} ({runs}; per population: in the JSON). Held-out sets: toy {report['supernets']['toy']['dims']['eval_batches']} batches x "
        f"{report['supernets']['toy']['dims']['batch']} x {report['supernets']['toy']['dims']['seq']} tokens; MiniLM-size "
        f"{report['supernets']['minilm']['dims']['eval_batches']} x {report['supernets']['minilm']['dims']['batch']} x "
        f"{report['supernets']['minilm']['dims']['seq']}. Kept prefix states: `prefix_cache_mb` = "
        f"{report['prefix_cache_mb']:g}.",
        "",
        "| supernet | method | archs scored | archs/s, reuse off | archs/s, reuse on | speed-up median [min, max] "
        "| chain layers run (share of whole) | outcome identical | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sup in report["supernets"].items():
        label = "toy (2 layers x 48)" if name == "toy" else f"MiniLM-size ({sup['dims']['layers']} chain layers x {sup['dims']['hidden']})"
        for method, m in sup["methods"].items():
            s = m["speedup"]
            target = f">= {m['target']:g}x" if m["target"] else "-"
            met = "" if not m["target"] else (" (met)" if s["median"] >= m["target"] else " (**not met**)")
            lines.append(f"| {label} | {method} | {m['archs_scored']} | {m['archs_per_s_off']:.2f} | "
                         f"{m['archs_per_s_on']:.2f} | **{s['median']:.2f}x** [{s['min']:.2f}, {s['max']:.2f}] | "
                         f"{m['layers_run_share']:.0%} | {'yes' if m['identical_outcome'] else 'NO'} | {target}{met} |")
    return "\n".join(lines) + "\n"


DOC = ROOT / "docs" / "search.md"
BEGIN, END = "<!-- bench_evaluator:begin -->", "<!-- bench_evaluator:end -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prefix-cache-mb", type=float, default=256.0)
    parser.add_argument("--only", choices=sorted(SUPERNETS), help="one supernet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    supernets = QUICK_SUPERNETS if args.quick else SUPERNETS
    rounds = 1 if args.quick else args.rounds
    t0, load_start = time.time(), os.getloadavg()[0]
    report = {
        "command": "python bench/bench_evaluator.py" + (" --quick" if args.quick else "")
                   + (f" --rounds {args.rounds}" if args.rounds != 2 and not args.quick else "")
                   + (f" --only {args.only}" if args.only else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with "
                   f"{torch.get_num_threads()} thread(s)",
        "load_avg_start": load_start,
        "prefix_cache_mb": args.prefix_cache_mb,
        "supernets": {},
    }
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / ("evaluator_quick.json" if args.quick else "evaluator.json")
    if args.only and path.exists():  # one supernet: the other's entry of an earlier run is kept
        earlier = json.loads(path.read_text())
        report["supernets"] = {k: v for k, v in earlier.get("supernets", {}).items() if k != args.only}
        report["earlier_runs"] = {k: {f: earlier[f] for f in ("command", "date", "load_avg_start", "load_avg_end")
                                      if f in earlier} for k in report["supernets"]}
    for name, dims in supernets.items():
        if args.only and name != args.only:
            continue
        entry = bench_one(name, dims, METHODS[name], rounds, args.prefix_cache_mb)
        entry.update(command=report["command"], load_avg_start=load_start, load_avg_end=os.getloadavg()[0])
        report["supernets"][name] = entry
    report["load_avg_end"] = os.getloadavg()[0]
    report["seconds"] = time.time() - t0
    path.write_text(portable_json(report, indent=2) + "\n")
    if len(report["supernets"]) == len(SUPERNETS):
        table = markdown(report)
        print(table)
        if not args.quick and DOC.exists():
            text = DOC.read_text()
            if BEGIN in text and END in text:
                head, rest = text.split(BEGIN, 1)
                text = head + BEGIN + "\n" + table + END + rest.split(END, 1)[1]
                DOC.write_text(text)


if __name__ == "__main__":
    main()
