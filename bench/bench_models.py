"""Speed of the bertnas models against the transformers BERT they reproduce.

Two comparisons, each of a bertnas model against the transformers model with the same
weights (built in memory, converted with `from_bert`, so both compute the same function):

  train_step  BertNasForMaskedLM supernet (all default candidates), arch [mha12, ffn] x L,
              vs BertForMaskedLM: forward + MLM loss + backward + AdamW step + zero_grad.
  inference   the extracted subnet `supernet.extract([mha12, ffn] x L)` (a BertNasModel)
              vs BertModel: eval mode, no_grad forward.

CPU, fp32, a fixed number of torch threads. On a shared machine single timings are noisy, so
the two models are measured ALTERNATELY: warm both up, then R rounds of n calls of each,
alternating call by call (A B B A A B ..., which one starts alternates by round); each round
gives a median time per model and their ratio (bertnas / transformers). The reported ratio is
the median of the per-round ratios, with its spread. `--repeat K` runs the whole thing K times.

    .venv/bin/python bench/bench_models.py            # MiniLM dims, writes bench/results/models.{json,md}
    .venv/bin/python bench/bench_models.py --quick    # tiny dims, a sanity run (seconds)
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import transformers  # noqa: E402
from transformers import BertConfig, BertForMaskedLM, BertModel  # noqa: E402

import bertnas  # noqa: E402

TARGETS = {"train_step": 1.02, "inference": 1.02}

FULL = dict(layers=6, hidden=384, heads=12, intermediate=1536, vocab=30522, batch=8, seq=128,
            rounds=12, train_steps=3, infer_steps=10, warmup=3)
QUICK = dict(layers=2, hidden=192, heads=12, intermediate=768, vocab=8000, batch=4, seq=64,
             rounds=9, train_steps=5, infer_steps=10, warmup=2)


def machine_info(threads):
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "requested_threads": threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "loadavg_start": list(os.getloadavg()),
    }


def bert_config(cfg):
    return BertConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], intermediate_size=cfg["intermediate"],
        attn_implementation="sdpa",
    )


def make_batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000 if cfg["vocab"] > 2000 else 5, cfg["vocab"], (cfg["batch"], cfg["seq"]), generator=g)
    mask = torch.ones_like(ids)
    token_types = torch.zeros_like(ids)
    token_types[:, cfg["seq"] // 2:] = 1
    # MLM labels on ~15% of the positions, -100 (ignored) elsewhere, as in pre-training.
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(ids.shape, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}, labels


def interleaved(fn_a, fn_b, rounds, steps, warmup):
    """Times fn_a (bertnas) and fn_b (transformers) alternately; both are zero-arg callables."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    per_round = []
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            times = {"bertnas": [], "transformers": []}
            order = [("bertnas", fn_a), ("transformers", fn_b)]
            if r % 2:
                order.reverse()
            first = order[0][0]
            # A B B A A B ...: neighbouring calls share the machine's load, which on a shared
            # machine drifts over seconds; blocks of n calls per side measured different loads.
            for i in range(steps):
                for name, fn in (order if i % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med_a = statistics.median(times["bertnas"])
            med_b = statistics.median(times["transformers"])
            per_round.append({
                "first": first,
                "bertnas_s": times["bertnas"],
                "transformers_s": times["transformers"],
                "bertnas_median_s": med_a,
                "transformers_median_s": med_b,
                "ratio": med_a / med_b,
            })
    finally:
        gc.enable()
    ratios = sorted(r["ratio"] for r in per_round)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    all_a = [t for r in per_round for t in r["bertnas_s"]]
    all_b = [t for r in per_round for t in r["transformers_s"]]
    return {
        "rounds": per_round,
        "bertnas_median_s": statistics.median(all_a),
        "transformers_median_s": statistics.median(all_b),
        "ratio_of_overall_medians": statistics.median(all_a) / statistics.median(all_b),
        # Contention from other processes only adds time, so best-of times are a second,
        # contention-robust estimate of the cost ratio.
        "ratio_of_minimums": min(all_a) / min(all_b),
        "ratio_median": statistics.median(ratios),
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "ratio_q1": q[0],
        "ratio_q3": q[2],
    }


def bench_train_step(cfg, arch):
    torch.manual_seed(0)
    hf = BertForMaskedLM(bert_config(cfg))
    ours = bertnas.BertNasForMaskedLM.from_bert(hf)  # supernet, identical weights on the path
    inputs, labels = make_batch(cfg)

    # Same function before training (eval: no dropout).
    hf.eval()
    ours.eval()
    with torch.no_grad():
        diff = (ours(**inputs, arch=arch).logits - hf(**inputs).logits).abs().max().item()
    hf.train()
    ours.train()

    n_params = {"bertnas": sum(p.numel() for p in ours.parameters()),
                "transformers": sum(p.numel() for p in hf.parameters())}
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-5)

    def step_ours():
        loss = ours(**inputs, labels=labels, arch=arch).loss
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_hf():
        loss = hf(**inputs, labels=labels).loss
        loss.backward()
        opt_hf.step()
        opt_hf.zero_grad(set_to_none=True)

    result = interleaved(step_ours, step_hf, cfg["rounds"], cfg["train_steps"], cfg["warmup"])
    result["max_abs_logit_diff_eval"] = diff
    result["params"] = n_params
    # Parameters AdamW actually updated on the path (grad not None after a backward).
    ours(**inputs, labels=labels, arch=arch).loss.backward()
    result["params_with_grad"] = {"bertnas": sum(p.numel() for p in ours.parameters() if p.grad is not None)}
    ours.zero_grad(set_to_none=True)
    return result


def bench_inference(cfg, arch):
    torch.manual_seed(0)
    hf = BertModel(bert_config(cfg)).eval()
    supernet = bertnas.BertNasModel.from_bert(hf).eval()
    subnet = supernet.extract(arch).eval()
    inputs, _ = make_batch(cfg)
    with torch.no_grad():
        diff = (subnet(**inputs).last_hidden_state - hf(**inputs).last_hidden_state).abs().max().item()

    def fwd_ours():
        with torch.no_grad():
            subnet(**inputs)

    def fwd_hf():
        with torch.no_grad():
            hf(**inputs)

    result = interleaved(fwd_ours, fwd_hf, cfg["rounds"], cfg["infer_steps"], cfg["warmup"])
    result["max_abs_hidden_diff"] = diff
    return result


def bench_supernet_inference(cfg, arch):
    """Informational: the supernet itself (all candidates held, arch passed per call) vs BertModel,
    as when a search evaluates candidate archs without extracting them."""
    torch.manual_seed(0)
    hf = BertModel(bert_config(cfg)).eval()
    supernet = bertnas.BertNasModel.from_bert(hf).eval()
    inputs, _ = make_batch(cfg)

    def fwd_ours():
        with torch.no_grad():
            supernet(**inputs, arch=arch)

    def fwd_hf():
        with torch.no_grad():
            hf(**inputs)

    return interleaved(fwd_ours, fwd_hf, cfg["rounds"], cfg["infer_steps"], cfg["warmup"])


def bench_latency_b1(cfg, arch):
    """Informational: extracted subnet vs BertModel on one short sentence (batch 1, seq 16), where
    the per-call Python work (arch resolution, masks, module dispatch) is a visible share."""
    small = {**cfg, "batch": 1, "seq": 16, "infer_steps": 5 * cfg["infer_steps"]}
    return bench_inference(small, arch)


def summarize(runs):
    out = {}
    for bench, target in TARGETS.items():
        medians = [r[bench]["ratio_median"] for r in runs]
        out[bench] = {
            "target_ratio_max": target,
            "ratio_median_per_run": medians,
            "ratio_median_of_runs": statistics.median(medians),
            "pass": statistics.median(medians) <= target,
        }
    return out


def write_markdown(path, result):
    cfg = result["config"]
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpu_model'] or 'CPU'}, {m['cpu_usable']} usable cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), transformers {m['transformers']}, fp32. "
        f"Dims: {cfg['layers']} BERT layers x hidden {cfg['hidden']} x {cfg['heads']} heads x "
        f"intermediate {cfg['intermediate']}, vocab {cfg['vocab']}, batch {cfg['batch']} x seq {cfg['seq']}. "
        f"Interleaved call by call (A B B A ...): {cfg['rounds']} rounds of {cfg['train_steps']} train steps / "
        f"{cfg['infer_steps']} forwards per model; ratio = bertnas / transformers (median over rounds, [min, max]); "
        f"times are medians over all timed calls. Load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m['loadavg_end'][0]:.2f} at end.",
        "",
        "| bench | run | bertnas (ms) | transformers (ms) | ratio median [min, max] | ratio of best times | target | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bench in result["runs"][0]:
        target = TARGETS.get(bench)
        for i, run in enumerate(result["runs"]):
            r = run[bench]
            ok = "-" if target is None else ("yes" if r["ratio_median"] <= target else "no")
            lines.append(
                f"| {LABELS[bench]} | {i + 1} | {1000 * r['bertnas_median_s']:.1f} | "
                f"{1000 * r['transformers_median_s']:.1f} | {r['ratio_median']:.3f} "
                f"[{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] | {r['ratio_of_minimums']:.3f} | {'-' if target is None else f'<= {target}'} | {ok} |"
            )
    lines.append("")
    if result["machine"]["contended"]:
        lines.append("**Warning:** the load average exceeded the usable cores during this run (other "
                     "processes competing for the CPU); ratios are noisier than usual.")
        lines.append("")
    summary = result["targets"]
    lines.append("Overall (median of the per-run median ratios): " + "; ".join(
        f"{b} {s['ratio_median_of_runs']:.3f} ({'pass' if s['pass'] else 'FAIL'}, target <= {s['target_ratio_max']})"
        for b, s in summary.items()) + ".")
    Path(path).write_text("\n".join(lines) + "\n")


# Informational benches (no target), run with --extra.
EXTRA = {"supernet_inference": bench_supernet_inference, "latency_b1": bench_latency_b1}
LABELS = {
    "train_step": "train step: `BertNasForMaskedLM` supernet vs `BertForMaskedLM`",
    "inference": "inference: `extract()`ed `BertNasModel` vs `BertModel`",
    "supernet_inference": "inference: `BertNasModel` supernet (arch per call) vs `BertModel`",
    "latency_b1": "inference, batch 1 x seq 16: `extract()`ed `BertNasModel` vs `BertModel`",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dims and few rounds: a sanity run")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole bench this many times (default 1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per bench")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--extra", action="store_true",
                        help="also run the informational benches (no target): " + ", ".join(EXTRA))
    parser.add_argument("--only", choices=sorted([*TARGETS, *EXTRA]), help="run one bench only (no table)")
    parser.add_argument("--out", help="JSON output (default bench/results/models.json, --quick: "
                        "models_quick.json); the Markdown table goes next to it (.md)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg["rounds"] = args.rounds
    arch = ["mha12", "ffn"] * cfg["layers"]
    benches = {"train_step": bench_train_step, "inference": bench_inference}
    if args.extra:
        benches.update(EXTRA)
    if args.only:
        benches = {args.only: {**benches, **EXTRA}[args.only]}

    result = {
        "command": " ".join([".venv/bin/python", "bench/bench_models.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(args.threads),
        "config": {**cfg, "quick": args.quick, "arch": arch, "dtype": "float32", "device": "cpu",
                   "candidates": list(bertnas.BertNasConfig().candidates), "optimizer": "torch.optim.AdamW(lr=1e-5) defaults",
                   "zero_grad": "set_to_none=True", "attention_mask": "all ones (no padding)"},
        "runs": [],
    }
    start = time.time()
    for i in range(args.repeat):
        run = {}
        for name, fn in benches.items():
            t0 = time.time()
            run[name] = fn(cfg, arch)
            r = run[name]
            print(f"run {i + 1}/{args.repeat} {name}: bertnas {1000 * r['bertnas_median_s']:.1f} ms, "
                  f"transformers {1000 * r['transformers_median_s']:.1f} ms, ratio {r['ratio_median']:.3f} "
                  f"[{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] ({time.time() - t0:.0f} s)", flush=True)
        result["runs"].append(run)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    cores = result["machine"]["cpu_usable"] or result["machine"]["cpu_count"] or 1
    # The 1-minute load includes this process's own threads (up to --threads).
    result["machine"]["contended"] = max(result["machine"]["loadavg_start"][0],
                                         result["machine"]["loadavg_end"][0]) > cores + 0.5
    if result["machine"]["contended"]:
        print(f"warning: load average above the {cores} usable cores: other processes competed for the CPU")
    result["wall_s"] = time.time() - start
    if not args.only:
        result["targets"] = summarize(result["runs"])  # the targets; extras have none
        for b, s in result["targets"].items():
            print(f"{b}: ratio {s['ratio_median_of_runs']:.3f} target <= {s['target_ratio_max']}: "
                  f"{'PASS' if s['pass'] else 'FAIL'}")

    out = Path(args.out or ROOT / "bench" / "results" / ("models_quick.json" if args.quick else "models.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.only:
        write_markdown(out.with_suffix(".md"), result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
