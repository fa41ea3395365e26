"""What a transformers user expects of the commands: TrainingArguments' option names, trackers at a
logging interval with Trainer-like console lines, training.png, model cards by the Hub's metadata
spec (fine-tuned models too), a tokenizer that fits the model and loads without remote code, the
metric, direction and noise of search scores, and one line instead of a Hub retry loop."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertnas.cli import build_parser, main
from tests.conftest import DATA_DIR


def parse(command: str, argv: list[str]):
    return build_parser(command).parse_args([command, *argv])


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 4-step toy run started with TrainingArguments' names, and the export of a hybrid subnet."""
    root = tmp_path_factory.mktemp("hf")
    run, export = root / "run", root / "export"
    code, out, err = run_cli(["pretrain", "--output_dir", str(run), "--max_steps", "4", "--save_steps", "4",
                              "--learning_rate", "1e-3", "--per_device_train_batch_size", "4", "--logging_steps", "2",
                              "--no-progress", "--set", "eval_batches=2"])
    assert code == 0, err
    code, _, err2 = run_cli(["export", "--checkpoint", str(run), "--arch", "conv3,ffn", "--output-dir", str(export),
                             "--license", "mit"])
    assert code == 0, err2
    return {"run": run, "export": export, "stdout": out, "stderr": err}


# -- flags ------------------------------------------------------------------------------------

def test_trainer_argument_names_are_aliases_of_every_command():
    args = parse("pretrain", ["--output_dir", "o", "--learning_rate", "1e-4", "--per_device_train_batch_size", "8",
                              "--save_total_limit", "3", "--logging_steps", "7", "--report_to", "none", "--bf16",
                              "--push_to_hub", "--hub_model_id", "me/supernet", "--walk_k", "2"])
    assert (args.output_dir, args.lr, args.batch_size, args.keep_last, args.logging_steps, args.report_to) == \
        ("o", 1e-4, 8, 3, 7, "none")
    assert (args.mixed_precision, args.push_to_hub, args.hub_model_id, args.walk_k) == ("bf16", True, "me/supernet", 2)
    args = parse("finetune", ["--task", "sst2", "--model", "m", "--output_dir", "o", "--learning_rate", "2e-5",
                              "--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--fp16",
                              "--logging_steps", "5", "--report_to", "tensorboard", "--push_to_hub", "me/sst2"])
    assert (args.lr, args.batch_size, args.epochs, args.fp16, args.logging_steps, args.report_to, args.push_to_hub) == \
        (2e-5, 16, 2.0, True, 5, "tensorboard", "me/sst2")
    args = parse("search", ["--strategy", "darts", "--output_dir", "o", "--learning_rate", "1e-3", "--fp16",
                            "--save_total_limit", "1", "--resume_from_checkpoint", "latest", "--save_steps", "5"])
    assert (args.lr, args.mixed_precision, args.keep_last, args.resume_from_checkpoint, args.save_steps) == \
        (1e-3, "fp16", 1, "latest", 5)
    from bertnas.cli.search import strategy_config

    config = strategy_config(args)  # the training options reach the run's config
    assert (config["lr"], config["mixed_precision"], config["keep_last"], config["save_steps"]) == (1e-3, "fp16", 1, 5)
    args = parse("compress", ["--teacher", "t", "--steps", "2", "--output_dir", "o", "--learning_rate", "1e-4",
                              "--bf16", "--save_total_limit", "2", "--push_to_hub", "--hub_model_id", "me/small"])
    assert (args.lr, args.mixed_precision, args.keep_last, args.push_to_hub, args.hub_model_id) == \
        (1e-4, "bf16", 2, True, "me/small")
    assert parse("export", ["--checkpoint", "c", "--arch", "a", "--output_dir", "o"]).output_dir == "o"


def test_help_groups_options_and_shows_the_trainer_names(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    for group in ("run:", "optimisation:", "precision and distribution:", "logging and the Hub:"):
        assert f"\n{group}\n" in text
    assert "--lr LR, --learning_rate LR" in text and "--keep-last KEEP_LAST, --save_total_limit KEEP_LAST" in text


def test_bad_hub_and_tracker_options_are_one_line_before_any_work(tmp_path):
    from bertnas.train.tracking import TRACKERS, installed

    code, _, err = run_cli(["pretrain", "--push-to-hub", "--output-dir", str(tmp_path / "a")])
    assert code == 2 and err.count("\n") == 1 and "--hub-model-id" in err
    missing = next((name for name in TRACKERS if not installed(name)), None)
    if missing is not None:
        code, _, err = run_cli(["pretrain", "--report-to", missing, "--output-dir", str(tmp_path / "b")])
        assert code == 2 and f"pip install {TRACKERS[missing][1]}" in err and err.count("\n") == 1
    code, _, err = run_cli(["search", "--checkpoint", str(tmp_path), "--output-dir", str(tmp_path / "c"),
                            "--learning_rate", "1e-3"])
    assert code == 2 and "--lr is a training option; it goes with --strategy" in err
    assert not any((tmp_path / name).exists() for name in "abc")


# -- logging ----------------------------------------------------------------------------------

def test_pretrain_logs_each_interval_and_draws_its_curves(toy):
    run = toy["run"]
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lr"], cfg["batch_size"], cfg["logging_steps"]) == (1e-3, 4, 2)
    lines = [line for line in toy["stderr"].splitlines() if line.startswith("{'step': ")]
    assert [line.split(",")[0] for line in lines] == ["{'step': 2", "{'step': 4"]  # one per interval, no bar
    assert "'loss': " in lines[0] and "'lr': " in lines[0]
    assert (run / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(toy["stdout"])["plot"] == str(run / "training.png")


def test_interval_log_sends_interval_means_to_the_trackers():
    from bertnas.train.tracking import IntervalLog

    sent = []

    class Acc:
        def log(self, row, step):
            sent.append((step, row))

    log = IntervalLog(Acc(), every=2, tracking=True, console=False)
    for step, loss in enumerate([4.0, 2.0, 1.0], start=1):
        log.update({"step": step, "loss": loss, "arch": ["x"], "flag": True})
    log.flush()  # the end of the run: the partial interval
    assert sent == [(2, {"loss": 3.0}), (3, {"loss": 1.0})]


# -- exports and model cards ------------------------------------------------------------------

def test_export_card_follows_the_hub_metadata_spec_and_tokenizer_fits(toy):
    from huggingface_hub import ModelCard

    folder = toy["export"]
    data = ModelCard.load(folder / "README.md").data
    assert (data.license, data.library_name, data.language, data.pipeline_tag) == \
        ("mit", "transformers", "en", "fill-mask")
    assert {"bertnas", "neural-architecture-search"} <= set(data.tags)
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 64  # the positions
    # the card's own tokenizer line, in a fresh interpreter: no remote-code question, no remote code
    card = (folder / "README.md").read_text()
    line = next(line for line in card.splitlines() if line.startswith("tokenizer = AutoTokenizer"))
    code = f"from transformers import AutoTokenizer\n{line.replace(str(folder), '{0}')}\n".format(folder)
    code = code.replace(f'"{folder.name}"', f'"{folder}"') if str(folder) not in code else code
    code += "print(type(tokenizer).__name__, tokenizer.model_max_length)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert done.stdout.split()[-1] == "64"


def test_card_metadata_keeps_hub_ids_and_inherits_the_license(tmp_path):
    from bertnas.export import card_metadata

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a BERT\n")
    text = card_metadata(pipeline_tag="fill-mask", base_model="google-bert/bert-base-uncased",
                         datasets=["wikitext:wikitext-103-raw-v1", str(tmp_path)], inherit_from=teacher)
    assert "base_model: google-bert/bert-base-uncased" in text and "license: apache-2.0" in text
    assert "- wikitext\n" in text and str(tmp_path) not in text  # local paths are not Hub ids
    assert "base_model" not in card_metadata(base_model=str(teacher))


def test_push_to_hub_while_offline_is_one_line(toy, monkeypatch):
    import bertnas.export as export_lib
    from bertnas.core.errors import UserError

    monkeypatch.setattr(export_lib, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError, match="offline or unreachable"):
        export_lib.push_model_folder(toy["export"], "me/subnet")


# -- fine-tuning ------------------------------------------------------------------------------

def test_finetune_of_a_hybrid_export_writes_a_card_with_its_results(toy, tmp_path):
    """The exported conv3,ffn subnet (remote-code layout) fine-tunes without --trust-remote-code,
    and the fine-tuned model gets a card with a model-index of its dev results."""
    from huggingface_hub import ModelCard

    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"no GLUE data under {DATA_DIR}")
    out = tmp_path / "sst2"
    code, stdout, err = run_cli(["finetune", "--task", "sst2", "--model", str(toy["export"]), "--output_dir", str(out),
                                 "--data-dir", str(DATA_DIR), "--max-train-samples", "16", "--max-eval-samples", "16",
                                 "--num_train_epochs", "1", "--no-test-predictions", "--no-progress",
                                 "--logging_steps", "1"])
    assert code == 0, err[-2000:]
    data = ModelCard.load(out / "model" / "README.md").data.to_dict()
    assert data["pipeline_tag"] == "text-classification" and data["datasets"] == ["nyu-mll/glue"]
    assert data["license"] == "mit"  # inherited from the export's card
    result = data["model-index"][0]["results"][0]
    assert result["dataset"]["config"] == "sst2" and result["metrics"][0]["type"] == "accuracy"
    assert result["metrics"][0]["value"] == round(json.loads(stdout)["eval"]["accuracy"], 4)
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_finetune_without_data_and_an_unreachable_hub_is_one_line(toy, tmp_path, monkeypatch):
    import glue.data

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # not offline by setting: by network
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BERTNAS_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(glue.data, "hub_reachable", lambda timeout=3.0: False)
    code, out, err = run_cli(["finetune", "--task", "sst2", "--model", str(toy["export"]),
                              "--output-dir", str(tmp_path / "o")])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "unreachable" in err and "--data-dir" in err and "BERTNAS_DATA_DIR" in err


def test_validation_errors_raised_in_glue_and_bertnas_count_as_user_errors():
    """A plain ValueError / FileNotFoundError raised by our own `raise` statements is bad input
    (one line); the check must find the package folders from bertnas/cli/__init__.py."""
    import bertnas.cli as cli

    root = Path(cli.__file__).resolve().parents[2]
    assert cli.OUR_CODE == (f"{root / 'bertnas'}{os.sep}", f"{root / 'glue'}{os.sep}")


# -- search output ----------------------------------------------------------------------------

def test_search_names_its_metric_direction_and_noise(toy, tmp_path):
    out = tmp_path / "search"
    code, stdout, err = run_cli(["search", "--checkpoint", str(toy["run"]), "--method", "random", "--num-samples", "3",
                                 "--eval-batches", "2", "--output-dir", str(out), "--no-progress"])
    assert code == 0, err
    assert "mlm_loss (lower better) +- s.e." in stdout.splitlines()[0]
    assert "standard error over 2 held-out batches" in stdout
    entries = json.loads((out / "results.json").read_text())
    assert all(e["metric"] == "mlm_loss" and e["higher_is_better"] is False for e in entries)
    assert all(isinstance(e["score_stderr"], float) and e["score_stderr"] >= 0 for e in entries)
    from bertnas.storage.results import batch_stderr

    assert batch_stderr([1.0, 3.0]) == pytest.approx(1.0) and batch_stderr([2.0]) is None


# -- the Python API ---------------------------------------------------------------------------

def test_python_api_keywords_are_the_command_line():
    from bertnas.cli import Parser
    from bertnas.cli.api import to_argv
    from bertnas.cli.pretrain import add_arguments
    from bertnas.core.errors import UserError

    parser = Parser()
    add_arguments(parser)
    argv = to_argv("pretrain", parser, {"output_dir": "o", "learning_rate": 1e-3, "progress": False, "bf16": True,
                                        "align": False, "arch": ["conv3", "ffn"], "set": {"eval_batches": 1},
                                        "seed": None})
    assert argv == ["--output-dir", "o", "--learning_rate", "0.001", "--no-progress", "--bf16", "--no-align",
                    "--arch", "conv3,ffn", "--set", "eval_batches=1"]
    args = parser.parse_args(argv)
    assert (args.lr, args.progress, args.mixed_precision, args.align, args.arch) == \
        (1e-3, False, "bf16", False, ["conv3", "ffn"])
    with pytest.raises(UserError, match="has no option 'learning_rat'"):
        to_argv("pretrain", parser, {"learning_rat": 1})


def test_command_modules_stay_modules_and_are_callable():
    import bertnas
    import bertnas.export
    from bertnas.search import parse_size

    assert callable(bertnas.search) and callable(bertnas.export) and callable(bertnas.compress)
    assert bertnas.export.MARKER_FILE == ".bertnas-export.json" and parse_size("1k") == 1000
    assert callable(bertnas.pretrain) and callable(bertnas.finetune)


# -- fine-tuning from files -------------------------------------------------------------------

def _write_rows(path, n, seed):
    import random

    rng = random.Random(seed)
    words = {"pos": ["great", "fine", "lovely"], "neg": ["bad", "awful", "dull"]}
    with open(path, "w") as f:
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            row = {"review": " ".join(rng.choice(words[label]) for _ in range(4)), "label": label,
                   "score": round(rng.random() * 5, 2)}
            f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("label, expected", [("label", {"f1", "accuracy"}), ("score", {"pearson", "spearmanr"})])
def test_finetune_from_files_classification_and_regression(toy, tmp_path, label, expected):
    _write_rows(tmp_path / "train.jsonl", 24, 0)
    _write_rows(tmp_path / "dev.jsonl", 8, 1)
    code, stdout, err = run_cli(["finetune", "--train-file", str(tmp_path / "train.jsonl"), "--validation-file",
                                 str(tmp_path / "dev.jsonl"), "--label-column", label, "--model", str(toy["export"]),
                                 "--output-dir", str(tmp_path / "out"), "--epochs", "1", "--no-progress"])
    assert code == 0, err[-2000:]
    result = json.loads(stdout)
    assert set(result["eval"]) == expected and result["task"] == "train"
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    if label == "label":
        assert config["id2label"] == {"0": "neg", "1": "pos"}
    else:
        assert config["problem_type"] == "regression" and len(config["id2label"]) == 1


def test_finetune_from_files_bad_input_is_one_line(toy, tmp_path):
    _write_rows(tmp_path / "train.jsonl", 8, 0)
    for argv, message in [(["--validation-file", str(tmp_path / "missing.csv")], "does not exist"),
                          ([], "--train-file needs --validation-file"),
                          (["--validation-file", str(tmp_path / "train.jsonl"), "--label-column", "nope"],
                           "no label column 'nope'"),
                          (["--validation-file", str(tmp_path / "train.jsonl"), "--task", "sst2"], "not both")]:
        code, _, err = run_cli(["finetune", "--train-file", str(tmp_path / "train.jsonl"), *argv, "--model",
                                str(toy["export"]), "--output-dir", str(tmp_path / "o")])
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)


def _review_splits(n_train=24, n_dev=8):
    """A DatasetDict like a Hub dataset's: a text column, a ClassLabel label column, train / test."""
    import random

    import datasets

    rng = random.Random(0)
    words = (["bad", "awful", "dull"], ["great", "fine", "lovely"])

    def rows(n):
        stars = [rng.randrange(2) for _ in range(n)]
        return {"body": [" ".join(rng.choice(words[s]) for _ in range(4)) for s in stars], "stars": stars,
                "votes": list(range(n))}

    features = datasets.Features({"body": datasets.Value("string"), "stars": datasets.ClassLabel(names=["neg", "pos"]),
                                  "votes": datasets.Value("int32")})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(rows(n), features=features)
                                 for split, n in (("train", n_train), ("test", n_dev))})


def test_finetune_on_a_datasets_folder_and_a_hub_dataset_with_its_columns(toy, tmp_path, monkeypatch):
    """--dataset-name: a local save_to_disk folder, and a Hub id (datasets.load_dataset mocked: no
    network); named splits and columns; the ClassLabel names become the model's labels and the
    Hub id the card's dataset."""
    import datasets

    import glue.common

    splits = _review_splits()
    splits.save_to_disk(str(tmp_path / "reviews"))
    common = ["--validation-split", "test", "--text-columns", "body", "--label-column", "stars", "--model",
              str(toy["export"]), "--epochs", "1", "--no-progress"]
    code, stdout, err = run_cli(["finetune", "--dataset-name", str(tmp_path / "reviews"), *common,
                                 "--output-dir", str(tmp_path / "local")])
    assert code == 0, err[-2000:]
    assert set(json.loads(stdout)["eval"]) == {"f1", "accuracy"}
    assert json.loads((tmp_path / "local" / "model" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}

    calls = []

    def load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return splits[split.split("[")[0]].select(range(12 if "[:12]" in split else len(splits[split.split("[")[0]])))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(glue.common, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    code, stdout, err = run_cli(["finetune", "--dataset-name", "someone/reviews", "--dataset-config", "en",
                                 "--train-split", "train[:12]", *common, "--output-dir", str(tmp_path / "hub")])
    assert code == 0, err[-2000:]
    assert calls == [("someone/reviews", "en", "train[:12]"), ("someone/reviews", "en", "test")]
    result = json.loads(stdout)
    assert result["task"] == "someone-reviews-en"
    card = (tmp_path / "hub" / "model" / "README.md").read_text()
    assert "- someone/reviews" in card and "config: en" in card and "split: test" in card


def test_finetune_hub_dataset_offline_or_bad_is_one_line(toy, tmp_path, monkeypatch):
    import glue.common

    base = ["finetune", "--model", str(toy["export"]), "--output-dir", str(tmp_path / "o")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli([*base, "--dataset-name", "someone/reviews"])
    assert code == 2 and "is not a local folder and the Hub is offline" in err and err.count("\n") == 1, err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(glue.common, "hub_reachable", lambda timeout=3.0: False)
    code, _, err = run_cli([*base, "--dataset-name", "someone/reviews"])
    assert code == 2 and "unreachable" in err and err.count("\n") == 1, err
    _review_splits().save_to_disk(str(tmp_path / "reviews"))
    for argv, message in [(["--dataset-name", str(tmp_path / "reviews")], "no split 'validation'"),
                          (["--dataset-name", str(tmp_path / "reviews"), "--validation-split", "test",
                            "--label-column", "label"], "no label column 'label'"),
                          (["--dataset-name", str(tmp_path / "nowhere")], "does not exist"),
                          (["--dataset-config", "en", "--task", "sst2"], "--dataset-config goes with --dataset-name"),
                          (["--dataset-name", "a/b", "--task", "sst2"], "not both")]:
        code, _, err = run_cli([*base, *argv])
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)


# -- pre-training data ------------------------------------------------------------------------

def test_pretrain_reads_a_named_text_column_and_caches_its_packed_rows(tmp_path, monkeypatch):
    from tests.conftest import tiny_texts

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(tiny_texts(200))))
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli(["pretrain", "--data", str(corpus), "--text-column", "body", "--max_steps", "1",
                            "--output_dir", str(tmp_path / "run"), "--no-progress", "--set", "eval_batches=1",
                            "--set", "tokenizer_vocab_size=120"])
    assert code == 0, err[-2000:]
    assert len(list((tmp_path / "cache" / "lm-splits").iterdir())) == 1  # tokenised once, reused by later runs
    code, _, err = run_cli(["pretrain", "--data", str(corpus), "--max_steps", "1", "--output_dir",
                            str(tmp_path / "run2"), "--no-progress"])
    assert code == 2 and "no 'text'" in err and "--text-column" in err


def test_search_strategy_resumes_as_its_message_says(tmp_path):
    out = str(tmp_path / "spos")
    common = ["search", "--space", "bert", "--strategy", "spos", "--no-progress", "--strategy-option", "population=2",
              "--strategy-option", "generations=1", "--top-k", "2", "--eval-batches", "2", "--output-dir", out]
    assert run_cli([*common, "--max-steps", "2", "--save_steps", "1"])[0] == 0
    code, _, err = run_cli([*common, "--max-steps", "3", "--resume-from-checkpoint", "latest"])
    assert code == 0, err[-2000:]
    assert [json.loads(line)["step"] for line in (tmp_path / "spos" / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_search_strategy_push_to_hub_uploads_the_rank_1_arch(tmp_path, monkeypatch):
    import huggingface_hub

    import bertnas.export as export_lib

    calls = {}

    class Repo:
        repo_id = "me/spos-best"

    def upload_folder(self, **kwargs):
        folder = kwargs["folder_path"]
        calls.update(kwargs, files=sorted(os.listdir(folder)),
                     config=json.loads(open(os.path.join(folder, "config.json")).read()),
                     card=open(os.path.join(folder, "README.md")).read())
        return "https://huggingface.co/me/spos-best/commit/0"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: Repo())
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(export_lib, "hub_reachable", lambda timeout=3.0: True)
    out = tmp_path / "spos"
    common = ["search", "--space", "bert", "--strategy", "spos", "--no-progress", "--strategy-option", "population=2",
              "--strategy-option", "generations=1", "--top-k", "2", "--eval-batches", "1", "--output-dir", str(out),
              "--max-steps", "2"]
    code, stdout, err = run_cli([*common, "--push_to_hub", "--hub_model_id", "me/spos-best", "--license", "mit"])
    assert code == 0, err[-2000:]
    best = json.loads((out / "results.json").read_text())
    best = (best["results"] if isinstance(best, dict) else best)[0]["arch"]
    assert calls["repo_id"] == "me/spos-best" and {"README.md", "config.json", "model.safetensors"} <= set(calls["files"])
    assert (out / "export" / "rank-1" / "config.json").is_file() and "license: mit" in calls["card"]
    assert calls["config"].get("arch", best) == best  # the rank-1 arch (a plain BERT layout has no arch key)
    assert "pushed " in stdout and "https://huggingface.co/me/spos-best" in stdout
    # refused in one line before anything trains: offline, or with a --checkpoint search
    monkeypatch.setattr(export_lib, "hub_reachable", lambda timeout=3.0: False)
    code, _, err = run_cli([*common[:-1], "3", "--push-to-hub", "me/x", "--output-dir", str(tmp_path / "off")])
    assert code == 2 and "offline or unreachable" in err and "Traceback" not in err and not (tmp_path / "off").exists()
    code, _, err = run_cli(["search", "--checkpoint", str(out), "--push-to-hub", "me/x"])
    assert code == 2 and "bertnas export" in err and "Traceback" not in err


def test_pretrain_push_to_hub_uploads_the_supernet_with_a_card(tmp_path, monkeypatch):
    import huggingface_hub

    import bertnas.export as export_lib

    calls = {}

    class Repo:
        repo_id = "me/supernet"

    def upload_folder(self, **kwargs):
        calls.update(kwargs)
        folder = kwargs["folder_path"]
        calls["files"] = sorted(os.listdir(folder))
        calls["card"] = open(os.path.join(folder, "README.md")).read()
        return "https://huggingface.co/me/supernet/commit/0"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: Repo())
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(export_lib, "hub_reachable", lambda timeout=3.0: True)
    code, out, err = run_cli(["pretrain", "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--no-progress",
                              "--push_to_hub", "--hub_model_id", "me/supernet", "--set", "eval_batches=1"])
    assert code == 0, err[-2000:]
    assert calls["repo_id"] == "me/supernet" and {"README.md", "config.json", "model.safetensors"} <= set(calls["files"])
    assert "# bertnas supernet" in calls["card"] and "library_name: transformers" in calls["card"]
    assert json.loads(out)["hub"].endswith("/commit/0")
    assert not (tmp_path / "run" / "checkpoint-00000002" / "model" / "README.md").exists()  # the checkpoint is untouched
