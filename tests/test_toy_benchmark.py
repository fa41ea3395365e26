"""bench/toy_nas_benchmark.py end to end on a tiny setting, its leave-one-out baseline, and the
NASLib -> NB201 arch encoding of bench/nb201_ranking.py."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench_script

toy = load_bench_script("toy_nas_benchmark")


@pytest.fixture
def text_file(tmp_path):
    rng = random.Random(0)
    words = ("the cat sat on a mat while dogs ran past old trees near quiet rivers and birds sang "
             "over green hills in spring").split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 20))) + "." for _ in range(400)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_args(text_file, out):
    return ["--data", str(text_file), "--output-dir", str(out / "cache"), "--json", str(out / "toy.json"),
            "--plot", str(out / "toy.png"), "--layers", "2", "--candidates", "mha2,ffn,identity", "--hidden", "16",
            "--intermediate", "32", "--seq-len", "16", "--vocab", "200", "--batch-size", "4", "--warmup-steps", "1",
            "--truth-archs", "4", "--noise-archs", "4", "--truth-steps", "3", "--supernet-steps", "3",
            "--seeds", "2", "--variants", "spos,magic-t+a", "--eval-batches", "2", "--eval-batch-size", "4"]


def test_toy_benchmark_end_to_end_and_rerun_from_cache(text_file, tmp_path, monkeypatch):
    report = toy.main(tiny_args(text_file, tmp_path))
    saved = json.loads((tmp_path / "toy.json").read_text())
    assert saved["summary"] == report["summary"]
    assert (tmp_path / "toy.png").stat().st_size > 0
    assert saved["space_size"] == 9
    assert len(saved["truth"]["seed0"]) == 4 and set(saved["truth"]["seed1"]) == set(saved["truth"]["seed0"])
    # every truth arch trained twice: also compared against the mean of the two seeds
    two = saved["vs_mean_of_two_seeds"]
    assert [r["name"] for r in two["summary"]] == [r["name"] for r in saved["summary"]]
    for variant in ("spos", "magic-t+a"):
        for seed in ("0", "1"):  # every supernet scored every truth arch
            scores = saved["supernet_scores"][variant][seed]
            assert set(scores) == set(saved["truth"]["seed0"])
            assert all(math.isfinite(v) and v > 0 for v in scores.values())
    names = [row["name"] for row in saved["summary"]]
    assert names == ["spos", "magic-t+a", "params (more is better)", "ridge per-layer ops (LOO)", "ridge op counts (LOO)"]
    spos = saved["summary"][0]["kendall_tau"]
    assert len(spos["values"]) == 2 and spos["mean"] == pytest.approx(np.mean(spos["values"]))
    assert saved["noise_floor"]["n"] == 4 and -1.0 <= saved["noise_floor"]["kendall_tau"] <= 1.0
    assert set(saved["op_effects"]) == {"truth", "spos", "magic-t+a"}
    assert set(saved["op_effects"]["truth"]) == {"ffn (vs mha2)", "identity (vs mha2)"}
    assert saved["heldout_fingerprint"]  # every run scored on the same held-out batches
    # checkpoints are deleted once scored; the scores stay
    cache = tmp_path / "cache"
    assert not list(cache.glob("**/checkpoint-*")) and len(list(cache.glob("**/scores.json"))) == 4 + 4 + 4

    def no_training(*a, **k):
        raise AssertionError("a cached run was trained again")

    import bertnas.train.trainer as trainer

    monkeypatch.setattr(trainer, "pretrain", no_training)
    again = toy.main(tiny_args(text_file, tmp_path))
    assert again["truth"] == saved["truth"] and again["summary"] == saved["summary"]
    # the cache belongs to one setting: other training steps would mix runs, so they are refused
    other = tiny_args(text_file, tmp_path)
    other[other.index("--truth-steps") + 1] = "4"
    with pytest.raises(SystemExit, match="truth_steps"):
        toy.main(other)


def test_ridge_loo_never_sees_the_target_it_predicts():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(12, 3)).astype(float)
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0
    pred = toy.ridge_loo(x, y, alpha=1e-8)
    assert pred == pytest.approx(y, abs=1e-5)  # exact linear data: recovered
    changed = y.copy()
    changed[4] += 100.0  # arch 4's own target changes: its prediction must not
    assert toy.ridge_loo(x, changed, alpha=1e-8)[4] == pytest.approx(pred[4], abs=1e-5)


def test_naslib_indices_to_nb201_string():
    nb = load_bench_script("nb201_ranking")
    # NASLib edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4); ops skip, none, conv3, conv1, pool
    assert nb.naslib_to_string((0, 1, 2, 3, 4, 0)) == (
        "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|")


def test_zero_cost_infinite_scores_rank_last_or_first_and_nan_is_dropped():
    nb = load_bench_script("nb201_ranking")
    values, infinite = nb.finite_ranks({"a": 2.0, "b": float("-inf"), "c": 5.0, "d": float("inf"), "e": float("nan")})
    assert infinite == 2 and set(values) == {"a", "b", "c", "d"}
    assert values["b"] < values["a"] < values["c"] < values["d"]


def test_nb201_scoring_resumes_from_its_partial_file_for_the_same_checkpoint(tmp_path, monkeypatch):
    import types

    import torch

    import bertnas.supernet.scoring as scoring
    from bertnas.spaces.nb201 import Nb201Space, to_string

    nb = load_bench_script("nb201_ranking")
    scored = []

    class CountingEvaluator:  # the real evaluator's interface: per-batch scores through loss_fn
        def __init__(self, model, batches, loss_fn, **kwargs):
            self.model, self.batches, self.loss_fn = model, batches, loss_fn

        def batch_scores(self, arch):
            scored.append(arch.ops)
            return [float(self.loss_fn(self.model, b, arch.ops)[0]) for b in self.batches]

    def model(pixel_values, arch):  # logits that depend on the arch
        weight = float(sum(len(op) for op in arch))
        return types.SimpleNamespace(logits=torch.stack([pixel_values.sum((1, 2, 3)) * weight, -pixel_values.sum((1, 2, 3))], 1))

    monkeypatch.setattr(scoring, "Evaluator", CountingEvaluator)
    space = Nb201Space(4, 1)
    task = types.SimpleNamespace(model=model, space=space, calibration_batches=lambda: [])
    batches = [{"pixel_values": torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(i)),
                "labels": torch.tensor([0, 1, 0, 1])} for i in range(2)]
    archs = [to_string(space.sample(seed).ops) for seed in range(5)]
    partial = tmp_path / "scores.partial.json"
    first, _ = nb.score_both(task, batches, archs[:3], "t", partial, "checkpoint-00000010")
    assert len(scored) == 3 and set(first["cross_entropy"]) == set(archs[:3])
    again, _ = nb.score_both(task, batches, archs, "t", partial, "checkpoint-00000010")
    assert len(scored) == 5  # only the two new archs were scored
    assert {a: again["cross_entropy"][a] for a in archs[:3]} == first["cross_entropy"]
    nb.score_both(task, batches, archs[:2], "t", partial, "checkpoint-00000020")  # another checkpoint: from scratch
    assert len(scored) == 7


def test_nb201_deiso_run_scores_each_arch_by_its_class_representative(tmp_path, monkeypatch):
    """A de-isomorphic supernet trained only one arch per class: every member gets its
    representative's scores, and each representative is scored once."""
    import types

    import bertnas.storage.checkpoint as checkpoint
    import bertnas.tasks as tasks
    from bertnas.spaces.nb201 import Nb201Space, to_string

    nb = load_bench_script("nb201_ranking")
    space = Nb201Space(4, 1)
    members = next(m for m in space.isomorphism_classes().values() if len(m) >= 3)
    other = next(m for m in space.isomorphism_classes().values() if m[0] not in members)
    archs = [to_string(members[2].ops), to_string(members[1].ops), to_string(other[0].ops)]
    task = types.SimpleNamespace(space=space, heldout=lambda **kw: ([], {}), run_state={"step": 7},
                                 data_options={"train_rows": 10})
    monkeypatch.setattr(checkpoint, "verified_checkpoint", lambda folder: Path(folder) / "checkpoint-00000007")
    monkeypatch.setattr(tasks, "load_task", lambda ckpt, device: task)
    seen = []

    def fake_score_both(task, batches, archs, label, partial, checkpoint):
        seen.extend(archs)
        return ({"cross_entropy": {a: float(i) for i, a in enumerate(archs)}, "accuracy": {a: 0.5 for a in archs}},
                {a: 0.1 for a in archs})

    monkeypatch.setattr(nb, "score_both", fake_score_both)
    args = types.SimpleNamespace(eval_batches=1, batch_size=4)
    run = nb.score_run(args, tmp_path, archs, "deiso", by_representative=True)
    assert seen == [to_string(members[0].ops), to_string(other[0].ops)]
    assert run["scores"] == {archs[0]: 0.0, archs[1]: 0.0, archs[2]: 1.0}
    assert set(run["scores_accuracy"]) == set(run["noise_cross_entropy"]) == set(archs)
    seen.clear()
    plain = nb.score_run(args, tmp_path, archs, "spos")
    assert seen == archs and len(set(plain["scores"].values())) == 3


def test_nb201_cached_scores_are_reused_only_for_the_checkpoint_they_scored(tmp_path, monkeypatch):
    """A run scored part-way and then resumed is scored again, not served its old scores."""
    import bertnas.storage.checkpoint as checkpoint

    nb = load_bench_script("nb201_ranking")
    monkeypatch.setattr(checkpoint, "find_checkpoint", lambda run: Path(run) / "checkpoint-00000020")
    assert not nb._scored_latest(tmp_path, "fair", {"steps": 10})
    assert nb._scored_latest(tmp_path, "fair", {"steps": 20})
    assert nb._scored_latest(tmp_path, "continued", {"steps": 50, "own_steps": 20})
    cached = {"steps": 70, "child_steps": {"few-shot none": 20, "few-shot skip_connect": 20}}
    assert nb._scored_latest(tmp_path, "few-shot", cached)
    cached["child_steps"]["few-shot none"] = 19
    assert not nb._scored_latest(tmp_path, "few-shot", cached)


def test_nb201_continued_control_trains_the_parent_on_for_all_children_steps(tmp_path):
    """few-shot's equal-budget control starts from the parent's final weights and trains, unsplit,
    as many steps as the five children of an NB201 edge together."""
    nb = load_bench_script("nb201_ranking")
    data = nb.DEFAULT_DATA
    if not Path(data).is_file():
        pytest.skip(f"the CIFAR-10 subset is not at {data} (../shared/data/vision/)")
    out = tmp_path / "runs"
    common = ["--channels", "4", "--cells", "1", "--batch-size", "8", "--output-dir", str(out), "--train-only",
              "--save-steps", "0", "--split-epochs", "0.002"]
    nb.main(["--variants", "spos", "--steps", "3", *common])
    nb.main(["--variants", "continued", *common])
    config = json.loads((out / "continued" / "config.json").read_text())
    from bertnas.tasks.vision import load_images

    train_rows = round(len(load_images(str(data)).labels) * 0.9)
    assert config["max_steps"] == 5 * math.ceil(0.002 * train_rows / 8)  # five children's steps
    assert config["init_from_supernet"].endswith("checkpoint-00000003")
    assert config["sampler"] == "uniform" and not config.get("fixed_choices")
    assert json.loads((out / "continued" / "summary.json").read_text())["step"] == config["max_steps"]


def test_nb201_reference_strategy_run_resumes_to_the_same_arch_and_reports_mean_and_std(tmp_path, monkeypatch):
    """The reference protocol (SGD + cosine, resumable) at a tiny size: an interrupted run resumes
    from its checkpoint to the arch and weights of the uninterrupted one; report gives mean +- std."""
    nb = load_bench_script("nb201_strategies")
    data = load_bench_script("nb201_ranking").DEFAULT_DATA
    if not Path(data).is_file():
        pytest.skip(f"the CIFAR-10 subset is not at {data} (../shared/data/vision/)")
    tiny = {**nb.REFERENCE, "space_options": {**nb.REFERENCE_SPACE, "C": 4, "N": 1}, "batch_size": 8,
            "eval_batches": 1, "save_steps": 2, "keep_last": 3}
    monkeypatch.setitem(nb.PROTOCOLS, "reference", (tiny, nb.REFERENCE_RUNS))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    nb.run_one("gdas", whole, 4, 0, "reference", str(data))
    nb.run_one("gdas", cut, 4, 0, "reference", str(data))
    for leftover in ("results.json", "search.json", "summary.json"):  # killed after step 2's checkpoint
        (cut / "gdas" / leftover).unlink(missing_ok=True)
    import shutil

    shutil.rmtree(cut / "gdas" / "checkpoint-00000004")
    nb.run_one("gdas", cut, 4, 0, "reference", str(data))
    config = json.loads((cut / "gdas" / "config.json").read_text())
    assert (config["optimizer"], config["lr_schedule"], config["sgd_nesterov"]) == ("sgd", "cosine", True)
    first, again = (json.loads((run / "gdas" / "search.json").read_text()) for run in (whole, cut))
    assert again["derived"] == first["derived"] and again["step"] == 4
    from safetensors.torch import load_file

    a, b = (load_file(str(run / "gdas" / "checkpoint-00000004" / "model" / "model.safetensors")) for run in (whole, cut))
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)
    losses = [[json.loads(line)["loss"] for line in (run / "gdas" / "log.jsonl").read_text().splitlines()]
              for run in (whole, cut)]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    out = tmp_path / "report.json"
    nb.report([whole, cut], out, None, "reference")
    method = json.loads(out.read_text())["methods"]["gdas"]
    assert method["n"] == 2 and method["std"] == 0.0 and method["channels"] == 4
    assert method["runs"][0]["arch"].startswith("|") and method["protocol"] == "reference"


def test_nb201_mixed_protocol_runs_the_mixed_op_strategies_on_the_chosen_network(tmp_path, monkeypatch):
    """`--protocol mixed`: DARTS under the reference data and SGD schedule on the network that
    --channels / --cells give, recorded in the run's config and in the report; the network
    options are refused for the other protocols."""
    nb = load_bench_script("nb201_strategies")
    data = load_bench_script("nb201_ranking").DEFAULT_DATA
    if not Path(data).is_file():
        pytest.skip(f"the CIFAR-10 subset is not at {data} (../shared/data/vision/)")
    tiny = {**nb.MIXED, "batch_size": 8, "eval_batches": 1, "save_steps": 2}
    monkeypatch.setitem(nb.PROTOCOLS, "mixed", (tiny, nb.MIXED_RUNS))
    nb.run_one("darts", tmp_path, 2, 0, "mixed", str(data), space_options={"C": 4, "N": 1})
    config = json.loads((tmp_path / "darts" / "config.json").read_text())
    assert config["space_options"]["C"] == 4 and config["strategy"] == "darts"
    assert (config["optimizer"], config["lr_schedule"]) == ("sgd", "cosine")
    out = tmp_path / "report.json"
    nb.report([tmp_path], out, None, "mixed")
    method = json.loads(out.read_text())["methods"]["darts"]
    assert (method["channels"], method["cells"], method["protocol"]) == (4, 1, "mixed")
    timed = nb.time_steps("darts", 5, "mixed", str(data), {"C": 4, "N": 1})  # 4 warm-up steps, 1 timed
    assert (timed["C"], timed["steps_timed"]) == (4, 1) and timed["median_step_s"] > 0
    with pytest.raises(SystemExit):
        nb.main(["run", "gdas", "--protocol", "reference", "--channels", "8"])
    with pytest.raises(SystemExit):
        nb.main(["report", "--protocol", "mixed", "--channels", "8"])


def torch_equal(x, y) -> bool:
    import torch

    return bool(torch.equal(x, y))


def test_toy_benchmark_fair_and_few_shot_variants(text_file, tmp_path):
    """fair sampling, and few-shot at the same total budget: SPOS for half the steps, then one
    child per first-layer op; every truth arch is scored by a child, and intervals are reported."""
    args = tiny_args(text_file, tmp_path)
    for flag, value in (("--supernet-steps", "6"), ("--seeds", "1"), ("--variants", "fair,few-shot"),
                        ("--noise-archs", "0")):
        args[args.index(flag) + 1] = value
    saved = toy.main(args)
    for variant in ("fair", "few-shot"):
        assert set(saved["supernet_scores"][variant]["0"]) == set(saved["truth"]["seed0"])
    split = json.loads((tmp_path / "cache" / "few-shot-s0" / "scores.json").read_text())["split"]
    assert split == {"choice": "layer_0", "parent_steps": 3, "child_steps": 1}
    children = json.loads((tmp_path / "cache" / "few-shot-s0" / "split" / "few_shot.json").read_text())["children"]
    assert set(children) == {"mha2", "ffn", "identity"}
    for child in children.values():
        assert json.loads((tmp_path / "cache" / "few-shot-s0" / "split" / child / "summary.json").read_text())["step"] == 1
    row = next(r for r in saved["summary"] if r["name"] == "few-shot")
    low, high = row["seed_mean_scores"]["ci95"]["kendall_tau"]
    assert -1.0 <= low <= high <= 1.0
    assert not list((tmp_path / "cache").glob("**/checkpoint-*"))


def test_calibration_reads_nb201_ranking_scores_with_their_direction(tmp_path):
    cal = load_bench_script("calibration_nb201")
    result = tmp_path / "ranking.json"
    result.write_text(json.dumps({"supernet_scores": {"magic-t": {
        "metric": "cross_entropy", "higher_is_better": False, "scores": {"|a~0|": 1.5, "|b~0|": 2}, "channels": 16}}}))
    assert cal.load_scores(str(result), "magic-t") == ({"|a~0|": 1.5, "|b~0|": 2.0}, False)
    with pytest.raises(SystemExit, match="no supernet scores of 'spos'; it has magic-t"):
        cal.load_scores(str(result), "spos")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"|a~0|": 0.5}))
    assert cal.load_scores(str(plain), "spos") == ({"|a~0|": 0.5}, None)
