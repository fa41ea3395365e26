"""`bertnas analyze`: can a supernet's ranking be trusted? (docs/analysis.md)

    bertnas analyze ranking --scores OUT/evaluated.json --truth truth.json --output-dir A
    bertnas analyze ranking --scores nb201-search/evaluated.json --truth nb201:cifar10 --output-dir A
    bertnas analyze interference --checkpoint runs/supernet --output-dir A
    bertnas analyze entropy --log runs/darts/log.jsonl --output-dir A
    bertnas analyze bias --scores OUT/evaluated.json --output-dir A
    bertnas analyze report --checkpoint runs/supernet [--truth truth.json]
    bertnas analyze zero-cost --space nb201 --archs 100 --output-dir A   (or --archs archs.json)

Each writes its files under the output folder and prints a one-line JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bertnas.core.errors import UserError

SUBCOMMANDS = {
    "ranking": "Kendall tau, Spearman rho, top-k and NDCG of supernet scores against a ground truth",
    "interference": "Gradient cosine similarity of a shared op between subnets differing in m layers",
    "entropy": "Architecture-weight entropy over training, from a strategy run's log.jsonl",
    "bias": "Correlation of scores with parameter count; scores by operator and layer",
    "report": "A plain-words trust report for a supernet checkpoint (Markdown)",
    "zero-cost": "Zero-cost proxies (params, FLOPs, synflow, snip, grasp, jacob_cov, nwot, zen, grad_norm) of archs "
                 "at initialisation",
}


def _direction(parser, role: str, what: str):
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{role}-higher-is-better", dest=f"{role}_higher", action="store_const", const=True,
                       default=None, help=f"the {what} are accuracies (default: read from the file, else {role} "
                                          f"{'are losses' if role == 'scores' else 'are accuracies'})")
    group.add_argument(f"--{role}-lower-is-better", dest=f"{role}_higher", action="store_const", const=False,
                       help=f"the {what} are losses / errors")


def _output(parser, required: bool = True):
    parser.add_argument("--output-dir", required=required, help="folder for the outputs (created)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bertnas.cli import DefaultsFormatter

    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    sub.required = True
    p = {name: sub.add_parser(name, help=text, description=text, formatter_class=DefaultsFormatter)
         for name, text in SUBCOMMANDS.items()}
    _zero_cost_arguments(p["zero-cost"])
    _output(p["zero-cost"])

    r = p["ranking"]
    r.add_argument("--scores", required=True, help="supernet scores: results.json / evaluated.json of bertnas search, "
                                                   "or a JSON mapping arch -> value")
    r.add_argument("--truth", required=True, help="ground truth: the same formats, or nb201:cifar10 / nb201:cifar100 / "
                                                  "nb201:imagenet16-120 (the real NAS-Bench-201 table)")
    r.add_argument("--scores-field", default="score", help="value field of a list file's entries")
    r.add_argument("--truth-field", default="score", help="value field of a list file's entries")
    _direction(r, "scores", "scores")
    _direction(r, "truth", "truth values")
    r.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="top-k and NDCG cut-offs")
    _output(r)

    i = p["interference"]
    i.add_argument("--checkpoint", required=True, help="a run folder (its latest checkpoint) or a checkpoint folder")
    i.add_argument("--layer", type=int, default=0, help="index of the searchable layer whose op is shared")
    i.add_argument("--ops", nargs="+", default=None, help="shared op(s) at that layer (default: every candidate)")
    i.add_argument("--pairs", type=int, default=8, help="subnet pairs per (m, change type)")
    i.add_argument("--max-m", type=int, default=None, help="largest number of differing layers (default: all others)")
    i.add_argument("--eval-batches", type=int, default=1, help="held-out batches the gradient is taken on")
    i.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the run's)")
    i.add_argument("--no-align", dest="align", action="store_false", help="skip the MAGIC-A-term gradients")
    i.add_argument("--base-arch", default=None, help="base subnet of the MAGIC-A term, comma-separated (default: the "
                                                     "run's base, else a seeded random subnet)")
    i.add_argument("--align-weight", type=float, default=None, help="MAGIC-A weight (default: the run's, else 0.1)")
    i.add_argument("--seed", type=int, default=0)
    _output(i)

    e = p["entropy"]
    e.add_argument("--log", required=True, help="log.jsonl of a strategy run (or its run folder)")
    _output(e)

    b = p["bias"]
    b.add_argument("--scores", required=True, help="results.json / evaluated.json (entries with a params field)")
    b.add_argument("--params", default=None, help="a JSON mapping arch -> parameter count (default: the scores file's "
                                                  "params field)")
    _direction(b, "scores", "scores")
    _output(b)

    t = p["report"]
    t.add_argument("--checkpoint", required=True, help="a run folder (its latest checkpoint) or a checkpoint folder")
    t.add_argument("--truth", default=None, help="ground truth (a file as for `analyze ranking`, or nb201:cifar10)")
    t.add_argument("--truth-field", default="score", help="value field of a list file's entries")
    _direction(t, "truth", "truth values")
    t.add_argument("--scores", default=None, help="supernet scores already computed (e.g. a search's evaluated.json); "
                                                  "default: score the archs here")
    t.add_argument("--archs", type=int, default=24, help="archs scored here (all checks without --scores; the "
                                                         "stability check with --scores)")
    t.add_argument("--eval-batches", type=int, default=4, help="held-out batches (split in two for stability)")
    t.add_argument("--no-interference", dest="interference", action="store_false",
                   help="skip the interference check")
    t.add_argument("--calibration", help="OUT/calibration.json of bertnas calibrate: the report says which signal "
                                         "(supernet, a proxy, the hybrid) to use")
    t.add_argument("--seed", type=int, default=0)
    _output(t, required=False)
    t.set_defaults(output_dir=None)


def _zero_cost_arguments(z) -> None:
    from bertnas.analysis.zero_cost import PROXIES

    z.add_argument("--space", default="bert", help="search space: bert, nb201, darts, cnn (or a registered one)")
    z.add_argument("--config", help="a pretrain recipe YAML giving the supernet's sizes (e.g. recipes/configs/toy.yaml)")
    z.add_argument("--checkpoint", help="a run whose config (sizes, data) is used; its weights are not: proxies "
                                        "are defined at initialisation")
    z.add_argument("--archs", required=True, help="N (archs sampled with --seed) or a JSON file: a list of arch "
                                                   "strings / op lists, or a results file of bertnas search")
    z.add_argument("--data", help="the task's data source (vision default: the local CIFAR-10 subset)")
    z.add_argument("--batch-size", type=int, default=16, help="items of the one batch every proxy sees")
    z.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated")
    z.add_argument("--seed", type=int, default=0, help="initialisation, batch and zen's Gaussian draws")


def _positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise UserError(f"--{name} must be >= 1, got {value}", f"give a positive --{name}")


def plot_ranking(scores, truth, metrics: dict, path: Path) -> Path:
    """Supernet score (x) against ground truth (y); the supernet's top k ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bertnas.analysis.ranking import paired_values

    keys, s, t, _ = paired_values(scores.values, truth.values)
    k = max(int(x) for x in metrics["top_k"])
    picked = set(metrics["top_k"][str(k)]["archs"])
    from bertnas.analysis.ranking import key_text

    mark = [key_text(key) in picked for key in keys]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(s, t, s=12, alpha=0.6, color="tab:blue", label="archs")
    ax.scatter(s[mark], t[mark], s=40, facecolors="none", edgecolors="tab:red", label=f"supernet's top {k}")
    ax.set_xlabel(f"supernet score ({'higher' if scores.higher_is_better else 'lower'} is better)")
    ax.set_ylabel(f"ground truth ({'higher' if truth.higher_is_better else 'lower'} is better)")
    ax.set_title(f"Kendall tau {metrics['kendall_tau']:.3f}, Spearman rho {metrics['spearman_rho']:.3f}, "
                 f"n = {metrics['n']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ranking(args) -> dict:
    from bertnas.analysis.io import load_values
    from bertnas.analysis.ranking import ranking_metrics

    for k in args.k:
        _positive("k", k)
    scores = load_values(args.scores, "scores", args.scores_field, args.scores_higher)
    truth = load_values(args.truth, "truth", args.truth_field, args.truth_higher)
    metrics = ranking_metrics(scores.values, truth.values, args.k, scores.higher_is_better, truth.higher_is_better)
    metrics["sources"] = {
        "scores": {"source": scores.source, "metric": scores.metric, "direction_from": scores.direction_from},
        "truth": {"source": truth.source, "metric": truth.metric, "direction_from": truth.direction_from}}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from bertnas.storage.strict_json import dumps

    (out / "ranking.json").write_text(dumps(metrics, indent=2))
    plot_ranking(scores, truth, metrics, out / "ranking.png")
    return {"kendall_tau": metrics["kendall_tau"], "spearman_rho": metrics["spearman_rho"], "n": metrics["n"],
            "ranking": str(out / "ranking.json"), "plot": str(out / "ranking.png")}


def _interference(args) -> dict:
    from bertnas.tasks import load_task

    from bertnas.analysis.interference import default_aligner, gradient_interference, interference_table, write_interference

    _positive("pairs", args.pairs)
    _positive("max-m", args.max_m)
    _positive("eval-batches", args.eval_batches)
    _positive("batch-size", args.batch_size)
    task = load_task(args.checkpoint)
    batches, _ = task.heldout(eval_batches=args.eval_batches, batch_size=args.batch_size)
    aligner = None
    if args.align:
        base = [op.strip() for op in args.base_arch.split(",")] if args.base_arch else None
        aligner = default_aligner(task, base, args.align_weight)
    result = gradient_interference(task, batches=batches, layer=args.layer, shared_ops=args.ops, max_m=args.max_m,
                                   pairs=args.pairs, seed=args.seed, align=args.align, aligner=aligner)
    paths = write_interference(result, args.output_dir)
    print(interference_table(result))  # the table on stderr for a quick look; stdout keeps the JSON line
    return paths


def _entropy(args) -> dict:
    from bertnas.analysis.entropy import entropy_over_training, plot_entropy_analysis

    result = entropy_over_training(args.log)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "entropy.json").write_text(json.dumps(result, indent=2))
    plot_entropy_analysis(result, out / "entropy.png")
    return {"steps": len(result["steps"]), "final_mean_normalized_entropy": result["mean_normalized"][-1],
            "entropy": str(out / "entropy.json"), "plot": str(out / "entropy.png")}


def _bias(args) -> dict:
    from bertnas.analysis.bias import params_correlation, score_by_operator
    from bertnas.analysis.io import load_values

    scores = load_values(args.scores, "scores", "score", args.scores_higher)
    params = load_values(args.params or args.scores, "scores", "params")
    result = {"params": params_correlation(scores.values, params.values, scores.higher_is_better),
              "operators": score_by_operator(scores.values, scores.higher_is_better),
              "scores": {"source": scores.source, "higher_is_better": scores.higher_is_better}}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from bertnas.storage.strict_json import dumps

    (out / "bias.json").write_text(dumps(result, indent=2))
    return {"params_kendall_tau": result["params"]["kendall_tau"], "bias": str(out / "bias.json")}


def _report(args) -> dict:
    from bertnas.analysis.report import write_trust_report

    _positive("archs", args.archs)
    _positive("eval-batches", args.eval_batches)
    if args.truth:  # a built-in truth of another space: named before any arch is scored
        from bertnas.analysis.io import check_truth_fits
        from bertnas.storage.checkpoint import checkpoint_space

        ckpt, space = checkpoint_space(args.checkpoint)
        check_truth_fits(args.truth, space, ckpt)
    path = write_trust_report(args.checkpoint, args.output_dir, truth=args.truth, scores=args.scores,
                              truth_field=args.truth_field, truth_higher_is_better=args.truth_higher,
                              archs=args.archs, seed=args.seed, eval_batches=args.eval_batches,
                              interference=args.interference, progress=True,
                              calibration=getattr(args, "calibration", None))
    return {"report": str(path)}


def _read_archs(spec: str, space, seed: int) -> list:
    """N archs sampled with `seed`, or the archs of a JSON file (a list of arch strings / op
    lists, or a results / evaluated file of bertnas search: entries with an "arch")."""
    import random

    if spec.isdigit():
        n = int(spec)
        _positive("archs", n)
        if n >= space.size():
            return list(space.enumerate())
        rng, seen = random.Random(seed), {}
        while len(seen) < n:
            seen.setdefault(space.sample(rng), None)
        return list(seen)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--archs {spec}: no such file and not a number", "give N or a JSON list of archs")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"--archs {spec} is not JSON ({err})", "give a JSON list of archs") from None
    entries = data.get("results") or data.get("evaluated") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--archs {spec} holds no list of archs", "give a JSON list of arch strings or op lists")
    archs = []
    for entry in entries:
        value = entry.get("arch") if isinstance(entry, dict) else entry
        try:
            archs.append(space.arch(value))
        except (ValueError, TypeError) as err:
            raise UserError(f"--archs {spec}: {value!r} is not an arch of the {space_name(space)} space ({err})",
                            "give archs of this space") from None
    return archs


def space_name(space) -> str:
    return type(space).__name__


def _zero_cost(args) -> dict:
    import torch

    from bertnas.analysis.zero_cost import PROXIES, ZeroCostScorer
    from bertnas.pipelines.pretrain import build_task
    from bertnas.train.config import load_config

    proxies = [p for p in args.proxies.split(",") if p]
    unknown = [p for p in proxies if p not in PROXIES]
    if unknown:
        raise UserError(f"unknown proxies {unknown}", f"choose from {', '.join(PROXIES)}")
    _positive("batch-size", args.batch_size)
    overrides = {"space": args.space}
    if args.checkpoint:
        from bertnas.storage.checkpoint import find_checkpoint, read_state

        base = dict(read_state(find_checkpoint(args.checkpoint)).get("config") or {})
        base.pop("resume_from_checkpoint", None)
        overrides = {**base, "space": base.get("space", args.space)}
    elif args.config:
        overrides["config"] = args.config
    if args.data:
        overrides["data"] = args.data
    out = Path(args.output_dir)
    overrides.update(output_dir=str(out / "unused-run"), seed=args.seed, batch_size=args.batch_size, progress=False)
    cfg = load_config(overrides)
    torch.manual_seed(args.seed)
    task = build_task(cfg)
    task.setup(cfg)  # a freshly initialised supernet and the task's data
    archs = _read_archs(args.archs, task.space, args.seed)
    batches, info = task.heldout(batch_size=args.batch_size, eval_batches=1)
    scorer = ZeroCostScorer(task.model, task.space, batches, proxies, seed=args.seed)
    to_string = getattr(task.space, "to_string", None)
    keyed = {}
    for arch in archs:
        key = to_string(arch) if to_string is not None else ",".join(
            "+".join(v) if isinstance(v, tuple) else str(v) for v in arch.ops)
        keyed[key] = scorer.score(arch)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zero_cost.json").write_text(json.dumps(keyed, indent=1) + "\n")
    settings = {"space": cfg.space, "proxies": proxies, "batch_size": args.batch_size, "seed": args.seed,
                "data": info.get("source"), "archs": len(keyed), "init": "a freshly initialised supernet (seeded); "
                "each arch its extracted path", "higher_is_better": True}
    (out / "zero_cost_settings.json").write_text(json.dumps(settings, indent=1, default=str) + "\n")
    return {"archs": len(keyed), "zero_cost": str(out / "zero_cost.json")}


def run(args) -> int:
    from bertnas.cli import result_stream

    if getattr(args, "output_dir", None):  # under a regular file: one line now, not a traceback after the work
        from bertnas.storage.checkpoint import check_output_dir

        check_output_dir(args.output_dir)
    handlers = {"ranking": _ranking, "interference": _interference, "entropy": _entropy, "bias": _bias,
                "report": _report, "zero-cost": _zero_cost}
    summary = handlers[args.analysis](args)
    from bertnas.storage.strict_json import dumps

    print(dumps(summary), file=result_stream(args))
    return 0
