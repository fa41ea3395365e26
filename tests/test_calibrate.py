"""bertnas calibrate on the toy supernet (K = 6, tiny steps), the hybrid ranker in search, the
calibration pieces on hand cases, and the one-line errors of bad input."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from bertnas.analysis.calibration import (HybridRanker, bootstrap_metrics, choose_covering_archs, compare_rankers,
                                          space_identity, verdict)
from bertnas.core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TOY_YAML = REPO / "recipes" / "configs" / "toy.yaml"


def test_covering_archs_fill_the_score_size_grid():
    pool = list(range(100))
    score = {a: (a % 10) * 10 + a // 10 for a in pool}  # distinct scores ...
    size = {a: (a // 10) * 10 + a % 10 for a in pool}  # ... crossed with distinct sizes
    chosen = choose_covering_archs(pool, score, size, 9, seed=0)
    assert len(set(chosen)) == 9
    # a 3 x 3 grid of tertiles: one arch in each cell
    cells = {(score[a] * 3 // 100, size[a] * 3 // 100) for a in chosen}
    assert len(cells) == 9
    assert chosen == choose_covering_archs(pool, score, size, 9, seed=0)  # seeded
    assert chosen != choose_covering_archs(pool, score, size, 9, seed=1)


def test_k_larger_than_the_space_is_one_line():
    with pytest.raises(UserError, match="larger than the space .49 archs.*--num-archs 49 or fewer"):
        choose_covering_archs(list(range(49)), {}, {a: a for a in range(49)}, 50, space_size=49)


def test_bootstrap_interval_holds_the_estimate():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    pred = truth + rng.normal(scale=0.5, size=40)
    m = bootstrap_metrics(pred, truth, n_boot=300)
    lo, hi = m["ci95"]["kendall_tau"]
    assert lo < m["kendall_tau"] < hi and 0 < lo and hi <= 1
    assert bootstrap_metrics(truth, truth, n_boot=50)["kendall_tau"] == pytest.approx(1.0)
    # non-finite values (a proxy that cannot score a cell) rank below every finite one
    assert bootstrap_metrics([-np.inf, 1.0, 2.0], [0.0, 1.0, 2.0], n_boot=0)["kendall_tau"] == pytest.approx(1.0)


def test_rankers_learn_a_signal_and_ignore_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    truth = 2 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=40)
    cv = compare_rankers(x, truth, ("ridge", "lasso"), seed=0, n_boot=0)
    assert cv["ridge"]["kendall_tau"] > 0.6  # cross-validated: no row is predicted by a fit that saw it


def test_best_single_ranker_follows_the_one_feature_that_orders_the_truth():
    """`best_single` picks the feature most correlated with the truth's rank (either sign) and
    predicts with it alone; a constant column is never picked."""
    from bertnas.analysis.calibration import build_model

    rng = np.random.default_rng(0)
    signal = rng.normal(size=30)
    x = np.column_stack([np.ones(30), rng.normal(size=30), -signal + 0.05 * rng.normal(size=30)])
    truth = signal
    model = build_model("best_single", 30).fit(x, truth)
    assert model[-2].get_support().tolist() == [False, False, True]
    fresh = np.column_stack([np.ones(5), rng.normal(size=5), np.linspace(1.0, -1.0, 5)])  # inside the fitted range
    assert np.all(np.diff(model.predict(fresh)) > 0)  # higher truth for a lower third column


def test_verdict_names_the_best_signal():
    metrics = {"supernet": {"kendall_tau": 0.3, "ci95": {"kendall_tau": [0.1, 0.5]}},
               "hybrid": {"kendall_tau": 0.8, "ci95": {"kendall_tau": [0.6, 0.9]}}}
    v = verdict(metrics)
    assert v["use"] == "hybrid" and v["clear"] and "Use the hybrid ranking: Kendall tau 0.80" in v["text"]
    metrics["supernet"]["kendall_tau"] = 0.7
    assert not verdict(metrics)["clear"]


# -- the toy supernet --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, tiny_corpus):
    from bertnas.pipelines.pretrain import pretrain

    out = tmp_path_factory.mktemp("calibrate") / "run"
    pretrain(dict(config=str(TOY_YAML), data=str(tiny_corpus), output_dir=str(out), max_steps=4, save_steps=4,
                  keep_last=1, progress=False, tokenizer_vocab_size=120))
    return out


@pytest.fixture(scope="module")
def calibrated(toy_run, tmp_path_factory):
    from bertnas.pipelines.calibrate import calibrate

    out = tmp_path_factory.mktemp("calibrate") / "cal"
    report = calibrate(toy_run, 6, 2, out, n_boot=50, proxy_batch_size=4, eval_batches=1)
    return out, report


def test_calibrate_on_the_toy_supernet(calibrated):
    from bertnas.analysis.zero_cost import PROXIES

    out, report = calibrated
    data = json.loads((out / "calibration.json").read_text())
    for name in ("supernet", "hybrid", *PROXIES):
        entry = data[name]
        assert entry["n"] == 6
        assert {"kendall_tau", "spearman_rho", "ci95"} <= set(entry)
        assert set(entry["ci95"]) == {"kendall_tau", "spearman_rho"}
    assert data["hybrid"]["model"] in data["ranker_comparison"]
    assert data["verdict"]["use"] and data["verdict"]["text"].startswith("Use the ")
    assert len(data["labelled"]) == 6 and len(list((out / "standalone").iterdir())) == 6
    ranker = json.loads((out / "ranker.json").read_text())
    assert len(ranker["rows"]) == 6 and ranker["space"]["choices"]
    assert len(json.loads((out / "predictions.json").read_text())) == 49  # the whole toy space
    md = (out / "calibration.md").read_text()
    assert "**Which signal to use.** Use the " in md and "| hybrid (" in md


def test_calibrate_reuses_the_trained_archs(calibrated, toy_run):
    from bertnas.pipelines.calibrate import calibrate

    out, report = calibrated
    stamps = {p: p.stat().st_mtime for p in (out / "standalone").glob("*/truth.json")}
    again = calibrate(toy_run, 6, 2, out, n_boot=50, proxy_batch_size=4, eval_batches=1, proxies=["params"])
    assert {p: p.stat().st_mtime for p in (out / "standalone").glob("*/truth.json")} == stamps
    assert again["labelled"] == report["labelled"]


def test_search_with_the_ranker(calibrated, toy_run, tmp_path):
    from bertnas.analysis.calibration import ranker_rescorer
    from bertnas.search.api import search

    out, _ = calibrated
    entries = search(toy_run, "random", tmp_path / "s", num_samples=4, eval_batches=1, progress=False,
                     rescore=ranker_rescorer(out / "ranker.json"))
    scores = [e["score"] for e in entries]
    assert scores == sorted(scores, reverse=True)  # predictions: higher is better
    assert json.loads((tmp_path / "s" / "search.json").read_text())["metric"] == "hybrid_prediction"
    assert json.loads((tmp_path / "s" / "results.json").read_text())[0]["metric"] == "hybrid_prediction"


def test_ranker_from_another_space_is_one_line(calibrated):
    from bertnas.spaces.nb201 import Nb201Space

    out, _ = calibrated
    with pytest.raises(UserError, match="fitted on another space.*run bertnas calibrate on this checkpoint"):
        HybridRanker.load(out / "ranker.json", space_identity(Nb201Space()))


def test_bad_calibrate_inputs_are_one_line(toy_run, tmp_path, capsys):
    from bertnas.cli import main

    assert main(["calibrate", "--checkpoint", str(toy_run), "--num-archs", "50", "--output-dir",
                 str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the loading bars: one line
    assert err.startswith("error: ") and "larger than the space (49 archs)" in err and "--num-archs 49 or fewer" in err
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"ffn,ffn": 1.0, "mha12,ffn": 2.0}))
    assert main(["calibrate", "--checkpoint", str(toy_run), "--num-archs", "6", "--truth", str(truth),
                 "--proxies", "params", "--output-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "calibration needs at least 5" in err


def test_analyze_zero_cost_cli(tmp_path, capsys):
    from bertnas.cli import main

    archs = tmp_path / "archs.json"
    archs.write_text(json.dumps(["|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|"
                                 "nor_conv_3x3~2|", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]))
    data = REPO.parent / "shared" / "data" / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
    if not data.is_file():
        pytest.skip("no local CIFAR-10 subset")
    assert main(["analyze", "zero-cost", "--space", "nb201", "--archs", str(archs), "--data", str(data),
                 "--batch-size", "4", "--proxies", "params,synflow,nwot", "--output-dir", str(tmp_path / "z")]) == 0
    values = json.loads((tmp_path / "z" / "zero_cost.json").read_text())
    assert list(values) == json.loads(archs.read_text())
    assert values["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]["synflow"] == 0.0
    assert main(["analyze", "zero-cost", "--space", "nb201", "--archs", str(tmp_path / "nope.json"),
                 "--output-dir", str(tmp_path / "z2")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_standalone_trainings_in_worker_processes_score_as_in_one(toy_run, tmp_path):
    from bertnas.pipelines.calibrate import train_standalone_many
    from bertnas.tasks import load_task

    task = load_task(toy_run, "cpu")
    batches, _ = task.heldout(eval_batches=1)
    archs = [task.space.sample(random.Random(seed)) for seed in (1, 2)]
    scores = {}
    for workers in (1, 2):
        folders = {a: tmp_path / f"w{workers}" / f"arch{i}" for i, a in enumerate(archs)}
        scores[workers] = train_standalone_many(task, archs, 2, folders, batches, workers=workers)
        assert all((f / "truth.json").is_file() for f in folders.values())
    # the same trainings: equal up to the intra-op thread count's summation order
    assert scores[2] == pytest.approx(scores[1], rel=1e-5, abs=1e-6)
