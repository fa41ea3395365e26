"""The README's Quick tour runs as written, with the local all-MiniLM-L6-v2 checkpoint standing in
for its Hub id (nothing is downloaded in tests), and its exported subnet reloads as it says."""

import json
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def quick_tour() -> str:
    text = README.read_text()
    section = text.split("## Quick tour", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_tour_runs_as_written(minilm_path, tmp_path, monkeypatch):
    code = quick_tour()
    assert HUB_ID in code
    monkeypatch.chdir(tmp_path)  # save_pretrained("my-subnet") lands here
    scope: dict = {}
    exec(compile(code.replace(HUB_ID, str(minilm_path)), str(README), "exec"), scope)

    space, arch, subnet = scope["space"], scope["arch"], scope["subnet"]
    assert scope["out"].logits.shape[:2] == scope["input_ids"].shape
    params, flops = space.params(arch), space.flops(arch, seq_len=128)
    assert params > 0 and flops > 0
    assert type(scope["bert"]).__name__ == "BertForMaskedLM"

    # "anywhere, even without bertnas installed": the saved folder loads through the Auto classes
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "my-subnet", trust_remote_code=True).eval()
    subnet.eval()
    ids, mask = scope["input_ids"], scope["mask"]
    with torch.no_grad():
        expected = subnet.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = reloaded(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(expected, got, atol=1e-5)


# -- the flow ---------------------------------------------------------------------------------
# The README's shell block, run command by command as written; only options that shrink the run
# are appended (argparse keeps the last value of a repeated option), and the Hub id of the
# teacher is the local copy of the same model.

TINY_COMPRESS = """\
train: {eval_batches: 1, save_steps: 2, warmup_steps: 0}
search: {candidates_per_block: 2, top_k: 1, eval_batches: 1}
"""
TINY = {  # command prefix -> options appended
    "accelerate launch recipes/pretrain_supernet.py": "--max-steps 4 --save-steps 2 --no-progress",
    "bertnas search --checkpoint runs/toy ": "--candidates-per-bin 2 --eval-batches 1 --no-progress",
    "bertnas pretrain": "--max-steps 2 --no-progress",
    "bertnas export": "",
    "bertnas finetune": "--max-train-samples 16 --max-eval-samples 16 --epochs 1 --no-test-predictions",
    "bertnas search --space nb201": "--max-steps 2 --space-option C=4 --space-option N=1 --batch-size 4 "
                                    "--eval-batches 1 --top-k 4 --no-progress",
    "bertnas search --checkpoint runs/nb201-gaea": "--num-samples 4 --eval-batches 1 --no-progress",
    "bertnas analyze ranking": "",
    "bertnas analyze report": "--archs 4 --eval-batches 2",
    "bertnas compress": "--steps 2 --seq-len 16 --batch-size 2 --config tiny-compress.yaml --no-progress",
}


def flow_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README.read_text().split("## The flow", 1)[1], re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line]


def test_readme_flow_is_the_tested_one():
    """Every command of the flow has its tiny-size options here (a new or renamed step fails this
    test until it is covered), and the set-up steps are there."""
    commands = flow_commands()
    assert commands[0] == "make setup && source .venv/bin/activate"
    assert commands[1].startswith("export BERTNAS_DATA_DIR=")
    steps = commands[2:]
    assert [next((p for p in TINY if c.startswith(p)), c) for c in steps] == list(TINY)


@pytest.mark.slow  # ten commands, each a fresh process: 2-6 min on a loaded 2-core CPU
def test_readme_flow_runs_as_written(tmp_path, minilm_path):
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import DATA_DIR

    root = README.parent
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"no GLUE data under {DATA_DIR}")
    (tmp_path / "recipes").symlink_to(root / "recipes")
    (tmp_path / "tiny-compress.yaml").write_text(TINY_COMPRESS)
    bin_dir = tmp_path / "bin"  # `bertnas` of this checkout, whatever the installed console script points at
    bin_dir.mkdir()
    (bin_dir / "bertnas").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bertnas.cli "$@"\n')
    (bin_dir / "bertnas").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(root), "BERTNAS_DATA_DIR": str(DATA_DIR)}
    times = {}
    for command in flow_commands()[2:]:
        prefix = next(p for p in TINY if command.startswith(p))
        run = f"{command} {TINY[prefix]}".replace("sentence-transformers/all-MiniLM-L6-v2", str(minilm_path))
        start = time.perf_counter()
        done = subprocess.run(run, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        times[prefix] = round(time.perf_counter() - start, 1)
        print(f"{times[prefix]:6.1f} s  {run}", file=sys.stderr)
        assert done.returncode == 0, f"{run}\n{done.stderr[-3000:]}"
    print(times)
    runs = tmp_path / "runs"
    assert (runs / "toy" / "checkpoint-00000004").is_dir()
    assert json.loads((runs / "sst2" / "results.json").read_text())["eval"]["accuracy"] >= 0
    assert (runs / "toy-export" / "rank-3" / "README.md").is_file()
    assert json.loads((runs / "rank" / "ranking.json").read_text())
    assert (runs / "compress" / "summary.json").is_file()


# -- the Python API page ----------------------------------------------------------------------

def test_python_api_example_runs_as_written(tmp_path, monkeypatch):
    page = README.parent / "docs" / "python_api.md"
    code = re.search(r"```python\n(.*?)```", page.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(page), "exec"), scope)
    assert (tmp_path / "runs" / "api-toy" / "training.png").is_file()
    best = scope["best"]
    assert best["metric"] == "mlm_loss" and best["higher_is_better"] is False and best["params"] <= 100_000
    assert scope["folders"] == [Path("runs/api-toy-export/rank-1")]
    assert scope["tokenizer"].model_max_length == 64
    card = (tmp_path / "runs" / "api-toy-export" / "rank-1" / "README.md").read_text()
    assert "license: apache-2.0" in card
