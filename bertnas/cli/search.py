"""`bertnas search`: the command line of `search(...)` (`api.py`) and of latency tables.

    bertnas search --checkpoint runs/toy --method shrinking --max-params 70k --output-dir runs/toy-search
    bertnas search --checkpoint runs/toy --method evolution --max-latency-ms 0.5 --latency-table lat.json ...
    bertnas search --checkpoint runs/toy --build-latency-table lat.json --seq-len 32

`--checkpoint` is a pre-training output dir (its latest checkpoint is used) or one
`checkpoint-<step>` folder. Writes OUT/results.json (ranked, best first), OUT/evaluated.json,
OUT/search.json and OUT/pareto.png (see `bertnas/storage/results.py` and docs/search.md).

With `--strategy NAME` (instead of `--checkpoint`) the search trains its own supernet and
searches it in one run (`bertnas.strategies.run_strategy`: DARTS, GDAS, SNAS, PC-DARTS, GAEA,
RS-WS, SPOS, REINFORCE, PPO on any space):

    bertnas search --space nb201 --strategy gaea-darts --max-steps 300 --output-dir runs/nb201-gaea
    bertnas search --space bert --strategy spos --max-steps 200 --output-dir runs/bert-spos

writing OUT/results.json, OUT/log.jsonl (per step: loss, architecture weights, mean entropy)
and OUT/entropy.png (strategies with architecture weights). Vision spaces train on the local
CIFAR-10 subset unless `--data` names other images.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path

from bertnas.core.errors import UserError, UserFileExistsError, one_line
from bertnas.search.api import SEARCH_METHODS
from bertnas.search.constraints import human, parse_size

METHODS = tuple(SEARCH_METHODS)
# What a search writes into its --output-dir (all that --overwrite deletes).
SEARCH_OUTPUTS = ("results.json", "evaluated.json", "search.json", "pareto.png", "latency_table.json",
                  "trust_report.md", "trust_report.json")


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _key_value(text: str) -> tuple:
    """`KEY=VALUE` with VALUE read as YAML (numbers, booleans, lists; else the string)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip().replace("-", "_"), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip().replace("-", "_"), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bertnas.cli.options import add_hf_aliases, add_hub_options, add_precision_flags, add_tracking_options

    a = parser.add_argument
    a("--checkpoint", help="pre-training output dir (latest checkpoint) or a checkpoint-<step> folder "
                           "(or --strategy instead)")
    a("--method", choices=METHODS, help="search method of a --checkpoint (default: shrinking)")
    a("--output-dir", help="where results.json, evaluated.json, search.json and pareto.png go")
    a("--overwrite", action="store_true",
      help="replace an earlier search's results in --output-dir (deletes only the files a search writes)")
    g = parser.add_argument_group("budget")
    g.add_argument("--max-params", type=_size, help="backbone parameters, e.g. 10M, 1.5G, 250k")
    g.add_argument("--max-flops", type=_size, help="FLOPs per sequence of --seq-len tokens, e.g. 2G")
    g.add_argument("--max-latency-ms", type=float, help="predicted latency from the latency table")
    g.add_argument("--latency-table", help="a table built by --build-latency-table (one is measured if absent "
                                           "and --max-latency-ms is set)")
    g.add_argument("--seq-len", type=int, help="sequence length of FLOPs, latency and the held-out set "
                                              "(default: the run's)")
    g = parser.add_argument_group("scoring")
    g.add_argument("--eval-batches", type=int,
                   help="held-out batches per subnet score (default: 8; with --strategy the training config's)")
    g.add_argument("--batch-size", type=int, help="held-out batch size (default: the run's)")
    g.add_argument("--data", help="held-out text source instead of the run's (file, folder, datasets name); "
                                  "with --strategy the training data (vision default: the local CIFAR-10 subset)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="read a checkpoint that has no manifest.json (its files cannot be verified)")
    g.add_argument("--truth", help="ground truth of some archs (JSON arch -> value, a results list, or "
                                   "nb201:cifar10): also write OUT/trust_report.md (bertnas analyze report)")
    g.add_argument("--ranker", help="score archs with a hybrid ranker (OUT/ranker.json of bertnas calibrate) instead of "
                                    "the raw supernet score; constraints and methods unchanged")
    a("--seed", type=int, default=0)
    a("--top-k", type=int, default=10, help="entries kept in results.json")
    a("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g = parser.add_argument_group("progressive shrinking")
    g.add_argument("--bins", type=int, default=3, help="B: size bins")
    g.add_argument("--candidates-per-bin", type=int, default=16, help="E: candidates scored per bin and stage")
    g.add_argument("--survivors-per-bin", type=int, default=2, help="m: survivors per bin at the end")
    g.add_argument("--bin-by", choices=("params", "latency"), default="params")
    g.add_argument("--blockwise", action="store_true", help="block-wise variant (per-block losses + lookup table)")
    g.add_argument("--block-size", type=int, default=2, help="chain layers per block (block-wise)")
    g.add_argument("--base-arch", help="teacher path for block losses, comma-separated ops (default: the run's base)")
    g.add_argument("--candidates-per-block", type=int, default=64)
    g = parser.add_argument_group("evolution / random")
    g.add_argument("--population", type=int, default=16)
    g.add_argument("--generations", type=int, default=8)
    g.add_argument("--parents", type=int, default=4)
    g.add_argument("--mutation-k", type=int, default=1, help="ops changed per mutation")
    g.add_argument("--num-samples", type=int, default=64, help="archs scored by random search")
    g = parser.add_argument_group("strategy (train a supernet and search it in one run, instead of --checkpoint)")
    g.add_argument("--strategy", help="darts, gdas, snas, pcdarts, gaea-darts, gaea-gdas, gaea-pcdarts, rsws, spos, "
                                      "reinforce, ppo")
    g.add_argument("--space", help="search space of a --strategy run: bert (default), nb201, darts, cnn (or a "
                                   "registered one); a --checkpoint search uses the checkpoint's")
    g.add_argument("--max-steps", type=int, help="weight steps (default: the training config's)")
    g.add_argument("--config", help="training YAML (bertnas pretrain's keys; may hold strategy_options)")
    g.add_argument("--strategy-option", dest="strategy_options", action="append", default=[], metavar="KEY=VALUE",
                   type=_key_value, help="a strategy option, e.g. arch_lr=3e-4 (repeatable)")
    g.add_argument("--space-option", dest="space_options", action="append", default=[], metavar="KEY=VALUE",
                   type=_key_value, help="a space option, e.g. C=8 or N=1 for nb201 (repeatable)")
    g.add_argument("--set", dest="train_options", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                   help="a training config key (bertnas pretrain's), e.g. lr=1e-3, warmup_steps=10, "
                        "model.hidden_size=64")
    g.add_argument("--resume-from-checkpoint", help="'latest' (the --output-dir's newest checkpoint) or a checkpoint "
                                                   "folder: continue an interrupted --strategy run")
    g.add_argument("--lr", type=float, help="peak learning rate of the weights (default: the training config's)")
    g.add_argument("--save-steps", type=int, help="checkpoint every N steps (and at the end)")
    g.add_argument("--keep-last", type=int, help="checkpoints kept")
    g.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    add_precision_flags(g)
    add_tracking_options(g)
    g = parser.add_argument_group("the Hub (--strategy: the rank-1 arch, exported to OUT/export/rank-1)")
    add_hub_options(g)
    g.add_argument("--license", help="license in the pushed model's card (default: the initial BERT's, if any)")
    g = parser.add_argument_group("latency table")
    g.add_argument("--build-latency-table", metavar="OUT.json",
                   help="measure per-op latencies of the checkpoint's supernet on this machine and exit")
    g.add_argument("--latency-seq-lens", type=_int_list, help="seq lens of the table, e.g. 32,128 (default --seq-len)")
    g.add_argument("--latency-batch-size", type=int, default=1)
    g.add_argument("--latency-check-archs", type=int, default=5, help="random subnets measured for the error")
    g.add_argument("--latency-fit-archs", type=int, default=0,
                   help="also measure N other random subnets and fit the table's correction on them (the "
                        "prediction --max-latency-ms then uses); 0: the plain per-op sum")
    g.add_argument("--latency-threads", type=int, help="torch CPU threads while measuring (default: torch's)")
    add_hf_aliases(parser)


def check_output_dir(output_dir, overwrite: bool) -> list[Path]:
    """Refuse a folder that holds an earlier search's results (they would be mixed or lost)
    unless --overwrite; returns the files --overwrite deletes."""
    from bertnas.storage.checkpoint import check_output_dir as check_folder

    folder = check_folder(output_dir)
    found = [folder / name for name in SEARCH_OUTPUTS if (folder / name).exists()]
    if found and not overwrite:
        raise UserFileExistsError(f"{folder} already holds a search ({', '.join(p.name for p in found)})",
                                  "pass --overwrite to replace it, or another --output-dir")
    return found


def _check_options(args: argparse.Namespace) -> None:
    """Every count and choice, before the checkpoint is loaded."""
    for name in ("top_k", "eval_batches", "bins", "candidates_per_bin", "survivors_per_bin", "block_size",
                 "candidates_per_block", "population", "generations", "parents", "mutation_k", "num_samples",
                 "latency_batch_size", "batch_size", "seq_len"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}",
                            f"pass --{name.replace('_', '-')} 1 or more")
    if args.latency_fit_archs is not None and (args.latency_fit_archs < 0 or args.latency_fit_archs == 1):
        raise UserError(f"--latency-fit-archs must be 0 or >= 2, got {args.latency_fit_archs}",
                        "pass --latency-fit-archs 0 (no correction) or e.g. 60")
    if args.latency_fit_archs and not args.build_latency_table:
        raise UserError("--latency-fit-archs fits the correction of a table being built",
                        "add --build-latency-table OUT.json (then search with --latency-table OUT.json)")
    if args.latency_check_archs is not None and args.latency_check_archs < 0:
        raise UserError(f"--latency-check-archs must be >= 0, got {args.latency_check_archs}",
                        "pass --latency-check-archs 0 or more")
    if args.blockwise and args.method not in (None, "shrinking"):
        raise UserError("--blockwise is a variant of --method shrinking", "drop --blockwise or use --method shrinking")
    if args.max_latency_ms is not None and args.max_latency_ms <= 0:
        raise UserError(f"--max-latency-ms must be > 0, got {args.max_latency_ms}", "e.g. --max-latency-ms 2.5")
    if args.device is not None and not re.fullmatch(r"cpu|mps|(cuda|xpu)(:\d+)?", args.device):
        raise UserError(f"--device {args.device!r} is not a device", "pass --device cpu, cuda or cuda:N")
    if args.latency_table and not Path(args.latency_table).is_file():
        raise UserError(f"--latency-table {args.latency_table} does not exist",
                        "build one with --build-latency-table OUT.json, or leave it out")


def run(args: argparse.Namespace) -> int:
    from bertnas.storage.checkpoint import RunLock
    from bertnas.search.api import build_table, search
    from bertnas.search.constraints import InfeasibleBudget

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = getattr(args, "stdout", None) or sys.stdout
    _check_options(args)
    if args.strategy is not None:
        return run_strategy_search(args, out)
    if args.checkpoint is None:
        raise UserError("give --checkpoint (search a trained supernet) or --strategy NAME (train and search in "
                        "one run)", "e.g. --checkpoint runs/toy, or --space nb201 --strategy darts")
    for name in STRATEGY_TRAINING:
        if getattr(args, name, None) is not None:
            raise UserError(f"--{name.replace('_', '-')} is a training option; it goes with --strategy",
                            "drop it (a --checkpoint search trains nothing), or pass --strategy NAME")
    pushing = [name for name in STRATEGY_HUB if getattr(args, name, None) not in (None, False)]
    if pushing:
        raise UserError(f"--{pushing[0].replace('_', '-')} goes with --strategy (a --checkpoint search exports nothing)",
                        f"export and upload the winner with bertnas export --checkpoint {args.checkpoint} --results "
                        f"{args.output_dir or 'OUT'} --push-to-hub REPO")
    for name in ("space_options", "strategy_options", "train_options"):
        if getattr(args, name):
            flag = "--set" if name == "train_options" else f"--{name[:-1].replace('_', '-')}"
            raise UserError(f"{flag} goes with --strategy", "drop it, or pass --strategy NAME")
    args.method = args.method or "shrinking"
    args.eval_batches = args.eval_batches or 8
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device} but no CUDA GPU is visible", "pass --device cpu or leave it out")
    if args.build_latency_table:
        seq_lens = args.latency_seq_lens or ([args.seq_len] if args.seq_len else None)
        table = build_table(args.checkpoint, args.build_latency_table, seq_lens, args.latency_batch_size,
                            args.latency_check_archs, args.device, args.seed, args.latency_threads, args.progress,
                            fit_archs=args.latency_fit_archs or 0)
        print(latency_summary(table, args.build_latency_table), file=out)
        return 0
    if args.output_dir is None:
        raise UserError("--output-dir is required (results.json and pareto.png go there)",
                        "pass --output-dir runs/NAME-search")
    doomed = check_output_dir(args.output_dir, args.overwrite)
    if not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist",
                        "give a pre-training --output-dir or one of its checkpoint-<step> folders")
    from bertnas.analysis.io import check_truth_fits
    from bertnas.storage.checkpoint import checkpoint_space

    ckpt, trained_space = checkpoint_space(args.checkpoint)  # before any work: the space and truth fit it
    if args.space is not None and args.space != trained_space:
        raise UserError(f"--space {args.space} but {ckpt} is a supernet of the {trained_space!r} space",
                        "drop --space (a --checkpoint search uses the checkpoint's space), or give a "
                        f"checkpoint of a {args.space} run")
    check_truth_fits(args.truth, trained_space, ckpt)
    truth = None
    if args.truth:  # a bad truth file fails now, not after the search
        from bertnas.analysis.io import load_values

        truth = load_values(args.truth, "truth")
    folder = Path(args.output_dir)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder).acquire()
    try:
        for path in doomed:  # only an earlier search's own files
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        entries = search(
            args.checkpoint, args.method, args.output_dir, max_params=args.max_params, max_flops=args.max_flops,
            max_latency_ms=args.max_latency_ms, latency_table=args.latency_table, seq_len=args.seq_len,
            eval_batches=args.eval_batches, batch_size=args.batch_size, data=args.data, seed=args.seed,
            top_k=args.top_k, device=args.device, progress=args.progress, bins=args.bins,
            candidates_per_bin=args.candidates_per_bin, survivors_per_bin=args.survivors_per_bin, bin_by=args.bin_by,
            blockwise=args.blockwise, block_size=args.block_size, base_arch=args.base_arch,
            candidates_per_block=args.candidates_per_block, population=args.population, generations=args.generations,
            parents=args.parents, mutation_k=args.mutation_k, num_samples=args.num_samples,
            trust_checkpoint=args.trust_checkpoint,
            rescore=_rescore(args),
        )
    except InfeasibleBudget as err:
        raise UserError(str(err), "raise --max-params / --max-flops / --max-latency-ms") from None
    finally:
        lock.release()
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    header, width = score_header(entries)
    print(f"{'rank':>4}  {header:>{width}}  {'params':>8}  {'FLOPs':>8}  {'lat ms':>7}  arch", file=out)
    for e in entries:
        latency = f"{e['latency_ms']:.3f}" if e["latency_ms"] is not None else "-"
        print(f"{e['rank']:>4}  {score_cell(e):>{width}}  {human(e['params']):>8}  {human(e['flops']):>8}  "
              f"{latency:>7}  {','.join(e['arch'])}", file=out)
    print(noise_note(entries, args.eval_batches), file=out)
    print(f"-> {Path(args.output_dir) / 'results.json'}, {Path(args.output_dir) / 'pareto.png'}", file=out)
    args.result = entries  # what bertnas.search() returns
    if truth is not None:  # the supernet's scores of this search against the user's truth
        from bertnas.analysis.report import write_trust_report

        report = write_trust_report(args.checkpoint, args.output_dir, truth=truth,
                                    scores=Path(args.output_dir) / "evaluated.json", progress=args.progress)
        print(f"trust report -> {report}", file=out)
    return 0


def latency_summary(table, path) -> str:
    """One line: what the table holds and how well it predicts its held-out check archs."""
    err = table.data.get("prediction_error") or {}
    line = f"latency table -> {path}: {len(table.ops)} ops x seq lens {table.seq_lens}"
    if table.correction is not None:
        fitted = len(table.correction.get("fit", {}).get("archs", []))
        line += f"; correction '{table.correction['model']}' fitted on {fitted} measured subnets"
    if not err.get("archs"):
        return line + "; no check archs measured"
    line += (f"; prediction error on {len(err['archs'])} held-out random subnets: mean "
             f"{err['mean_abs_pct_error']:.1f}% (max {err['max_abs_pct_error']:.1f}%)")
    plain = err.get("plain")
    if table.correction is not None and plain:
        line += (f", {100 * err['within_10pct']:.0f}% within +-10% (plain sum: mean "
                 f"{plain['mean_abs_pct_error']:.1f}%, {100 * plain['within_10pct']:.0f}% within +-10%)")
    return line


def _rescore(args):
    if not getattr(args, "ranker", None):
        return None
    from bertnas.analysis.calibration import ranker_rescorer

    return ranker_rescorer(args.ranker)


def score_header(entries) -> tuple[str, int]:
    """The score column's title: the metric and its direction (`mlm_loss (lower better) +- s.e.`)."""
    first = entries[0] if entries else {}
    direction = {True: " (higher better)", False: " (lower better)"}.get(first.get("higher_is_better"), "")
    header = f"{first.get('metric', 'score')}{direction} +- s.e."
    return header, max(len(header), 18)


def score_cell(entry) -> str:
    stderr = entry.get("score_stderr")
    return f"{entry['score']:.4f} +- {stderr:.4f}" if stderr is not None else f"{entry['score']:.4f}"


def noise_note(entries, eval_batches) -> str:
    """One line saying whether the ranking's differences are above the held-out noise."""
    errors = [e["score_stderr"] for e in entries if e.get("score_stderr") is not None]
    if not errors:
        return "noise: one held-out batch, no estimate (raise --eval-batches to get one)"
    scores = [e["score"] for e in entries]
    spread, typical = max(scores) - min(scores), sorted(errors)[len(errors) // 2]
    verdict = ("every listed score is within 2 s.e. of the others: this held-out set does not tell them apart "
               "one score at a time (the batches are shared, so paired differences are less noisy)"
               if spread < 2 * typical else "differences below 2 s.e. are within the held-out noise")
    return (f"s.e.: standard error over {eval_batches or 'the'} held-out batches (median {typical:.4f}); {verdict}; "
            "more --eval-batches narrow it")


# Training options of a --strategy run (pretrain config keys); a --checkpoint search refuses them.
STRATEGY_TRAINING = ("resume_from_checkpoint", "lr", "save_steps", "keep_last", "mixed_precision", "report_to",
                     "logging_steps")
# Options of a --strategy run only: a --checkpoint search leaves the upload to `bertnas export`.
STRATEGY_HUB = ("push_to_hub", "hub_model_id", "private", "license")
# Options of a --checkpoint search that a --strategy run does not take (it trains its own supernet).
CHECKPOINT_ONLY = ("checkpoint", "method", "max_params", "max_flops", "max_latency_ms", "latency_table",
                   "build_latency_table", "blockwise", "base_arch", "device", "truth", "trust_checkpoint", "ranker")


def strategy_config(args: argparse.Namespace) -> dict:
    """The `run_strategy` config of a `--strategy` command line; every bad combination is a
    one-line error naming the fix, before anything is loaded."""
    from bertnas.tasks.registry import task_name
    from bertnas.strategies import strategy_names

    space = args.space or "bert"
    clashing = [name for name in CHECKPOINT_ONLY if getattr(args, name, None) not in (None, False)]
    if clashing:
        flags = ", ".join("--" + name.replace("_", "-") for name in clashing)
        raise UserError(f"--strategy trains and searches a new supernet; {flags} only apply to a --checkpoint search",
                        f"drop {flags}, or drop --strategy")
    if args.strategy not in strategy_names():
        raise UserError(f"unknown strategy {args.strategy!r}", f"choose one of {', '.join(strategy_names())}")
    try:
        task = task_name(space, "mlm")
    except ValueError as err:
        raise UserError(str(err), "pass --space bert, nb201, darts or cnn") from None
    if task == "classification":
        from bertnas.tasks.vision import resolve_source

        try:
            resolve_source(args.data)
        except FileNotFoundError as err:
            raise UserError(str(err).split(": pass")[0], "pass --data (an .npz, an image folder or a datasets name)") \
                from None
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be >= 1, got {args.max_steps}", "pass --max-steps 1 or more")
    if args.config and not Path(args.config).is_file():
        raise UserError(f"--config {args.config} does not exist", "give a training YAML, or leave it out")
    if args.output_dir is None:
        raise UserError("--output-dir is required (results.json, log.jsonl and entropy.png go there)",
                        f"pass --output-dir runs/{space}-{args.strategy}")
    config = {"strategy": args.strategy, "space": space, "output_dir": args.output_dir, "seed": args.seed,
              "progress": args.progress, "overwrite": bool(args.overwrite),
              # the strategy alone picks the paths (RS-WS / SPOS: the uniform sampler, no MAGIC-A);
              # MAGIC-T / MAGIC-A supernets: `bertnas pretrain`, then `bertnas search --checkpoint`
              "align": False}
    if args.config:
        config["config"] = args.config
    for key in ("max_steps", "data", "eval_batches", "batch_size", "seq_len", *STRATEGY_TRAINING):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    for key, value in args.train_options:  # validated by load_config (unknown keys name the known ones)
        section, dot, field_name = key.partition(".")
        if dot:
            config[section] = {**config.get(section, {}), field_name: value}
        else:
            config[key] = value
    yaml_config = _read_yaml(args.config) if args.config else {}
    for key in ("strategy_options", "space_options"):  # given options extend the YAML's
        if getattr(args, key):
            config[key] = {**(yaml_config.get(key) or {}), **dict(getattr(args, key))}
    return config


def _read_yaml(path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise UserError(f"--config {path} is not valid YAML ({one_line(str(err))})", "fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a mapping of config keys", "e.g. `lr: 1.0e-3`")
    return data


def run_strategy_search(args: argparse.Namespace, out) -> int:
    """`bertnas search --strategy NAME`: train with the strategy, score its candidates, print them
    (on the main process only under `accelerate launch`)."""
    import os

    from bertnas.cli.options import hub_repo
    from bertnas.pipelines.strategy import run_strategy

    config = strategy_config(args)
    repo = hub_repo(args)  # a bad Hub option, or an offline Hub, fails before the training
    if repo is not None:
        from bertnas.export import hub_reachable

        if not hub_reachable():
            raise UserError(f"--push-to-hub {repo}: the Hugging Face Hub is offline or unreachable "
                            "(HF_HUB_OFFLINE, no network)",
                            "go online, or drop --push-to-hub and upload later with bertnas export --push-to-hub")
    summary = run_strategy(config, top_k=args.top_k)
    args.result = summary["results"]  # what bertnas.search() returns
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    header, width = score_header(summary["results"])
    print(f"{'rank':>4}  {header:>{width}}  {'params':>8}  arch", file=out)
    for e in summary["results"]:
        bench = (e.get("benchmark") or {}).get("cifar10")
        extra = f"  (NB201 CIFAR-10 test {bench:.2f})" if bench is not None else ""
        derived = "  <- derived" if e["arch"] == summary["derived"] else ""
        print(f"{e['rank']:>4}  {score_cell(e):>{width}}  {human(e['params']):>8}  {json.dumps(e['arch'])}{extra}"
              f"{derived}", file=out)
    print(noise_note(summary["results"], args.eval_batches), file=out)
    folder = Path(args.output_dir)
    written = [str(folder / name) for name in ("results.json", "log.jsonl", "entropy.png") if (folder / name).exists()]
    print(f"-> {', '.join(written)}", file=out)
    if repo is not None:
        print(f"pushed {push_winner(args, summary, repo)} -> https://huggingface.co/{repo}", file=out)
    return 0


def push_winner(args: argparse.Namespace, summary: dict, repo: str) -> Path:
    """The rank-1 arch of a --strategy run, exported from its final checkpoint to
    OUT/export/rank-1 (model card included) and uploaded to `repo`, as `bertnas export --results
    OUT --push-to-hub` would; returns the exported folder."""
    from bertnas.export import complete_card, export, push_model_folder

    run_dir = Path(args.output_dir)
    folder = export(summary.get("checkpoint") or run_dir, run_dir / "export", results=run_dir, top_k=1,
                    overwrite=True)[0]
    if args.license:
        complete_card(folder, {"license": args.license})
    summary["hub"] = push_model_folder(folder, repo, private=bool(args.private))
    return folder


def main(argv: list[str] | None = None) -> int:
    from bertnas.cli import run_command

    return run_command(add_arguments, run, argv, prog="search", description=__doc__.splitlines()[0])


__all__ = ["add_arguments", "run", "main", "METHODS"]
