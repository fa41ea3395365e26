"""The published protocols' weight optimiser as a config option: SGD with momentum and a cosine LR
(`optimizer: sgd`, `lr_schedule: cosine`) follows the schedule exactly and resumes exactly."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from bertnas.pipelines.pretrain import build_trainer, pretrain
from bertnas.storage.logs import read_log
from bertnas.train.config import load_config
from bertnas.train.launch import reset_accelerate_state
from bertnas.train.optim import build_optimizer, lr_factor, warmup_cosine_decay

REPO = Path(__file__).resolve().parents[1]
TOY_YAML = REPO / "recipes" / "configs" / "toy.yaml"
SGD = dict(optimizer="sgd", lr_schedule="cosine", lr=0.05, lr_min=0.001, warmup_steps=0, sgd_momentum=0.9,
           sgd_nesterov=True, align=False)


def toy(tmp_path, name="run", **overrides):
    options = dict(config=str(TOY_YAML), output_dir=str(tmp_path / name), max_steps=6, save_steps=2,
                   keep_last=5, progress=False, **SGD)
    options.update(overrides)
    return options


def test_cosine_factor_is_torch_cosine_annealing():
    """No warm-up: the factor is CosineAnnealingLR's closed form (T_max = steps, eta_min = min_ratio)."""
    steps, min_ratio = 10, 0.02
    factor = warmup_cosine_decay(0, steps, min_ratio)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=min_ratio)
    for step in range(steps):
        assert factor(step) == pytest.approx(reference.get_last_lr()[0], abs=1e-12)
        opt.step()
        reference.step()
    assert factor(0) == 1.0 and factor(steps) == pytest.approx(min_ratio)
    # with warm-up: linear rise to the full LR at the last warm-up step, then the cosine
    warm = warmup_cosine_decay(3, 13, 0.0)
    assert [warm(s) for s in range(4)] == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0, 1.0]
    assert warm(8) == pytest.approx(0.5)


def test_unknown_optimizer_or_schedule_is_an_error_naming_the_choices(tmp_path):
    cfg = load_config(toy(tmp_path, optimizer="adam"))
    with pytest.raises(ValueError, match="adamw, sgd"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], cfg)
    cfg = load_config(toy(tmp_path, lr_schedule="step"))
    with pytest.raises(ValueError, match="linear, cosine"):
        lr_factor(cfg)


def test_sgd_cosine_run_follows_the_schedule_and_resumes_exactly(tmp_path):
    cfg = load_config(toy(tmp_path, "probe"))
    trainer = build_trainer(cfg)
    try:
        opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        assert isinstance(opt, torch.optim.SGD)
        assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    finally:
        trainer.close()
        reset_accelerate_state()

    pretrain(toy(tmp_path, "full"))
    full = read_log(tmp_path / "full" / "log.jsonl")
    expected = [SGD["lr_min"] + (SGD["lr"] - SGD["lr_min"]) * (1 + math.cos(math.pi * s / 6)) / 2 for s in range(6)]
    assert [r["lr"] for r in full] == pytest.approx(expected, rel=1e-12)

    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-00000002", part / "checkpoint-00000002")
    summary = pretrain(toy(tmp_path, "part", resume_from_checkpoint="latest"))
    assert summary["resumed_from"].endswith("checkpoint-00000002")
    resumed = read_log(part / "log.jsonl")
    assert [r["step"] for r in resumed] == [3, 4, 5, 6]
    for a, b in zip(full[2:], resumed):  # momentum buffers and the schedule round-trip
        assert a["loss"] == b["loss"] and a["arch"] == b["arch"] and a["lr"] == b["lr"]
