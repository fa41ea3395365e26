"""What the GPU users rely on, checked through its mechanism on the CPU: divergence stops a run
with one line and keeps finite checkpoints, the training step reads the device once, arch
weights are not read back per choice, masks are additive, RNG state moves between devices,
controllers broadcast, ELECTRA's held-out corruption is device-independent, latency syncs the
measured device, the GPU check's dry run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_texts

BERTNAS = [sys.executable, "-m", "bertnas.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONWARNINGS": "ignore"}
TRAIN = ["--data", "tiny.txt", "--seq-len", "16", "--no-progress"]


def bertnas(args, cwd, timeout=300):
    return subprocess.run([*BERTNAS, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_ready")
    (root / "tiny.txt").write_text("\n".join(tiny_texts()) + "\n")
    return root


def _finite_weights(ckpt: Path) -> bool:
    from safetensors.torch import load_file

    files = list(ckpt.rglob("*.safetensors"))
    assert files, f"no weights in {ckpt}"
    return all(torch.isfinite(t).all() for f in files for t in load_file(f).values() if t.is_floating_point())


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(corpus_dir):
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "20", "--save-steps", "1", "--lr", "1e4",
                    "--output-dir", "diverged"], corpus_dir)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "diverged at step" in errors[0] and "--lr" in errors[0]
    run = corpus_dir / "diverged"
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert checkpoints, "the steps before the divergence were checkpointed"
    step = int(errors[0].split("diverged at step ")[1].split(":")[0])
    assert all(int(c.name.split("-")[1]) < step for c in checkpoints), "no checkpoint of the diverged step"
    assert all(_finite_weights(c) for c in checkpoints)
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert all(line["step"] < step for line in lines)


def test_nonfinite_steps_are_skipped_up_to_the_allowance(corpus_dir):
    """max_nonfinite_steps: a non-finite step leaves the weights as they were and the run goes on
    until the allowance is spent."""
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "4", "--save-steps", "0", "--lr", "1e4",
                    "--set", "max_nonfinite_steps=100", "--output-dir", "skipped"], corpus_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in (corpus_dir / "skipped" / "log.jsonl").read_text().splitlines()]
    assert any(line.get("skipped_nonfinite") for line in lines)
    assert all(_finite_weights(c) for c in (corpus_dir / "skipped").glob("checkpoint-*"))
