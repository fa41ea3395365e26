"""bench/calibration_toy.py end to end on a tiny setting (the toy benchmark's truth, supernet,
proxies, the held-out evaluation), its cache, its worker processes; the held-out evaluation
shared with bench/calibration_nb201.py."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench_script

from bertnas.storage.strict_json import finite_or_none

cal = load_bench_script("calibration_toy")


def tiny_args(corpus, out, *extra):
    return ["--data", str(corpus), "--output-dir", str(out / "cache"), "--json", str(out / "cal.json"),
            "--plot", str(out / "cal.png"), "--layers", "2", "--candidates", "mha2,ffn,identity", "--hidden", "16",
            "--intermediate", "32", "--seq-len", "16", "--vocab", "200", "--batch-size", "4", "--warmup-steps", "1",
            "--truth-archs", "8", "--truth-steps", "3", "--supernet-steps", "3", "--variants", "spos",
            "--eval-batches", "2", "--eval-batch-size", "4", "--proxy-batch-size", "4", "--ks", "4",
            "--repeats", "1", "--bootstrap", "10", *extra]


def test_calibration_toy_end_to_end_and_rerun_trains_only_what_is_missing(tiny_corpus, tmp_path, monkeypatch):
    report = cal.main(tiny_args(tiny_corpus, tmp_path))
    saved = json.loads((tmp_path / "cal.json").read_text())
    assert saved["per_k"] == finite_or_none(report["per_k"])  # strict JSON: no bare NaN
    assert (tmp_path / "cal.png").stat().st_size > 0
    assert saved["command"].startswith("OMP_NUM_THREADS=1 python bench/calibration_toy.py --data")
    assert len(saved["machine"]["load_before"]) == 3 and len(saved["machine"]["load_after"]) == 3
    assert saved["wall_s"] > 0 and saved["settings"]["benchmark"]["truth_steps"] == 3
    assert saved["pool"] == 8 and saved["space_size"] == 9 and len(saved["truth_loss"]) == 8
    assert saved["heldout_fingerprint"]  # truth and supernet scored on the same held-out batches
    signals = saved["signals"]
    assert signals[0] == "supernet:spos" and "zc:synflow" in signals and "zc:params" in signals
    assert [s for s in signals if s.startswith("count:")] == ["count:mha2", "count:ffn", "count:identity"]
    summary = saved["per_k"]["4"]["summary"]
    for name in ["hybrid", *signals]:  # every single signal and the hybrid, with an interval
        assert set(summary[name]["seed0"]) == {"kendall_tau", "spearman_rho", "ci95"}
        assert "kendall_tau_mean" in summary[name] and "kendall_tau_std" in summary[name]
    run = saved["per_k"]["4"]["runs"][0]
    assert len(run["labelled"]) == 4 and run["held_out"] == 4 and run["hybrid"]["model"] in saved["rankers"]
    assert all(math.isfinite(v) for v in saved["supernet_loss"]["spos"]["0"].values())
    assert set(saved["zero_cost"]) == set(saved["truth_loss"])

    # a rerun trains only the truth arch whose run is gone; everything else comes from the cache
    import bertnas.pipelines.pretrain as pipeline

    trained, real = [], pipeline.pretrain

    def counting(config, *a, **k):
        trained.append(config["output_dir"])
        return real(config, *a, **k)

    monkeypatch.setattr(pipeline, "pretrain", counting)
    gone = min((tmp_path / "cache" / "truth-s0").iterdir())
    shutil.rmtree(gone)
    cal.main(tiny_args(tiny_corpus, tmp_path))
    assert trained == [str(gone)]
    again = json.loads((tmp_path / "cal.json").read_text())
    assert again["truth_loss"] == saved["truth_loss"] and again["zero_cost"] == saved["zero_cost"]
    assert again["per_k"] == saved["per_k"] and again["supernet_loss"] == saved["supernet_loss"]


def test_k_that_leaves_too_few_held_out_archs_is_refused(tiny_corpus, tmp_path):
    with pytest.raises(SystemExit):
        cal.parse_args(tiny_args(tiny_corpus, tmp_path, "--ks", "7"))


@pytest.mark.slow
def test_truth_in_worker_processes_scores_as_in_one(tiny_corpus, tmp_path):
    toy = cal.toy
    scores = {}
    for workers in (1, 2):
        _, args = cal.parse_args(tiny_args(tiny_corpus, tmp_path / f"w{workers}", "--truth-archs", "3", "--ks", "1"))
        bench = toy.Bench(args)
        archs = bench.truth_archs()[:2]
        done = toy.truth_many(bench, archs, 0, workers)
        scores[workers] = {toy.arch_name(a): r["scores"][toy.arch_name(a)] for a, r in done.items()}
    assert scores[1] == scores[2] and len(scores[1]) == 2


def test_held_out_evaluation_judges_signals_on_the_archs_not_labelled():
    from bertnas.spaces.nb201 import Nb201Space, to_string

    common = load_bench_script("calibration_common")
    space = Nb201Space()
    rng = np.random.default_rng(0)
    pool = sorted({to_string(space.sample(int(s)).ops) for s in rng.integers(0, 10**6, 40)})
    arch_of = {a: space.arch(a) for a in pool}
    truth = {a: float(rng.normal()) for a in pool}
    signals = {"perfect": dict(truth), "reversed": {a: -v for a, v in truth.items()},
               "noise": {a: float(rng.normal()) for a in pool}}
    size = {a: float(space.params(arch_of[a])) for a in pool}
    lines = []
    per_k = common.held_out_evaluation(pool, signals, truth, arch_of, space, size, [10], 2, 20, log=lines.append)
    runs, summary = per_k["10"]["runs"], per_k["10"]["summary"]
    assert len(lines) == 2 and all(r["held_out"] == len(pool) - 10 for r in runs)
    assert all(not set(r["labelled"]) & (set(pool) - set(r["labelled"])) for r in runs)
    assert summary["perfect"]["kendall_tau_mean"] == pytest.approx(1.0)
    assert summary["reversed"]["kendall_tau_mean"] == pytest.approx(-1.0)
    assert summary["hybrid"]["kendall_tau_mean"] > 0.5  # it learns the perfect column
    assert summary["perfect"]["seed0"]["ci95"]["kendall_tau"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert len(summary["hybrid"]["models_chosen"]) == 2
    rows = common.tau_rows(per_k, [10], ["hybrid", "noise"])
    assert rows["noise"]["mean"] == [summary["noise"]["kendall_tau_mean"]]


def test_calibration_nb201_runs_on_the_shared_tables(tmp_path):
    from bertnas.spaces.nb201 import default_benchmark_path

    nb = load_bench_script("calibration_nb201")
    needed = [Path(nb.SHARED) / "nasbench" / "naslib" / "zc_nasbench201.json", default_benchmark_path()]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"the NB201 tables are not in ../shared/data ({', '.join(missing)} missing)")
    out = nb.main(["--ks", "10", "--repeats", "1", "--bootstrap", "0", "--json", str(tmp_path / "nb.json"),
                   "--plot", str(tmp_path / "nb.png")])
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert saved["pool"] == out["pool"] > 100 and saved["ks"] == [10]
    assert set(saved["per_k"]["10"]["summary"]) >= {"hybrid", "naslib:synflow", "ranker_cv_mean"}
    assert (tmp_path / "nb.png").stat().st_size > 0
