"""Few-shot splitting (Zhao et al. 2021): a restricted space, samplers that hold the split choice,
children that start equal to their parent on their own archs, a split that resumes."""

import json
import random

import pytest
import torch

from bertnas.core.errors import UserError
from bertnas.spaces.nb201 import Nb201Space
from bertnas.supernet.sampling import build_sampler

from conftest import DATA_DIR

CIFAR = DATA_DIR / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"


def test_restrict_holds_a_choice_and_names_bad_input():
    space = Nb201Space(4, 1)
    sub = space.restrict({"edge_1_0": "nor_conv_3x3"})
    assert sub.choices["edge_1_0"] == ("nor_conv_3x3",) and space.choices["edge_1_0"] != sub.choices["edge_1_0"]
    assert sub.size() * 5 == space.size() and "edge_1_0" not in sub.mutable_choices()
    assert sub.params(sub.sample(0)) > 0  # the cost model still applies
    with pytest.raises(ValueError, match="Unknown choice 'edge_9_0'"):
        space.restrict({"edge_9_0": "none"})
    with pytest.raises(ValueError, match="Unknown candidate 'conv7' for edge_1_0"):
        space.restrict({"edge_1_0": "conv7"})


@pytest.mark.parametrize("sampler", ["uniform", "walk", "fair", "deiso"])
def test_every_sampler_on_a_restricted_space_holds_the_choice(sampler):
    space = Nb201Space(4, 1).restrict({"edge_2_1": "skip_connect"})
    drawn = build_sampler(sampler, space, seed=3)
    archs = [drawn.next() for _ in range(60)]
    assert all(a["edge_2_1"] == "skip_connect" for a in archs)
    assert len({a["edge_1_0"] for a in archs}) == 5  # the other choices still vary


def _need_cifar():
    if not CIFAR.is_file():
        pytest.skip(f"{CIFAR} is absent (set BERTNAS_DATA_DIR to the shared data folder)")


def _parent(tmp_path, **overrides):
    from bertnas.pipelines.pretrain import pretrain

    options = dict(space="nb201", data=str(CIFAR), output_dir=str(tmp_path / "parent"), max_steps=2, save_steps=2,
                   batch_size=8, eval_batches=1, lr=1e-3, warmup_steps=1, progress=False, seed=5, val_fraction=0.01,
                   space_options={"C": 4, "N": 1, "calibration_batches": 1}, **overrides)
    pretrain(options)
    return tmp_path / "parent"


def test_a_child_starts_equal_to_its_parent_on_its_own_archs(tmp_path):
    _need_cifar()
    from bertnas.pipelines.pretrain import training_run
    from bertnas.tasks import load_task
    from bertnas.train.config import load_config

    parent = _parent(tmp_path)
    stored = json.loads((parent / "config.json").read_text())
    stored.pop("history")  # the run's start / resume record, not an option
    config = {**stored, "output_dir": str(tmp_path / "child"), "overwrite": False,
              "init_from_supernet": str(parent), "fixed_choices": {"edge_1_0": "nor_conv_1x1"}}
    reference = load_task(parent, "cpu")
    with training_run(load_config(config)) as trainer:
        child = trainer.task
        mine, theirs = child.model.state_dict(), reference.model.state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
        batches, _ = reference.heldout(eval_batches=1, batch_size=8)
        arch = reference.space.sample(random.Random(0)).replace(edge_1_0="nor_conv_1x1")
        assert child.evaluator(batches, cache=False)(arch) == reference.evaluator(batches, cache=False)(arch)
        assert trainer.policy.next()["edge_1_0"] == "nor_conv_1x1"


def test_split_trains_one_child_per_candidate_and_resumes(tmp_path, monkeypatch):
    _need_cifar()
    from bertnas.pipelines import fewshot, pretrain as pretrain_pipeline
    from bertnas.storage.logs import read_log

    parent = _parent(tmp_path)
    record = fewshot.split_supernet(parent, tmp_path / "split", steps=2, choice="edge_3_2")
    split = fewshot.read_split(tmp_path / "split")
    assert split["choice"] == "edge_3_2" and split["parent_step"] == 2
    assert sorted(split["children"]) == sorted(Nb201Space(4, 1).choices["edge_3_2"]) == sorted(record["children"])
    edge = list(Nb201Space(4, 1).choices).index("edge_3_2")
    for candidate, folder in split["children"].items():
        log = read_log(folder / "log.jsonl")
        assert [r["step"] for r in log] == [1, 2] and {r["arch"][edge] for r in log} == {candidate}
    arch = Nb201Space(4, 1).sample(1).replace(edge_3_2="avg_pool_3x3")
    assert fewshot.child_for(split, arch) == tmp_path / "split" / "avg_pool_3x3"

    # an interrupted split: one child lost its end, another never started
    unfinished = split["children"]["none"]
    (unfinished / "summary.json").unlink()
    lost = split["children"]["skip_connect"]
    for path in sorted(lost.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    lost.rmdir()

    def refuse(*args, **kwargs):  # a resumed child keeps its own weights
        raise AssertionError("a resumed child was re-initialised from its parent")

    started = []
    real = pretrain_pipeline.init_from_supernet
    monkeypatch.setattr(pretrain_pipeline, "init_from_supernet",
                        lambda cfg, task: (started.append(cfg.output_dir), real(cfg, task)))
    fewshot.split_supernet(parent, tmp_path / "split", steps=2, choice="edge_3_2")
    assert started == [str(lost)]  # only the child that never started begins from the parent
    assert [r["step"] for r in read_log(lost / "log.jsonl")] == [1, 2]
    with pytest.raises(UserError, match="holds a split on 'edge_3_2'"):
        fewshot.split_supernet(parent, tmp_path / "split", steps=3, choice="edge_3_2")


def test_init_from_another_model_is_refused_by_name(tmp_path):
    _need_cifar()
    from bertnas.pipelines.pretrain import pretrain

    parent = _parent(tmp_path)
    stored = json.loads((parent / "config.json").read_text())
    stored.pop("history")  # the run's start / resume record, not an option
    other = {**stored, "output_dir": str(tmp_path / "other"), "overwrite": False, "init_from_supernet": str(parent),
             "space_options": {**stored["space_options"], "C": 8}}
    with pytest.raises(UserError, match="is another model .*space_options"):
        pretrain(other)


def test_fixed_choices_must_map_names_to_candidates(tmp_path):
    from bertnas.train.config import load_config

    with pytest.raises(UserError, match="fixed_choices must map choice names"):
        load_config({"fixed_choices": ["edge_1_0"], "output_dir": str(tmp_path)})
    with pytest.raises(UserError, match="--init-from-supernet .* does not exist"):
        from bertnas.train.config import check_sources

        check_sources(load_config({"init_from_supernet": str(tmp_path / "nothing"), "output_dir": str(tmp_path)}))


def test_cli_fixed_choice_flag():
    import argparse

    from bertnas.cli.pretrain import add_arguments, args_to_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    values = args_to_config(parser.parse_args(["--fixed-choice", "edge_1_0=none", "--fixed-choice", "edge_2_0=skip_connect"]))
    assert values["fixed_choices"] == {"edge_1_0": "none", "edge_2_0": "skip_connect"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--fixed-choice", "edge_1_0"])


def test_split_command_names_a_missing_parent_in_one_line(tmp_path):
    from conftest import expect_one_line_error

    expect_one_line_error(tmp_path, ["split", "--parent", "no-such-run", "--output-dir", "out", "--steps", "2"],
                          "no-such-run does not exist")


def test_a_fixed_choice_the_space_lacks_is_one_line(tmp_path):
    _need_cifar()
    from conftest import expect_one_line_error

    expect_one_line_error(tmp_path, ["pretrain", "--space", "nb201", "--data", str(CIFAR), "--output-dir", "run",
                                     "--max-steps", "1", "--set", "space_options={C: 4, N: 1}",
                                     "--fixed-choice", "edge_9_9=none"],
                          "fixed_choices .*Unknown choice 'edge_9_9'.*name choices and candidates")
