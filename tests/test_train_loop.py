"""The pre-training loop in one process: logging, checkpoints, both objectives, exact resume,
parameters outside the path, config handling and clear checkpoint errors."""

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from bertnas.storage import checkpoint as ck
from bertnas.train.config import PretrainConfig, load_config
from bertnas.cli.pretrain import add_arguments, args_to_config
from bertnas.train.launch import reset_accelerate_state
from bertnas.storage.logs import read_log
from bertnas.train.optim import param_groups, warmup_linear_decay
from bertnas.pipelines.pretrain import build_trainer, pretrain

REPO = Path(__file__).resolve().parents[1]
TOY_YAML = REPO / "recipes" / "configs" / "toy.yaml"


def toy(tmp_path, name="run", **overrides):
    """The toy recipe, shortened: a few steps, checkpoints every 2."""
    options = dict(config=str(TOY_YAML), output_dir=str(tmp_path / name), max_steps=4, save_steps=2,
                   keep_last=2, progress=False)
    options.update(overrides)
    return options


def test_mlm_walk_align_logs_and_checkpoints(tmp_path):
    summary = pretrain(toy(tmp_path, base_every=2))
    out = tmp_path / "run"
    assert summary["step"] == 4 and summary["output_dir"] == str(out)
    lines = read_log(out / "log.jsonl")
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert summary["loss"] == lines[-1]["loss"]
    candidates = set(load_config(str(TOY_YAML)).model["candidates"])
    for r in lines:
        assert r["world_size"] == 1 and torch.isfinite(torch.tensor(r["loss"]))
        assert len(r["arch"]) == 2 and set(r["arch"]) <= candidates
        assert r["align_loss"] >= 0 and len(r["base_arch"]) == 2 and r["tokens_per_s"] > 0
    # walk sampling (k=1): consecutive subnets differ in exactly one layer
    for a, b in zip(lines, lines[1:]):
        assert sum(x != y for x, y in zip(a["arch"], b["arch"])) == 1
    # base-replacement checks (every 2 steps) are logged with every score and the reason
    checks = [r["base_decision"] for r in lines if "base_decision" in r]
    assert [d["step"] for d in checks] == [2, 4] and all(d["rule"] == "population" and d["reason"] for d in checks)
    assert all(len(d["candidates"]) >= 1 and d["old_arch"] for d in checks)
    # warmup (2 steps) then linear decay
    lrs = [r["lr"] for r in lines]
    assert lrs[0] < lrs[1] and lrs[1] > lrs[2] > lrs[3] > 0

    # keep_last=2 of the checkpoints at steps 2 and 4
    assert [p.name for p in ck.list_checkpoints(out)] == ["checkpoint-00000002", "checkpoint-00000004"]
    latest = ck.find_checkpoint(out)
    state = ck.verify_checkpoint(latest)
    assert state["step"] == 4
    assert state["aligner"]["base_arch"] == lines[-1]["base_arch"] and "base_score" in state["aligner"]
    assert {"source", "seq_len", "val_fraction", "seed"} <= set(state["data"])
    assert state["config"]["max_steps"] == 4 and state["sampler"]
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pt", "model/model.safetensors"):
        assert (latest / name).is_file(), name

    # model/ is a loadable HF folder with the tokenizer beside it
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(latest / "model")
    tokenizer = AutoTokenizer.from_pretrained(latest / "model")
    assert model.config.vocab_size == len(tokenizer)
    ids = tokenizer("the supernet", return_tensors="pt")["input_ids"]
    assert model(ids, arch=lines[-1]["arch"]).logits.shape[-1] == len(tokenizer)


def test_electra_uniform_without_align(tmp_path):
    summary = pretrain(toy(tmp_path, task="electra", sampler="uniform", align=False, max_steps=3, save_steps=0))
    out = tmp_path / "run"
    lines = read_log(out / "log.jsonl")
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all("align_loss" not in r and "base_arch" not in r for r in lines)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in lines)
    # only the final checkpoint; discriminator in model/, generator in generator/
    latest = ck.find_checkpoint(out)
    assert latest.name == "checkpoint-00000003" and summary["checkpoint"] == str(latest)
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(latest / "model").architectures == ["BertNasForPreTraining"]
    assert (latest / "generator" / "model.safetensors").is_file()


def test_resume_with_accumulation_equals_uninterrupted(tmp_path):
    """ELECTRA + MAGIC-A + gradient accumulation: every piece of state must round-trip."""
    opts = dict(task="electra", gradient_accumulation_steps=2, max_steps=5, save_steps=2, keep_last=5)
    pretrain(toy(tmp_path, "full", **opts))
    full = read_log(tmp_path / "full" / "log.jsonl")

    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-00000002", part / "checkpoint-00000002")
    summary = pretrain(toy(tmp_path, "part", resume_from_checkpoint="latest", **opts))
    assert summary["resumed_from"].endswith("checkpoint-00000002")
    resumed = read_log(part / "log.jsonl")
    assert [r["step"] for r in resumed] == [3, 4, 5]
    for a, b in zip(full[2:], resumed):
        assert a["loss"] == b["loss"] and a["arch"] == b["arch"] and a["lr"] == b["lr"]
        assert a["align_loss"] == b["align_loss"] and a["base_arch"] == b["base_arch"]


def test_parameters_outside_the_path_are_untouched(tmp_path):
    cfg = load_config(toy(tmp_path, max_steps=1, align=False, sampler="uniform"))
    trainer = build_trainer(cfg)
    try:
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train()
        arch = read_log(tmp_path / "run" / "log.jsonl")[0]["arch"]
        after = trainer.model.state_dict()
        changed_ops = set()
        for key, value in after.items():
            if ".ops." in key:
                layer, op = int(key.split(".")[3]), key.split(".")[5]
                if not torch.equal(before[key], value):
                    changed_ops.add((layer, op))
        # exactly the sampled ops moved (weight decay included: unused ops get no update at all)
        assert changed_ops == {(i, op) for i, op in enumerate(arch) if op != "identity"}
        assert not torch.equal(before["bert.embeddings.word_embeddings.weight"],
                               after["bert.embeddings.word_embeddings.weight"])
        # and the optimizer holds no moments for them
        with_state = {id(p) for p in trainer.optimizer.optimizer.state}
        for name, p in trainer.model.named_parameters():
            if ".ops." in name:
                layer, op = int(name.split(".")[3]), name.split(".")[5]
                assert (id(p) in with_state) == (arch[layer] == op), name
    finally:
        trainer.close()
        reset_accelerate_state()


def test_resume_refuses_other_space_and_corrupt_checkpoint(tmp_path):
    pretrain(toy(tmp_path, max_steps=2, save_steps=2, align=False))
    out = tmp_path / "run"
    with pytest.raises(ck.CheckpointError, match="another model / search space") as err:
        pretrain(toy(tmp_path, "other", max_steps=3, align=False, resume_from_checkpoint=str(out),
                     model={"num_hidden_layers": 3}))
    assert "num_hidden_layers: checkpoint 2 vs this run 3" in str(err.value)

    weights = out / "checkpoint-00000002" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match="model.safetensors"):
        pretrain(toy(tmp_path, max_steps=3, align=False, resume_from_checkpoint="latest"))

    (out / "checkpoint-00000002" / "optimizer.pt").unlink()
    with pytest.raises(ck.CheckpointError, match="missing optimizer.pt"):
        pretrain(toy(tmp_path, max_steps=3, align=False, resume_from_checkpoint="latest"))

    with pytest.raises(FileNotFoundError):
        pretrain(toy(tmp_path, max_steps=3, resume_from_checkpoint=str(tmp_path / "nowhere")))


def test_config_yaml_overrides_and_cli(tmp_path):
    cfg = load_config(str(TOY_YAML))
    assert cfg.model["num_hidden_layers"] == 2 and cfg.batch_size == 4 and cfg.seq_len == 32
    cfg = load_config({"config": str(TOY_YAML), "lr": 1e-3, "max-steps": 7, "model": {"hidden_size": 24}})
    assert cfg.lr == 1e-3 and cfg.max_steps == 7
    assert cfg.model["hidden_size"] == 24 and cfg.model["num_hidden_layers"] == 2  # merged key by key
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        load_config({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="sampler"):
        load_config({"sampler": "random"})
    with pytest.raises(ValueError, match="batch_size"):
        load_config({"batch_size": 0})
    big = load_config(str(REPO / "recipes" / "configs" / "bert_base_magic.yaml"))
    assert big.model["num_hidden_layers"] == 24 and big.model["hidden_size"] == 768

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", str(TOY_YAML), "--objective", "electra", "--sampler", "uniform",
                              "--walk-k", "2", "--no-align", "--max-steps", "3", "--seed", "5",
                              "--resume-from-checkpoint", "latest", "--set", "model.hidden_size=24",
                              "--set", "eval_batches=1", "--keep-last", "1"])
    cfg = load_config(args_to_config(args))
    assert (cfg.task, cfg.sampler, cfg.walk_k, cfg.align, cfg.max_steps, cfg.seed) == (
        "electra", "uniform", 2, False, 3, 5)
    assert cfg.resume_from_checkpoint == "latest" and cfg.model["hidden_size"] == 24 and cfg.eval_batches == 1
    assert cfg.keep_last == 1 and cfg.lr == load_config(str(TOY_YAML)).lr  # unset options keep the YAML's


def test_param_groups_and_schedule():
    from bertnas import BertNasForMaskedLM

    from conftest import toy_config

    model = BertNasForMaskedLM(toy_config())
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias")) for p in no_decay["params"])
    assert not any("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

    f = warmup_linear_decay(warmup_steps=4, total_steps=10)
    assert [round(f(s), 4) for s in range(11)] == [0.25, 0.5, 0.75, 1.0, 0.8571, 0.7143, 0.5714, 0.4286, 0.2857,
                                                 0.1429, 0.0]
    assert PretrainConfig().model["num_hidden_layers"] == 2  # the built-in default is the toy


def test_report_to_tensorboard(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            pretrain(toy(tmp_path, max_steps=1, report_to="tensorboard"))
        return
    pretrain(toy(tmp_path, max_steps=2, save_steps=0, report_to="tensorboard"))
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))


def test_training_and_search_score_a_subnet_alike(tmp_path):
    """One held-out scorer: the trainer's base-replacement score of an arch equals the score
    `bertnas search` gives it from the saved checkpoint."""
    from bertnas.search import search

    cfg = load_config(toy(tmp_path, max_steps=2, save_steps=2, align=False))
    trainer = build_trainer(cfg)
    try:
        trainer.train()
        arch = trainer.space.sample(5)
        during = trainer.evaluate(arch)
        assert trainer.model.training  # scoring leaves the model in train mode
    finally:
        trainer.close()
        reset_accelerate_state()
    entries = search(tmp_path / "run", "random", None, num_samples=40, eval_batches=cfg.eval_batches,
                     progress=False, top_k=None)
    scores = {tuple(e["arch"]): e["score"] for e in entries}
    assert tuple(arch.ops) in scores and scores[tuple(arch.ops)] == during


def test_heldout_split_has_its_own_seed_and_can_be_a_file(tmp_path, tiny_corpus):
    from bertnas.tasks.bert import MLMTask

    def val_rows(**overrides):
        task = MLMTask()
        task.setup(load_config(toy(tmp_path, data=str(tiny_corpus), **overrides)))
        return task.val_data[:len(task.val_data)]["input_ids"]

    a = val_rows(seed=1)
    assert torch.equal(a, val_rows(seed=2))  # the training seed does not move the split
    assert not torch.equal(a, val_rows(seed=1, data_seed=5))
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("the teacher finds a red apple .\n" * 40)
    own = val_rows(val_data=str(held_out))
    assert own.shape[1] == a.shape[1] and not torch.equal(own[:1], a[:1])


def test_fixed_arch_trains_alone_and_is_searched(tmp_path):
    """`--arch` trains one fixed arch from scratch through the same loop (constant sampler) and
    its checkpoint can be scored by `bertnas search`."""
    from bertnas.search import search

    pretrain(toy(tmp_path, max_steps=3, save_steps=3, arch=["conv3", "ffn"]))
    lines = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["arch"] for r in lines] == [["conv3", "ffn"]] * 3 and all("align_loss" not in r for r in lines)
    state = ck.read_state(ck.find_checkpoint(tmp_path / "run"))
    assert state["sampler"]["name"] == "constant"
    entries = search(tmp_path / "run", "random", None, num_samples=3, eval_batches=1, progress=False)
    assert [e["arch"] for e in entries] == [["conv3", "ffn"]]


def test_off_path_weights_and_moments_stay_frozen_over_several_steps(tmp_path):
    """An op trained once keeps its weights AND its AdamW moments bit-identical through later
    steps that do not use it (weight decay and stale momentum would move it otherwise)."""
    cfg = load_config(toy(tmp_path, max_steps=10, align=False, model={"hidden_dropout_prob": 0.1}))
    trainer = build_trainer(cfg)
    try:
        trainer._train_step(trainer.space.arch(["conv3", "mha6"]))
        owned = [p for n, p in trainer.model.named_parameters()
                 if ".layers.0.ops.conv3." in n or ".layers.1.ops.mha6." in n]
        state = trainer.optimizer.optimizer.state

        def snapshot():
            return [(p.detach().clone(), *(state[p][k].clone() for k in ("exp_avg", "exp_avg_sq", "step")))
                    for p in owned]

        before = snapshot()
        assert all(b[1].abs().sum() > 0 for b in before)  # they did get momentum at step 1
        for ops in (["ffn", "mha8"], ["mha12", "conv5"], ["conv5", "conv3"], ["ffn_wide", "ffn"]):
            trainer._train_step(trainer.space.arch(ops))
        after = snapshot()
        for b, a in zip(before, after):
            assert all(torch.equal(x, y) for x, y in zip(b, a))
    finally:
        trainer.close()
        reset_accelerate_state()


@pytest.mark.slow  # four 100-step runs (8 s on an idle 2-core machine, minutes under load)
def test_magic_t_plus_a_trains_like_spos_and_keeps_subnets_apart(tmp_path, tiny_corpus):
    """Same budget, the default MAGIC-A settings: the task loss falls like SPOS's and the
    subnets' held-out scores stay as spread out as under the same walk without alignment (an
    alignment that collapses the supernet makes every path compute the same thing). Measured
    here (2026-12-02 / 12-06): score std over 20 random subnets 0.0101-0.0116 (SPOS) /
    0.0025-0.0028 (walk) / 0.0027-0.0044 (walk + align).

    The mechanism that keeps the defaults from collapsing is checked directly rather than by a
    tuned spread bound (the old control, uncapped raw MSE at weight 300, spread 0.38x the walk in
    one install and 0.72x in another): under the defaults the weighted alignment term never
    exceeds `align_max_ratio` x the task loss, while the old settings let it dominate the loss."""
    from bertnas.search import search

    common = dict(data=str(tiny_corpus), max_steps=100, save_steps=0, lr=1e-2, warmup_steps=4, seq_len=16,
                  tokenizer_vocab_size=120, eval_batches=4, base_every=20, model={"hidden_dropout_prob": 0.1})
    spread, final, weighted, task = {}, {}, {}, {}
    for name, opts in {"spos": dict(sampler="uniform", align=False),
                       "walk": dict(sampler="walk", align=False),
                       "magic": dict(sampler="walk", align=True),
                       # uncapped: a ratio of 1e6 (None, "no cap", is dropped as an unset override)
                       "old": dict(sampler="walk", align=True, align_weight=300.0, align_block_size=1,
                                   align_normalize=False, align_max_ratio=1e6, align_start=0, align_ramp=0),
                       }.items():
        pretrain(toy(tmp_path, name, **common, **opts))
        lines = read_log(tmp_path / name / "log.jsonl")
        final[name] = sum(r["mlm_loss"] for r in lines[-10:]) / 10
        weighted[name] = [r["loss"] - r["mlm_loss"] for r in lines]  # the weighted alignment term per step
        task[name] = [r["mlm_loss"] for r in lines]
        scores = [e["score"] for e in search(tmp_path / name, "random", None, num_samples=20, eval_batches=4,
                                             top_k=None, progress=False)]
        spread[name] = float(torch.tensor(scores).std())
    assert final["magic"] < final["spos"] + 0.05, final
    # alignment must not pull the paths together: compare with the same walk without it (the walk
    # itself spreads subnets less than SPOS after 100 steps: 0.0025 vs 0.0101 here) ...
    assert spread["magic"] > 0.8 * spread["walk"], spread
    # ... because the weighted term is capped at max_ratio (0.5) x the task loss at every step ...
    assert all(w <= 0.5 * t + 1e-5 for w, t in zip(weighted["magic"], task["magic"])), weighted["magic"]
    assert max(weighted["magic"]) > 0  # (alignment did run)
    # ... while the old settings (raw MSE on every layer from step 0, uncapped, weight 300) let the
    # alignment outweigh the task: the control that the cap check can fail
    ratios = [w / t for w, t in zip(weighted["old"], task["old"])]
    assert max(ratios) > 2 * 0.5, ratios
