"""`bertnas compress` on a toy teacher made here: budgets respected, every export reloads without
bertnas, the distillation loss falls, a resumed run repeats the uninterrupted one exactly, and bad
budgets / teachers are one-line errors before any training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from bertnas.compress.run import SUPERNET_DIR, compress
from bertnas.models.student import non_embedding_params
from bertnas.core.errors import UserError

STEPS = 6
RECIPE = {
    "student": {"hidden_size": 16, "embedding_size": 8},  # narrower and factorised: bridges and remote code
    "train": {"seq_len": 32, "batch_size": 4, "lr": 2e-3, "save_steps": 3, "eval_batches": 2, "warmup_steps": 1},
    "search": {"candidates_per_block": 12, "top_k": 2, "eval_batches": 2},
}
BUDGETS = {"1.5k": 1500, "6k": 6000}


def _read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 2-layer BertForMaskedLM with a WordPiece tokenizer of the embedded corpus, saved as a folder."""
    from transformers import BertConfig, BertForMaskedLM

    from bertnas.tasks import text_data as data_lib

    folder = tmp_path_factory.mktemp("teacher")
    tokenizer = data_lib.build_tokenizer(None, data_lib.load_texts(None), vocab_size=300)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                       pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def compressed(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("compress") / "out"
    summary = compress(teacher, budgets=",".join(BUDGETS), corpus="builtin", steps=STEPS, output_dir=out,
                       config=RECIPE, progress=False)
    return out, summary


def test_budgets_respected_and_summary_as_specified(compressed):
    out, summary = compressed
    assert list(summary) == list(BUDGETS)
    assert json.loads((out / "summary.json").read_text()) == summary
    for label, budget in BUDGETS.items():
        entry = summary[label]
        assert {"arch", "params", "params_total", "flops", "val_loss", "teacher_val_loss"} <= set(entry)
        config = json.loads((out / label / "config.json").read_text())
        assert config["arch"] == entry["arch"] and config["embedding_size"] == 8
        # the budgeted count is the chain's parameters, recomputed from the exported config
        from bertnas.models import BertNasConfig

        assert entry["params"] == non_embedding_params(BertNasConfig(**{
            k: v for k, v in config.items() if k in ("vocab_size", "hidden_size", "num_hidden_layers", "candidates",
                                                     "arch", "intermediate_size", "embedding_size")}), entry["arch"])
        assert 0 < entry["params"] <= budget < entry["params_total"]
        assert entry["val_loss"] > 0 and entry["teacher_val_loss"] > 0 and entry["flops"] > 0
        card = (out / label / "README.md").read_text()
        assert "teacher" in card and f"{label} ({budget:,})" in card and "CPU latency" in card
    # the larger budget buys at least as good a held-out distillation score
    assert summary["6k"]["distill_loss"] <= summary["1.5k"]["distill_loss"]


RELOAD = """
import json, sys
sys.modules["bertnas"] = None  # any import of bertnas fails: only the exported files may be used
import torch
from transformers import AutoModel, AutoModelForMaskedLM
for folder in sys.argv[1:]:
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
    ids = torch.randint(5, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
        logits = mlm(input_ids=ids).logits
    print(json.dumps({"hidden": list(hidden.shape), "logits": list(logits.shape), "finite": bool(torch.isfinite(logits).all()),
                      "mlm_params": sum(p.numel() for p in mlm.parameters())}))
"""


def test_every_export_reloads_with_automodel_without_bertnas(compressed, tmp_path):
    out, summary = compressed
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HOME": str(tmp_path / "hf")}
    folders = [str((out / label).resolve()) for label in summary]
    result = subprocess.run([sys.executable, "-c", RELOAD, *folders], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()[-len(folders):]
    for line, entry in zip(lines, summary.values()):
        shapes = json.loads(line)
        assert shapes["hidden"] == [2, 12, 16] and shapes["logits"][:2] == [2, 12] and shapes["finite"]
        assert shapes["mlm_params"] == entry["params_total"]


def test_resume_after_kill_gives_identical_losses(teacher, compressed, tmp_path):
    """A run killed after its step-3 checkpoint (the checkpoint is all a killed run leaves) and
    resumed with --resume-from-checkpoint latest repeats the uninterrupted run's losses and result."""
    out, summary = compressed
    resumed_out = tmp_path / "resumed"
    (resumed_out / SUPERNET_DIR).mkdir(parents=True)
    shutil.copytree(out / SUPERNET_DIR / "checkpoint-00000003", resumed_out / SUPERNET_DIR / "checkpoint-00000003")
    again = compress(teacher, budgets=",".join(BUDGETS), corpus="builtin", steps=STEPS, output_dir=resumed_out,
                     config=RECIPE, resume_from_checkpoint="latest", progress=False)
    full = _read_log(out / SUPERNET_DIR / "log.jsonl")
    part = _read_log(resumed_out / SUPERNET_DIR / "log.jsonl")
    assert [r["step"] for r in part] == [4, 5, 6]
    for a, b in zip(full[3:], part):
        assert (a["loss"], a["block_mse"], a["arch"], a["lr"]) == (b["loss"], b["block_mse"], b["arch"], b["lr"])
    for label in BUDGETS:
        for key in ("arch", "params", "params_total", "flops", "val_loss", "teacher_val_loss", "distill_loss"):
            assert again[label][key] == summary[label][key], (label, key)


def test_distillation_loss_falls(teacher, tmp_path):
    """One fixed path distilled alone (the hand-made baseline's way): the block-wise MSE falls."""
    from bertnas.pipelines.pretrain import pretrain

    run = tmp_path / "run"
    pretrain({"task": "distill", "init_from_bert": teacher, "tokenizer": teacher, "output_dir": str(run),
              "max_steps": 25, "save_steps": 0, "seq_len": 32, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1,
              "model": {"hidden_size": 16, "num_hidden_layers": 4, "candidates": ["mha2w16", "ffn1x"],
                        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "arch": ["mha2w16", "ffn1x", "mha2w16", "ffn1x"], "progress": False})
    block = [r["block_mse"] for r in _read_log(run / "log.jsonl")]
    first, last = sum(block[:5]) / 5, sum(block[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_impossible_budget_fails_before_training_naming_the_smallest_size(teacher, tmp_path):
    recipe = {**RECIPE, "student": {**RECIPE["student"], "candidates": ["mha2w16", "ffn1x"]}}  # no identity
    with pytest.raises(UserError) as err:
        compress(teacher, budgets="6k,100", corpus="builtin", steps=2, output_dir=tmp_path / "out", config=recipe,
                 progress=False)
    message = str(err.value)
    assert "budget 100 cannot be met" in message and "smallest reachable student" in message
    assert "['ffn1x', 'ffn1x', 'ffn1x', 'ffn1x']" in message and "2,304" in message  # 4 x ffn1x at width 16: 2*16*16 + 16 + 16 + 2*16
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_non_bert_teacher_and_bad_budgets_are_one_line_cli_errors(tmp_path, capsys):
    from transformers import GPT2Config

    from bertnas.cli import main

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    cases = {
        "not a BERT": ["--teacher", str(tmp_path / "gpt2"), "--budgets", "5M"],
        "Cannot read the size": ["--teacher", str(tmp_path / "gpt2"), "--budgets", "5 apples"],
        "no readable config.json": ["--teacher", str(tmp_path / "missing"), "--budgets", "5M"],
    }
    for expected, args in cases.items():
        code = main(["compress", *args, "--steps", "2", "--output-dir", str(tmp_path / "out")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (expected, lines)
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (expected, lines)
    assert not (tmp_path / "out").exists()


def test_recipe_file_states_the_defaults_and_unknown_keys_are_errors(tmp_path):
    from pathlib import Path

    from bertnas.compress.run import DEFAULT_RECIPE, load_recipe

    assert load_recipe(Path(__file__).parents[1] / "recipes" / "compress.yaml") == DEFAULT_RECIPE
    with pytest.raises(UserError, match="unknown recipe key student.width"):
        load_recipe({"student": {"width": 64}})
    with pytest.raises(UserError, match="unknown recipe section 'model'"):
        load_recipe({"model": {}})


def test_a_bert_shaped_winner_exports_as_a_plain_bert(teacher, tmp_path):
    """At the teacher's width, without factorised embeddings, `[mha, ffn] x L` is saved as a
    transformers BertForMaskedLM: it loads without remote code."""
    from transformers import AutoModelForMaskedLM

    recipe = {**RECIPE, "student": {"num_layers": 2, "candidates": ["mha4", "ffn"]}}
    summary = compress(teacher, budgets="1M", corpus="builtin", steps=2, output_dir=tmp_path / "out", config=recipe,
                       progress=False)
    entry = summary["1M"]
    assert entry["arch"] == ["mha4", "ffn"] and entry["layout"] == "bert"
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "out" / "1M")
    assert type(model).__name__ == "BertForMaskedLM" and model.config.num_hidden_layers == 1
    assert sum(p.numel() for p in model.parameters()) == entry["params_total"]
