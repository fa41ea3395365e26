"""The run config's option groups (typed views of the flat keys), the aligner's options object,
and the key `task` (formerly `objective`): old names and old config.json files still load."""

import argparse
import dataclasses
import json
import warnings

import pytest

from bertnas.core.errors import UserError
from bertnas.storage.checkpoint import CheckpointError
from bertnas.supernet.options import AlignOptions
from bertnas.train.config import (
    CHANGEABLE_ON_RESUME,
    FIELD_NAMES,
    FIXED_FOR_RUN,
    GROUPS,
    OptimOptions,
    PolicyOptions,
    PretrainConfig,
    RunOptions,
    TaskOptions,
    config_to_json,
    load_config,
    resume_changes,
)


def test_every_key_is_in_exactly_one_group():
    grouped = [key for keys in GROUPS.values() for key in keys]
    assert len(grouped) == len(set(grouped)) and set(grouped) == set(FIELD_NAMES)
    assert set(FIXED_FOR_RUN) | set(CHANGEABLE_ON_RESUME) == set(FIELD_NAMES)


def test_group_views_read_the_flat_keys():
    cfg = load_config({"lr": 1e-3, "seed": 7, "sampler": "uniform", "task": "electra", "max_steps": 40,
                       "align_weight": 0.2, "base_every": 5})
    assert isinstance(cfg.run, RunOptions) and (cfg.run.seed, cfg.run.max_steps) == (7, 40)
    assert isinstance(cfg.optim, OptimOptions) and cfg.optim.lr == 1e-3 and cfg.optim.batch_size == cfg.batch_size
    assert isinstance(cfg.task_options, TaskOptions) and cfg.task_options.task == "electra"
    assert isinstance(cfg.policy, PolicyOptions) and cfg.policy.sampler == "uniform"
    for view, group in ((cfg.run, "run"), (cfg.optim, "optim"), (cfg.task_options, "task"), (cfg.policy, "policy")):
        assert tuple(f.name for f in dataclasses.fields(view)) == GROUPS[group]
        assert all(getattr(view, key) == getattr(cfg, key) for key in GROUPS[group])
    with pytest.raises(dataclasses.FrozenInstanceError):  # views are read-only: change the flat config
        cfg.run.seed = 1
    # the aligner's options object: start / ramp resolved from max_steps when unset
    assert cfg.alignment == AlignOptions(block_size=2, weight=0.2, every=5, start=4, ramp=2)
    assert cfg.align_options() == cfg.alignment.to_dict()


def test_aligner_takes_its_options_object():
    from bertnas.models import BertNasConfig
    from bertnas.spaces import BertSpace
    from bertnas.supernet.align import Aligner

    space = BertSpace(BertNasConfig(num_hidden_layers=4, hidden_size=48, intermediate_size=96, ffn_wide_size=144))
    base = ["mha12", "ffn"] * 2
    options = AlignOptions(block_size=1, weight=0.3, replacement="beat", z=2.0, start=3)
    by_object, by_keywords = Aligner.from_options(space, base, options), Aligner(space, base, **options.to_dict())
    for name in options.to_dict():
        assert getattr(by_object, name) == getattr(by_keywords, name) == getattr(options, name)


def test_objective_is_the_old_name_of_task():
    with pytest.warns(DeprecationWarning, match="'objective' is now 'task'"):
        cfg = load_config({"objective": "electra"})
    assert cfg.task == "electra" and "objective" not in cfg.to_dict()
    with pytest.warns(DeprecationWarning, match="PretrainConfig.objective is now PretrainConfig.task"):
        assert cfg.objective == "electra"
    with pytest.warns(DeprecationWarning):
        assert load_config(objective="electra").task == "electra"
    with pytest.warns(DeprecationWarning):
        assert PretrainConfig(objective="electra") == PretrainConfig(task="electra")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config({"task": "electra", "objective": None}).task == "electra"  # None: not given
    with pytest.raises(UserError, match="'objective' .* and 'task' .* disagree"):
        load_config({"objective": "electra", "task": "mlm"})


def test_cli_objective_flag_is_an_alias_of_task():
    from bertnas.cli.pretrain import add_arguments, args_to_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for flag in ("--task", "--objective"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the flag is an alias: no warning
            cfg = load_config(args_to_config(parser.parse_args([flag, "electra"])))
        assert cfg.task == "electra"


def _old_config_json(cfg: PretrainConfig) -> dict:
    """What a run of `cfg` wrote as config.json before `objective` was renamed `task`."""
    data = cfg.to_dict()
    data["objective"] = data.pop("task")
    data["history"] = [{"event": "start", "step": 0}]
    return data


def test_an_old_config_json_loads_and_resumes(tmp_path):
    cfg = load_config({"task": "electra", "max_steps": 8, "output_dir": str(tmp_path / "run")})
    old = tmp_path / "config.json"
    old.write_text(json.dumps(_old_config_json(cfg), indent=2, sort_keys=True))
    with pytest.warns(DeprecationWarning, match="'objective' is now 'task'"):
        loaded = load_config({"config": str(old)})
    assert loaded == cfg
    # the checkpoint's stored config (state.json) of an older run: the same run resumes, another task is refused
    stored = {k: v for k, v in _old_config_json(cfg).items() if k != "history"}
    assert resume_changes(stored, cfg) == {}
    assert resume_changes(stored, dataclasses.replace(cfg, max_steps=16)) == {"max_steps": (8, 16)}
    with pytest.raises(CheckpointError, match="task: checkpoint 'electra' vs this run 'mlm'"):
        resume_changes(stored, dataclasses.replace(cfg, task="mlm"))


def test_config_json_keeps_its_layout():
    """config.json is the flat dataclass, sorted: every key at the top level, as before the groups."""
    cfg = load_config({})
    data = json.loads(config_to_json(cfg))
    assert list(data) == sorted(FIELD_NAMES) and data["task"] == "mlm"
    assert config_to_json(load_config(data)) == config_to_json(cfg)


def test_magic_a_is_off_by_default_where_it_was_measured_to_hurt():
    """NB201: alignment lowered the reference-size tau beyond its interval (docs/results.md), so it
    is off unless asked for; BERT keeps MAGIC-T+A; an explicit choice always wins; a stored
    config keeps what it ran with."""
    assert load_config({"space": "nb201"}).align is False
    assert load_config({"space": "nb201", "align": True}).align is True
    assert load_config({}).align is True and load_config({"align": False}).align is False
    stored = load_config({"space": "nb201", "align": True})
    assert load_config(stored).align is True
