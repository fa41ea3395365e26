"""The trust report: can this supernet's ranking of subnets be believed? (`bertnas analyze report`)

`write_trust_report(checkpoint, output_dir, truth=..., scores=...)` runs the checks below on a
supernet checkpoint and writes `OUT/trust_report.md` (plain words: which checks, which
numbers, what to do next) and `OUT/trust_report.json` (every number).

1. Ranking against ground truth (only with `truth`): Kendall tau, Spearman rho and top-k of the
   supernet's scores (from `scores`, e.g. a search's evaluated.json, else scored here on the
   held-out set) against the truth, beside a random ranking and beside the free predictor a
   user could use instead: the parameter count. Given scores are used for every arch they share
   with the truth; `archs` bounds only the archs scored here (for the stability check).
2. Stability: the same archs scored on two disjoint halves of the held-out batches; Kendall tau
   between the halves. A ranking that changes with the batches cannot be trusted whatever else.
3. Size bias: correlation of the scores with the parameter count.
4. Operator bias: the ops whose archs the supernet puts at the top / bottom.
5. Interference (optional): gradient cosine similarity of a shared op between subnets that
   differ in 1 and in all other layers (`bertnas.analysis.interference`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bertnas.core.errors import UserError

from bertnas.analysis.ranking import arch_key, key_text, ranking_metrics

REPORT_FILE = "trust_report.md"
REPORT_JSON = "trust_report.json"
# Thresholds of the plain-word verdicts (Kendall tau). MAGIC reports 0.36 (SPOS) to 0.57
# (MAGIC-T+A) on its BERT space; well-trained NB201 supernets reach about 0.7.
GOOD_TAU, COARSE_TAU, STABLE_TAU, SIGNIFICANT_P = 0.5, 0.2, 0.8, 0.05


def _choose_archs(task, wanted: list | None, count: int, seed: int) -> list:
    """Up to `count` distinct archs of the space: a seeded sample of `wanted` (keys) that the
    space contains, else random archs of the space."""
    space, rng = task.space, random.Random(seed)
    if wanted is not None:
        inside = [k for k in wanted if isinstance(k, tuple) and space.contains(list(k))]
        if not inside:
            raise UserError(f"none of the {len(wanted)} archs given (e.g. {key_text(wanted[0])}) is in this "
                            f"supernet's space", "give a truth / scores for this space's archs")
        rng.shuffle(inside)
        return [space.arch(list(k)) for k in inside[:count]]
    archs, seen = [], set()
    for _ in range(count * 20):
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
        if len(archs) == count:
            break
    return archs


def _training_summary(checkpoint: Path) -> dict:
    from bertnas.storage.logs import read_log

    log = checkpoint.parent / "log.jsonl"
    if not log.is_file():
        return {}
    records = read_log(log)
    if not records:
        return {}
    last = records[-1]
    out = {"steps": last.get("step"), "last_loss": last.get("loss")}
    for key in ("sampler", "entropy"):
        if key in last:
            out[key] = last[key]
    return out


def trust_checks(checkpoint, truth=None, scores=None, archs: int = 24, seed: int = 0, eval_batches: int = 4,
                 interference: bool = True, ks=(1, 5, 10), progress: bool = False) -> dict:
    """Every number of the trust report (see the module doc). `truth` / `scores`: `ScoreSet`s
    (bertnas.analysis.io.load_values) or None."""
    from tqdm.auto import tqdm

    from bertnas.tasks import load_task

    from bertnas.analysis.bias import params_correlation, score_by_operator

    task = load_task(checkpoint)
    batches, held_info = task.heldout(eval_batches=eval_batches)
    if len(batches) < 2:
        raise UserError(f"the held-out set has {len(batches)} batch; the stability check needs 2",
                        "give more held-out data or --eval-batches 2 or more")
    higher = task.higher_is_better
    wanted = None
    if truth is not None:
        wanted = sorted(set(truth.values) & set(scores.values) if scores is not None else truth.values, key=key_text)
    elif scores is not None:
        wanted = sorted(scores.values, key=key_text)
    chosen = _choose_archs(task, wanted, archs, seed)
    if len(chosen) < 3:
        raise UserError(f"only {len(chosen)} archs to check", "give at least 3 archs (more than 20 for useful numbers)")
    half = len(batches) // 2
    full, first, second = task.evaluator(batches), task.evaluator(batches[:half]), task.evaluator(batches[half:])
    own, halves = {}, ({}, {})
    for arch in tqdm(chosen, desc="scoring archs", disable=not progress):
        key = arch_key(arch)
        own[key] = full(arch)
        halves[0][key], halves[1][key] = first(arch), second(arch)
    # Scores given: rank every arch they share with the truth; `archs` only bounds the scoring here.
    supernet = ({k: scores.values[k] for k in wanted if task.space.contains(list(k))} if scores is not None
                else own)
    supernet_higher = scores.higher_is_better if scores is not None else higher
    params = {k: float(task.space.params(list(k))) for k in supernet}
    checks: dict = {"checkpoint": str(task.ckpt), "metric": task.metric, "higher_is_better": higher,
                    "archs": len(supernet), "archs_scored_here": len(chosen), "heldout": held_info,
                    "training": _training_summary(Path(task.ckpt)),
                    "scores_from": scores.source if scores is not None else "scored here on the held-out set"}
    checks["stability"] = _safe(lambda: ranking_metrics(halves[0], halves[1], ks=(1,), higher_is_better_scores=higher,
                                                        higher_is_better_truth=higher))
    checks["params_bias"] = _safe(lambda: params_correlation(supernet, params, supernet_higher))
    checks["operator_bias"] = _safe(lambda: score_by_operator(supernet, supernet_higher))
    if truth is not None:
        truth_part = {k: truth.values[k] for k in supernet}
        checks["truth"] = {"source": truth.source, "higher_is_better": truth.higher_is_better}
        checks["ranking"] = _safe(lambda: ranking_metrics(supernet, truth_part, ks, supernet_higher,
                                                          truth.higher_is_better))
        checks["params_vs_truth"] = _safe(lambda: ranking_metrics(params, truth_part, ks, True, truth.higher_is_better))
    if interference:
        from bertnas.analysis.interference import gradient_interference

        checks["interference"] = _safe(lambda: _interference_summary(
            gradient_interference(task, batches=batches[:1], pairs=4, kinds=("same", "cross"), align=False,
                                  seed=seed, progress=progress)))
    return checks


def _safe(compute):
    """A check's numbers, or {"error": why} when the check cannot run (e.g. constant scores)."""
    try:
        return compute()
    except UserError as err:
        return {"error": str(err)}


def _interference_summary(result: dict) -> dict:
    ms = result["settings"]["ms"]
    out = {"layer": result["settings"]["layer_name"], "ms": ms, "pairs": result["settings"]["pairs"], "rows": {}}
    for row in result["rows"]:
        if row["m"] in (ms[0], ms[-1]):
            out["rows"][f"{row['kind']}_m{row['m']}"] = row["mean"]
    return out


def _verdict(checks: dict) -> tuple[str, list[str]]:
    """(one-sentence answer, next steps) from the numbers."""
    steps = []
    stability = checks.get("stability", {})
    stable_tau = stability.get("kendall_tau")
    ranking = checks.get("ranking")
    if stable_tau is not None and stable_tau < STABLE_TAU:
        steps.append(f"Score on more held-out data (`bertnas search --eval-batches` larger): two halves of the "
                     f"held-out set rank the same archs with tau {stable_tau:.2f} only.")
    if ranking is None:
        answer = ("Unknown: no ground truth was given, so only consistency could be checked. A consistent "
                  "ranking is necessary, not sufficient.")
        steps.append("Train a few archs stand-alone (`bertnas pretrain --arch ...`) or use a benchmark table, and "
                     "rerun with `--truth`.")
        return answer, steps
    if "error" in ranking:
        return f"Could not be measured: {ranking['error']}", steps
    tau, p = ranking["kendall_tau"], ranking["kendall_p"]
    params_tau = (checks.get("params_vs_truth") or {}).get("kendall_tau")
    if tau >= GOOD_TAU and p < SIGNIFICANT_P:
        answer = f"Yes, for ranking: Kendall tau {tau:.2f} with the ground truth over {ranking['n']} archs."
    elif tau >= COARSE_TAU and p < SIGNIFICANT_P:
        answer = (f"Only coarsely: Kendall tau {tau:.2f} over {ranking['n']} archs. Use it to discard the bad archs, "
                  "not to pick the single best one.")
        steps.append("Retrain the supernet's top 5-10 stand-alone and pick among them.")
    else:
        answer = (f"No: Kendall tau {tau:.2f} (p = {p:.2g}) over {ranking['n']} archs is not clearly above a random "
                  "ranking.")
        steps.append("Train the supernet longer, or with MAGIC-T (`--sampler walk`) / MAGIC-A (`--align`), and "
                     "check again.")
    if params_tau is not None and params_tau >= max(tau, COARSE_TAU):
        answer += (f" A parameter count alone ranks the same archs at least as well (tau {params_tau:.2f}): the "
                   "supernet adds nothing beyond size here.")
        steps.append("Prefer the free predictor (parameter count) until the supernet beats it.")
    return answer, steps


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def calibration_lines(calibration: dict) -> list[str]:
    """The calibration's verdict (which signal to use) and every signal's numbers, best first."""
    rows = {k: v for k, v in calibration.items() if isinstance(v, dict) and "ci95" in v}
    verdict = (calibration.get("verdict") or {}).get("text", "")
    settings = calibration.get("settings") or {}
    lines = [f"**Which signal to use.** {verdict}", "",
             f"On {settings.get('num_archs', '?')} labelled archs (truth: {settings.get('truth', '?')}); the hybrid's "
             "numbers are cross-validated (no arch is predicted by a fit that saw it).", "",
             "| signal | Kendall tau | 95 % interval | Spearman rho |", "|---|---|---|---|"]
    ordered = sorted(rows, key=lambda k: -(rows[k]["kendall_tau"] if rows[k]["kendall_tau"] == rows[k]["kendall_tau"]
                                           else -2))
    for name in ordered:
        m = rows[name]
        lo, hi = m["ci95"]["kendall_tau"]
        label = f"hybrid ({m.get('model')})" if name == "hybrid" else name
        lines.append(f"| {label} | {_fmt(m['kendall_tau'])} | {_fmt(lo, 2)} .. {_fmt(hi, 2)} | "
                     f"{_fmt(m['spearman_rho'])} |")
    return lines


def render_calibration(calibration: dict) -> str:
    return "\n".join(["# Which signal ranks this space best?", "", *calibration_lines(calibration), "",
                       "Details: calibration.json; search with the hybrid: `bertnas search --ranker ranker.json`."]) + "\n"


def render_report(checks: dict) -> str:
    answer, steps = _verdict(checks)
    lines = ["# Can this supernet's ranking be trusted?", "", f"**Answer.** {answer}", "",
             f"Checkpoint: `{checks['checkpoint']}`; score: {checks['metric']} "
             f"({'higher' if checks['higher_is_better'] else 'lower'} is better) on {checks['heldout'].get('rows', 'the')} "
             f"held-out rows; {checks['archs']} archs; supernet scores {checks['scores_from']}.", ""]
    training = checks.get("training") or {}
    if training:
        lines += [f"Training: {training.get('steps')} steps, last loss {_fmt(training.get('last_loss'))}.", ""]
    lines += ["## Checks", "", "| check | number | what it means |", "|---|---|---|"]
    ranking = checks.get("ranking")
    if ranking and "error" not in ranking:
        base = ranking["random_baseline"]
        lines.append(f"| Kendall tau vs truth | {ranking['kendall_tau']:.3f} (p {ranking['kendall_p']:.2g}) | "
                     f"1 = same order as the truth; a random ranking: 0 ± {base['kendall_tau_std']:.2f} |")
        lines.append(f"| Spearman rho vs truth | {ranking['spearman_rho']:.3f} | same scale as tau, rank-difference "
                     "based |")
        for k, row in ranking["top_k"].items():
            lines.append(f"| best truth in the supernet's top {k} | {row['best_truth']:.4g} (rank {row['best_truth_rank']}"
                         f" of {ranking['n']}) | {k} random picks: {row['random_best_truth_mean']:.4g} ± "
                         f"{row['random_best_truth_std']:.2g}; chance random does as well: {row['p_random_as_good']:.2f} |")
        params_vs = checks.get("params_vs_truth") or {}
        if "kendall_tau" in params_vs:
            lines.append(f"| parameter count vs truth (free predictor) | {params_vs['kendall_tau']:.3f} | the supernet "
                         "should beat this |")
    elif ranking:
        lines.append(f"| ranking vs truth | - | {ranking['error']} |")
    stability = checks.get("stability") or {}
    lines.append(f"| stability (tau between two held-out halves) | {_fmt(stability.get('kendall_tau'))} | below "
                 f"{STABLE_TAU} the scores move with the batches {stability.get('error', '')} |")
    bias = checks.get("params_bias") or {}
    lines.append(f"| size bias (tau of score with parameters) | {_fmt(bias.get('kendall_tau'))} | > 0: bigger archs "
                 f"score better; near 1: the supernet mostly measures size {bias.get('error', '')} |")
    ops = (checks.get("operator_bias") or {}).get("by_op") or {}
    if ops:
        names = list(ops)
        lines.append(f"| operator bias (mean rank percentile, 0 = top) | favoured: {names[0]} "
                     f"({ops[names[0]]['mean_percentile']:.2f}); least: {names[-1]} "
                     f"({ops[names[-1]]['mean_percentile']:.2f}) | 0.5 is neutral; check the truth agrees |")
    inter = checks.get("interference") or {}
    if inter.get("rows"):
        cells = ", ".join(f"{k} {v:.3f}" for k, v in inter["rows"].items())
        lines.append(f"| interference (gradient cosine at {inter['layer']}) | {cells} | 1 = subnets train the shared op "
                     "alike; lower with more changed layers / across op types = interference |")
    if checks.get("calibration"):
        lines += ["", "## Calibration: which signal to use", "", *calibration_lines(checks["calibration"])]
    lines += ["", "## What to do next", ""]
    lines += [f"- {step}" for step in steps] or ["- Nothing urgent: search with this supernet."]
    lines += ["", "Details: trust_report.json. How to read each check: docs/analysis.md."]
    return "\n".join(lines) + "\n"


def write_trust_report(checkpoint, output_dir=None, truth=None, scores=None, truth_field: str = "score",
                       truth_higher_is_better: bool | None = None, archs: int = 24, seed: int = 0,
                       eval_batches: int = 4, interference: bool = True, progress: bool = False,
                       calibration=None) -> Path:
    """Run the checks and write OUT/trust_report.md and .json (OUT default: the checkpoint's run
    folder). `truth` / `scores`: paths, `nb201:<dataset>` or loaded `ScoreSet`s. Returns the .md path."""
    from bertnas.storage.checkpoint import find_checkpoint

    from bertnas.analysis.io import ScoreSet, load_values

    if truth is not None and not isinstance(truth, ScoreSet):
        truth = load_values(truth, "truth", truth_field, truth_higher_is_better)
    if scores is not None and not isinstance(scores, ScoreSet):
        scores = load_values(scores, "scores")
    checks = trust_checks(checkpoint, truth, scores, archs=archs, seed=seed, eval_batches=eval_batches,
                          interference=interference, progress=progress)
    if calibration is not None:  # bertnas calibrate's calibration.json: the verdict names a signal
        checks["calibration"] = (calibration if isinstance(calibration, dict)
                                 else json.loads(Path(calibration).read_text()))
    out = Path(output_dir) if output_dir is not None else find_checkpoint(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(checks, indent=2, default=str))
    path = out / REPORT_FILE
    path.write_text(render_report(checks))
    return path
