"""bertnas.analysis: ranking metrics against scipy and hand cases, score loading, interference
on a model with a known answer, entropy from a hand-written log, bias, the trust report on a
tiny supernet, and the `bertnas analyze` command's outputs and errors."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from bertnas.analysis.bias import params_correlation, score_by_operator
from bertnas.analysis.entropy import entropy_over_training
from bertnas.analysis.interference import GradientProbe, cosine, gradient_interference, shared_op_parameters
from bertnas.analysis.io import load_values
from bertnas.analysis.ranking import arch_key, ranking_metrics
from bertnas.cli import main
from bertnas.core.errors import UserError
from bertnas.models.choice_modules import LayerChoice
from bertnas.spaces.base import SearchSpace
from bertnas.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
TOY_YAML = REPO / "recipes" / "configs" / "toy.yaml"


# -- ranking metrics ------------------------------------------------------------------------

def test_correlations_match_scipy_and_follow_the_directions():
    rng = np.random.default_rng(0)
    truth = {f"a{i}": float(v) for i, v in enumerate(rng.normal(size=30))}
    loss = {k: -v + float(rng.normal(scale=0.7)) for k, v in truth.items()}  # lower loss = better arch
    keys = sorted(truth)
    m = ranking_metrics(loss, truth, higher_is_better_scores=False, higher_is_better_truth=True)
    s, t = [-loss[k] for k in keys], [truth[k] for k in keys]
    assert m["n"] == 30
    assert m["kendall_tau"] == pytest.approx(stats.kendalltau(s, t).statistic)
    assert m["spearman_rho"] == pytest.approx(stats.spearmanr(s, t).statistic)
    assert m["kendall_tau"] > 0.3  # the scores were built to agree
    # Reading the loss as higher-is-better flips the sign; flipping both sides changes nothing.
    flipped = ranking_metrics(loss, truth, higher_is_better_scores=True, higher_is_better_truth=True)
    both = ranking_metrics({k: -v for k, v in loss.items()}, {k: -v for k, v in truth.items()},
                           higher_is_better_scores=True, higher_is_better_truth=False)
    assert flipped["kendall_tau"] == pytest.approx(-m["kendall_tau"])
    assert both["kendall_tau"] == pytest.approx(m["kendall_tau"])
    assert m["random_baseline"]["kendall_tau_std"] == pytest.approx(math.sqrt(2 * 65 / (9 * 30 * 29)))


def test_ties_and_two_archs():
    scores, truth = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    m = ranking_metrics(scores, truth, higher_is_better_scores=True)
    assert m["kendall_tau"] == pytest.approx(stats.kendalltau([1, 1, 2, 3], [1, 2, 3, 4]).statistic)  # tau-b
    assert m["kendall_tau"] < 1.0
    two = ranking_metrics({"a": 0.1, "b": 0.2}, {"a": 0.9, "b": 0.5})  # loss vs accuracy: agree
    assert (two["n"], two["kendall_tau"], two["spearman_rho"]) == (2, pytest.approx(1.0), pytest.approx(1.0))
    assert two["top_k"]["1"]["best_truth"] == 0.9 and set(two["top_k"]) == {"1", "2"}  # k clipped to n


@pytest.mark.parametrize("scores, truth, message", [
    ({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 1.0, "b": 2.0, "c": 3.0}, "every score value is 1"),
    ({"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 5.0}, "every truth value is 5"),
    ({"a": 1.0, "b": 2.0}, {"c": 1.0, "d": 2.0}, "no arch is in both"),
    ({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}, "at least 2"),
    ({"a": float("nan"), "b": 2.0}, {"a": 1.0, "b": 2.0}, "not a finite number"),
    ({"a": "x", "b": 2.0}, {"a": 1.0, "b": 2.0}, "not a number"),
])
def test_bad_inputs_give_clear_errors_not_nan(scores, truth, message):
    with pytest.raises(UserError, match=message):
        ranking_metrics(scores, truth)


def test_top_k_precision_and_ndcg_on_a_hand_case():
    truth = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}  # accuracy: a best
    loss = {"a": 0.3, "b": 0.1, "c": 0.2, "d": 0.4}  # the supernet's order: b, c, a, d
    m = ranking_metrics(loss, truth, ks=(1, 2))
    top1, top2 = m["top_k"]["1"], m["top_k"]["2"]
    assert (top1["archs"], top1["best_truth"], top1["best_truth_rank"], top1["precision"]) == (["b"], 3.0, 2, 0.0)
    assert (top2["archs"], top2["best_truth"], top2["precision"]) == (["b", "c"], 3.0, 0.5)
    # A random pick of 1: the mean truth; of 2: the best of a random pair (6 pairs, best 4,4,4,3,3,2).
    assert top1["random_best_truth_mean"] == pytest.approx(2.5)
    assert top1["random_best_truth_std"] == pytest.approx(math.sqrt(1.25))
    assert top1["p_random_as_good"] == pytest.approx(0.5)
    assert top2["random_best_truth_mean"] == pytest.approx(20 / 6)
    assert top2["random_precision_mean"] == pytest.approx(0.5)
    # NDCG@2: relevance a=1, b=2/3, c=1/3, d=0.
    dcg, ideal = 2 / 3 + (1 / 3) / math.log2(3), 1 + (2 / 3) / math.log2(3)
    assert m["ndcg"]["2"]["ndcg"] == pytest.approx(dcg / ideal)
    assert m["ndcg"]["1"]["random_mean"] == pytest.approx(0.5)  # mean relevance / ideal 1


def test_random_baseline_is_exact():
    rng = np.random.default_rng(1)
    truth = {f"a{i}": float(v) for i, v in enumerate(rng.normal(size=7))}
    scores = {k: float(rng.normal()) for k in truth}
    row = ranking_metrics(scores, truth, ks=(3,))["top_k"]["3"]
    bests = [max(truth[k] for k in subset) for subset in itertools.combinations(truth, 3)]
    assert row["random_best_truth_mean"] == pytest.approx(np.mean(bests))
    assert row["random_best_truth_std"] == pytest.approx(np.std(bests))
    assert row["p_random_as_good"] == pytest.approx(np.mean([b >= row["best_truth"] for b in bests]))


def test_one_arch_written_several_ways_is_one_key():
    ops = ["nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "skip_connect"]
    from bertnas.spaces.nb201 import to_string

    assert arch_key(to_string(ops)) == arch_key(ops) == arch_key(json.dumps(ops)) == arch_key(",".join(ops))


# -- loading --------------------------------------------------------------------------------

def test_load_values_reads_results_lists_and_mappings_with_their_direction(tmp_path):
    results = tmp_path / "evaluated.json"
    results.write_text(json.dumps([{"arch": ["mha12", "ffn"], "score": 2.5, "params": 10, "metric": "mlm_loss"},
                                   {"arch": ["conv3", "ffn"], "score": 2.9, "params": 7, "metric": "mlm_loss"}]))
    loaded = load_values(results, "truth")  # a loss even in the truth role: the file says so
    assert loaded.values == {("mha12", "ffn"): 2.5, ("conv3", "ffn"): 2.9}
    assert (loaded.higher_is_better, loaded.direction_from) == (False, "file")
    assert load_values(tmp_path, "scores").values == loaded.values  # a search output folder
    assert load_values(results, "scores", "params").values[("conv3", "ffn")] == 7
    mapping = tmp_path / "acc.json"
    mapping.write_text(json.dumps({"mha12,ffn": 0.8, "conv3,ffn": 0.7}))
    assert (load_values(mapping, "truth").higher_is_better, load_values(mapping, "scores").higher_is_better) == (True, False)
    assert load_values(mapping, "truth", higher_is_better=False).direction_from == "given"
    with pytest.raises(UserError, match="no field 'loss'"):
        load_values(results, "scores", "loss")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_values(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_values(tmp_path / "missing.json")
    with pytest.raises(UserError, match="unknown NB201 dataset"):
        load_values("nb201:cifar11")


# -- interference ---------------------------------------------------------------------------

class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


class SignChain(nn.Module):
    """A linear layer, then two layers that multiply by +1, +2 (family "pos") or -1, -3 ("neg").
    The loss is the sum of the output, so the linear layer's gradient is the product of the
    factors times one fixed matrix: two subnets' gradients are parallel, and opposite exactly
    when their factors' signs differ."""

    def __init__(self):
        super().__init__()
        scales = {"pos1": 1.0, "pos2": 2.0, "neg1": -1.0, "neg3": -3.0}
        self.layers = nn.ModuleList([LayerChoice({"lin": nn.Linear(3, 3)}, "layer_0")] + [
            LayerChoice({name: Scale(f) for name, f in scales.items()}, f"layer_{i}") for i in (1, 2)])

    def forward(self, x, arch):
        for layer, op in zip(self.layers, arch):
            x = layer(x, op=op)
        return x


class SignTask(Task):
    def __init__(self):
        super().__init__()
        self.model = SignChain()
        ops = ["pos1", "pos2", "neg1", "neg3"]
        self.space = SearchSpace({"layer_0": ["lin"], "layer_1": ops, "layer_2": ops})

    def loss_fn(self, model, batch, ops):
        out = model(batch["x"], ops)
        return out.sum(), out.shape[0]

    def choice_layers(self):
        return list(self.model.layers)


def test_interference_has_the_known_answer_on_a_sign_chain():
    task = SignTask()
    batch = {"x": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}
    result = gradient_interference(task, batches=[batch], pairs=6, align=False, progress=False)
    by = {(r["m"], r["kind"]): r for r in result["rows"]}
    assert result["settings"]["ms"] == [1, 2]
    assert by[(1, "same")]["mean"] == pytest.approx(1.0) and by[(1, "same")]["std"] == pytest.approx(0.0)
    assert by[(1, "cross")]["mean"] == pytest.approx(-1.0)  # one sign flip: opposite gradients
    assert by[(2, "same")]["mean"] == pytest.approx(1.0)
    assert by[(2, "cross")]["mean"] == pytest.approx(1.0)  # two sign flips cancel
    for pair in result["pairs"]:
        changed = [i for i, (x, y) in enumerate(zip(pair["a"], pair["b"])) if x != y]
        assert len(changed) == pair["m"] and 0 not in changed  # the shared op's layer never changes
        sign = math.prod(1 if op.startswith("pos") else -1 for op in pair["a"][1:] + pair["b"][1:])
        assert pair["cos"] == pytest.approx(sign)
    with pytest.raises(UserError, match="no candidate 'conv'"):
        shared_op_parameters(task, 0, "conv")
    # One op per family (e.g. {mha12, ffn, conv3}): no same-type change exists, and the result says so.
    task.space = SearchSpace({"layer_0": ["lin"], "layer_1": ["pos1", "neg1"], "layer_2": ["pos1", "neg1"]})
    result = gradient_interference(task, batches=[batch], pairs=2, align=False, progress=False)
    assert {r["kind"] for r in result["rows"]} == {"cross", "any"}
    assert any("same type: 0 of 2 pairs" in note for note in result["notes"])


# -- entropy, bias --------------------------------------------------------------------------

def test_entropy_from_a_hand_written_log(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [
        {"step": 1, "loss": 2.0, "arch_weights": {"e0": {"a": 0.5, "b": 0.5}, "e1": {"a": 0.25, "b": 0.25, "c": 0.5}}},
        {"step": 2, "loss": 1.9},  # a step without weights is skipped
        {"step": 3, "loss": 1.8, "arch_weights": {"e0": {"a": 1.0, "b": 0.0}, "e1": {"a": 0.0, "b": 0.0, "c": 1.0}}},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n{cut mid-wri")
    result = entropy_over_training(log)
    h1 = (math.log(2) + (2 * 0.25 * math.log(4) + 0.5 * math.log(2))) / 2
    assert result["steps"] == [1, 3]
    assert result["mean_entropy"] == pytest.approx([h1, 0.0])
    assert result["mean_normalized"][0] == pytest.approx((1.0 + 1.5 * math.log(2) / math.log(3)) / 2)
    assert result["final"]["e1"] == {"op": "c", "weight": 1.0, "normalized_entropy": 0.0}
    spos = tmp_path / "spos.jsonl"
    spos.write_text(json.dumps({"step": 1, "loss": 2.0, "arch": ["a"]}) + "\n")
    with pytest.raises(UserError, match="no step with 'arch_weights'"):
        entropy_over_training(spos)


def test_size_and_operator_bias_on_a_hand_case():
    loss = {("big", "big"): 1.0, ("big", "small"): 2.0, ("small", "big"): 3.0, ("small", "small"): 4.0}
    params = {("big", "big"): 40, ("big", "small"): 30, ("small", "big"): 20, ("small", "small"): 10}
    assert params_correlation(loss, params)["kendall_tau"] == pytest.approx(1.0)  # bigger = better here
    ops = score_by_operator(loss)
    assert ops["by_layer"]["0"]["big"] == {"n": 2, "mean_score": 1.5, "mean_percentile": pytest.approx(1 / 6)}
    assert list(ops["by_op"]) == ["big", "small"]  # favoured first


# -- a tiny real supernet: report, interference with alignment, the CLI -------------------------

@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory):
    from bertnas.pipelines.pretrain import pretrain

    out = tmp_path_factory.mktemp("analysis") / "run"
    # The toy recipe (2 layers x 7 ops, MAGIC-T + MAGIC-A) for 4 steps: a real checkpoint with a base subnet.
    pretrain(dict(config=str(TOY_YAML), output_dir=str(out), max_steps=4, save_steps=4, keep_last=1, progress=False))
    return out


def test_interference_with_alignment_on_a_tiny_supernet(tiny_supernet):
    from bertnas.tasks import load_task

    task = load_task(tiny_supernet)
    result = gradient_interference(task, pairs=2, max_m=1, shared_ops=["ffn"], kinds=("same", "cross"),
                                   progress=False)
    assert {(r["kind"], r["aligned"]) for r in result["rows"]} == {(k, a) for k in ("same", "cross") for a in (False, True)}
    assert all(-1.0 <= p["cos"] <= 1.0 and -1.0 <= p["cos_aligned"] <= 1.0 for p in result["pairs"])
    assert result["settings"]["align"]["base_arch"] == task.run_state["aligner"]["base_arch"]  # the run's base
    # Eval mode, fixed batch: one subnet's gradient is the same vector every time.
    batches, _ = task.heldout(eval_batches=1)
    from bertnas.supernet.scoring import prepare_batch

    probe = GradientProbe(task, [prepare_batch(batches[0], "cpu")], shared_op_parameters(task, 0, "ffn"))
    arch = task.space.arch(["ffn", "conv3"])
    first = probe.gradient(arch)
    probe.cache.clear()
    assert cosine(first, probe.gradient(arch)) == pytest.approx(1.0, abs=1e-9)


def test_trust_report_on_a_tiny_supernet(tiny_supernet, tmp_path):
    from bertnas.analysis.report import write_trust_report
    from bertnas.tasks import load_task

    space = load_task(tiny_supernet).space
    archs = [space.arch([a, b]) for a in ("mha12", "ffn", "conv3", "ffn_wide") for b in ("mha6", "ffn", "conv5")]
    truth = tmp_path / "truth.json"  # a truth that is exactly the parameter count
    truth.write_text(json.dumps({",".join(a.ops): float(space.params(a)) for a in archs}))
    path = write_trust_report(tiny_supernet, tmp_path / "out", truth=truth, archs=12, eval_batches=2)
    checks = json.loads((tmp_path / "out" / "trust_report.json").read_text())
    text = path.read_text()
    assert checks["archs"] == 12 and checks["ranking"]["n"] == 12
    assert checks["params_vs_truth"]["kendall_tau"] == pytest.approx(1.0)
    assert f"{checks['ranking']['kendall_tau']:.3f}" in text and "stability" in text and "interference" in text
    assert "parameter count alone ranks the same archs at least as well" in text  # nothing beats tau 1
    # Scores computed elsewhere (a search's evaluated.json) are used as given, on the archs both hold.
    scores = tmp_path / "evaluated.json"
    scores.write_text(json.dumps([{"arch": list(a.ops), "score": float(i), "metric": "mlm_loss"}
                                  for i, a in enumerate(archs[:6])]))
    write_trust_report(tiny_supernet, tmp_path / "out2", truth=truth, scores=scores, eval_batches=2, interference=False)
    checks = json.loads((tmp_path / "out2" / "trust_report.json").read_text())
    assert checks["scores_from"] == str(scores) and checks["ranking"]["n"] == 6
    assert checks["ranking"]["kendall_tau"] == pytest.approx(ranking_metrics(
        {",".join(a.ops): float(i) for i, a in enumerate(archs[:6])},
        {",".join(a.ops): float(space.params(a)) for a in archs[:6]})["kendall_tau"])


def test_analyze_cli_outputs_and_errors(tmp_path, capsys):
    truth = {f"a{i}": float(i) for i in range(12)}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "scores.json").write_text(json.dumps([{"arch": k, "score": -v + (i % 3), "metric": "loss"}
                                                      for i, (k, v) in enumerate(truth.items())]))
    out = tmp_path / "out"
    assert main(["analyze", "ranking", "--scores", str(tmp_path / "scores.json"), "--truth",
                 str(tmp_path / "truth.json"), "--output-dir", str(out)]) == 0
    written = json.loads((out / "ranking.json").read_text())
    assert {"kendall_tau", "spearman_rho", "n", "top_k", "ndcg", "random_baseline"} <= set(written)
    assert written["n"] == 12 and written["kendall_tau"] > 0.5 and (out / "ranking.png").stat().st_size > 0
    assert json.loads(capsys.readouterr().out)["kendall_tau"] == pytest.approx(written["kendall_tau"])
    (tmp_path / "flat.json").write_text(json.dumps({k: 1.0 for k in truth}))
    assert main(["analyze", "ranking", "--scores", str(tmp_path / "flat.json"), "--truth",
                 str(tmp_path / "truth.json"), "--output-dir", str(out)]) == 2
    assert "every score value is 1" in capsys.readouterr().err
    assert main(["analyze", "ranking", "--scores", str(tmp_path / "none.json"), "--truth",
                 str(tmp_path / "truth.json"), "--output-dir", str(out)]) == 2
    assert "none.json does not exist" in capsys.readouterr().err
    assert main(["analyze", "entropy", "--log", str(tmp_path / "truth.json"), "--output-dir", str(out)]) == 2
    assert "no step with 'arch_weights'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "ranking", "--scores", "x"])
    assert exit_info.value.code == 2
