"""glue/: task specs, local loaders on the real GLUE files, metrics vs hand-computed values, a tiny
fine-tune, SQuAD post-processing, and clear errors for bad inputs."""

import json
import re
import math
import random

import pytest

from conftest import DATA_DIR

import glue
from glue import data as glue_data
from glue.finetune import Settings, finetune, submission_label
from glue.metrics import load_metric
from glue.squad import finetune_squad, postprocess_predictions, prepare_train_features

GLUE_DIR = DATA_DIR / "glue"

# ---------------------------------------------------------------- metrics


def test_glue_metric_matches_hand_computed_values():
    # confusion matrix: TP=2 (rows 0, 4), FP=1 (row 1), TN=1 (row 2), FN=1 (row 3)
    preds, refs = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    mcc = load_metric("cola").compute(predictions=preds, references=refs)["matthews_correlation"]
    assert mcc == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))  # (TP*TN-FP*FN)/sqrt(...) = 1/6
    mrpc = load_metric("mrpc").compute(predictions=preds, references=refs)
    assert mrpc["accuracy"] == pytest.approx(3 / 5)
    assert mrpc["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2TP / (2TP + FP + FN)
    # x=[1,2,3], y=[1,3,2]: cov 1, both variances 2 -> r = 0.5; the ranks are the values -> rho = 0.5
    stsb = load_metric("stsb").compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 3.0, 2.0])
    assert stsb["pearson"] == pytest.approx(0.5)
    assert stsb["spearmanr"] == pytest.approx(0.5)
    # monotone but not linear: Spearman 1, Pearson below 1
    stsb = load_metric("stsb").compute(predictions=[1.0, 2.0, 3.0, 4.0], references=[1.0, 2.0, 4.0, 9.0])
    assert stsb["spearmanr"] == pytest.approx(1.0) and stsb["pearson"] < 0.99


def _ref(qid, *texts):
    return {"id": qid, "answers": {"text": list(texts), "answer_start": [0] * len(texts)}}


def test_squad_metric_normalises_articles_punctuation_and_case():
    preds = [
        {"id": "a", "prediction_text": "The Cat!"},  # == "cat" after normalisation
        {"id": "b", "prediction_text": "big red dog"},  # 2 of 3 tokens shared with "red dog house"
        {"id": "c", "prediction_text": "Paris"},  # matches the second gold answer
    ]
    refs = [_ref("a", "cat"), _ref("b", "red dog house"), _ref("c", "London", "paris.")]
    out = load_metric("squad").compute(predictions=preds, references=refs)
    assert out["exact_match"] == pytest.approx(100 * 2 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 3)


def test_squad_v2_metric_no_answers_and_best_threshold():
    preds = [
        {"id": "a", "prediction_text": "cat", "no_answer_probability": 0.1},  # right answer
        {"id": "b", "prediction_text": "dog", "no_answer_probability": 0.8},  # answered an unanswerable one
        {"id": "c", "prediction_text": "", "no_answer_probability": 0.9},  # rightly abstained
    ]
    refs = [_ref("a", "the cat"), _ref("b"), _ref("c")]
    out = load_metric("squad_v2").compute(predictions=preds, references=refs)
    assert out["exact"] == pytest.approx(100 * 2 / 3)
    assert out["HasAns_exact"] == 100.0 and out["HasAns_total"] == 1
    assert out["NoAns_exact"] == 50.0 and out["NoAns_total"] == 2
    # abstaining above p=0.1 drops the wrong "dog" and keeps "cat": all three right
    assert out["best_exact"] == 100.0 and out["best_exact_thresh"] == pytest.approx(0.1)


def test_glue_score_is_mean_of_task_means():
    results = {"mrpc": {"f1": 0.8, "accuracy": 0.7}, "stsb": {"pearson": 0.9, "spearmanr": 0.8}, "sst2": {"accuracy": 0.9}}
    assert glue.glue_score(results) == pytest.approx((75 + 85 + 90) / 3)
    mnli = {"matched_accuracy": 0.8, "mismatched_accuracy": 0.7}
    assert glue.task_score("mnli", mnli) == pytest.approx(75)


def test_submission_labels_are_glue_strings():
    assert submission_label(glue.get_task("rte"), 1) == "not_entailment"
    assert submission_label(glue.get_task("mnli"), 2) == "contradiction"
    assert submission_label(glue.get_task("sst2"), 1) == "1"
    assert submission_label(glue.get_task("stsb"), 7.3) == "5.000"


# ---------------------------------------------------------------- loaders on the real files

# rows per split from shared/data/SOURCES.md
REAL_COUNTS = {
    "sst2": {"train": 67349, "validation": 872, "test": 1821},
    "mrpc": {"train": 3668, "validation": 408, "test": 1725},
    "cola": {"train": 8551, "validation": 1043, "test": 1063},
    "rte": {"train": 2490, "validation": 277, "test": 3000},
    "stsb": {"train": 5749, "validation": 1500, "test": 1379},
    "qnli": {"validation": 5463, "test": 5463},
    "mnli": {},
    "qqp": {},
    "wnli": {},
}


@pytest.mark.parametrize("task", list(REAL_COUNTS))
def test_loader_reads_real_glue_files(task):
    spec = glue.get_task(task)
    folder = GLUE_DIR / spec.folder
    if not REAL_COUNTS[task] or not folder.is_dir():
        pytest.skip(f"{task}: no {folder} in the shared data (see shared/data/SOURCES.md, 'Not available')")
    ds = glue_data.load_task(task, DATA_DIR)
    assert {split: len(d) for split, d in ds.items()} == REAL_COUNTS[task]
    for split, d in ds.items():
        row = d[0]
        assert all(isinstance(row[c], str) and row[c].strip() for c in spec.text_columns)
        if split.startswith("test"):
            assert "label" not in d.column_names
        elif spec.is_regression:
            assert 0.0 <= min(d["label"]) and max(d["label"]) <= 5.0
        else:
            assert set(d["label"]) == set(range(spec.num_labels))  # every class occurs, nothing else


def test_mrpc_bom_and_headerless_cola_parse():
    if not (GLUE_DIR / "MRPC").is_dir() or not (GLUE_DIR / "CoLA").is_dir():
        pytest.skip("MRPC / CoLA not in the shared data")
    mrpc = glue_data.load_task("mrpc", DATA_DIR, splits=["validation"])["validation"][0]
    assert mrpc["label"] == 1 and mrpc["sentence1"].startswith("He said the foodservice pie business")
    cola = glue_data.load_task("cola", DATA_DIR, splits=["validation"])["validation"][0]
    assert cola == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1, "idx": 0}


def test_squad_loader_reads_dev_json():
    if not (DATA_DIR / "squad" / "v1.1" / "dev-v1.1.json").exists():
        pytest.skip("no squad/v1.1/dev-v1.1.json in the shared data")
    dev = glue_data.load_task("squad", DATA_DIR, splits=["validation"])["validation"]
    assert len(dev) == 10570
    row = dev[0]
    start = row["answers"]["answer_start"][0]
    assert row["context"][start:start + len(row["answers"]["text"][0])] == row["answers"]["text"][0]


# ---------------------------------------------------------------- bad inputs


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match="Unknown task 'sst3'.*sst2.*squad_v2"):
        glue.get_task("sst3")


def test_wrong_folder_names_missing_file_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SST-2.*train\.tsv.*GLUE download layout"):
        glue_data.load_task("sst2", tmp_path)
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    (tmp_path / "glue" / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(FileNotFoundError, match=r"RTE/dev\.tsv \(validation split\)"):
        glue_data.load_task("rte", tmp_path)


def test_label_mismatch_is_a_clear_error(tmp_path):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("sentence\tlabel\ngood film\t1\nawful film\tpositive\n")
    with pytest.raises(ValueError, match=r"row 1: label 'positive' is not one of the sst2 labels"):
        glue_data.load_task("sst2", tmp_path)


def test_file_of_another_task_is_a_clear_error(tmp_path):
    folder = tmp_path / "glue" / "MRPC"
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood film\t1\n")  # an SST-2 file in MRPC's place
    with pytest.raises(ValueError, match=r"columns \['#1 String', '#2 String', 'Quality'\] not found"):
        glue_data.load_task("mrpc", tmp_path)


def test_a_few_broken_rows_are_skipped_many_are_an_error(tmp_path):
    """QQP's files hold a few rows with too many or too few fields: skip them; a file of them is wrong."""
    folder = tmp_path / "glue" / "QQP"
    folder.mkdir(parents=True)
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    good = [f"{i}\t{2 * i}\t{2 * i + 1}\tquestion {i}?\tother {i}?\t{i % 2}\n" for i in range(3000)]
    broken = ["9001\t1\t2\ta question cut short\n", "9002\t3\t4\tq\tr\t1\tstray field\n"]
    (folder / "train.tsv").write_text(header + "".join(good[:1000] + broken[:1] + good[1000:] + broken[1:]))
    (folder / "dev.tsv").write_text(header + "".join(good[:10]))
    ds = glue_data.load_task("qqp", tmp_path, splits=["train", "validation"])
    assert len(ds["train"]) == 3000 and "a question cut short" not in ds["train"]["question1"]
    assert ds["train"]["label"][:4] == [0, 1, 0, 1]

    (folder / "dev.tsv").write_text(header + "".join(good[:10] + broken * 3))
    with pytest.raises(ValueError, match="6 of 16 rows are broken"):
        glue_data.load_task("qqp", tmp_path, splits=["validation"])


def test_cli_rejects_unknown_task(capsys):
    from glue.cli import main

    with pytest.raises(SystemExit):
        main(["--task", "sst3", "--model", "x", "--output-dir", "y"])
    assert "invalid choice: 'sst3'" in capsys.readouterr().err


# ---------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, minilm_path):
    """A 2-layer hidden-32 BERT with the MiniLM tokenizer, saved like any checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _synthetic_sst2(folder, seed=0):
    """A learnable SST-2-shaped task: the label is the polarity of one sentiment word among fillers."""
    rng = random.Random(seed)
    fillers = "the film was a story with actors and music in it this one".split()
    good, bad = ["great", "wonderful", "excellent", "superb"], ["awful", "terrible", "boring", "dreadful"]

    def sentence(label):
        words = rng.sample(fillers, 3)
        words.insert(rng.randrange(4), rng.choice(good if label else bad))
        return " ".join(words) + " "

    folder.mkdir(parents=True)
    for name, n in (("train.tsv", 200), ("dev.tsv", 100)):
        labels = [rng.randrange(2) for _ in range(n)]
        rows = [f"{sentence(y)}\t{y}" for y in labels]
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "test.tsv").write_text("index\tsentence\n" + "\n".join(f"{i}\t{sentence(i % 2)}" for i in range(30)) + "\n")


def test_tiny_finetune_beats_chance_and_writes_outputs(tmp_path, tiny_model):
    _synthetic_sst2(tmp_path / "data" / "glue" / "SST-2")
    out = tmp_path / "out"
    settings = Settings(epochs=4, batch_size=16, max_length=12, seed=0, warmup_steps=5)
    # a grid of a useful and a useless learning rate: the useful one must win
    result = finetune("sst2", tiny_model, out, settings, data_dir=tmp_path / "data", grid={"lr": [3e-3, 1e-7]})

    print("tiny fine-tune:", [(g["settings"]["lr"], g["eval"]) for g in result["grid"]])
    assert result["eval"]["accuracy"] > 0.8  # chance is ~0.5
    assert [g["settings"]["lr"] for g in result["grid"]] == [3e-3, 1e-7]
    assert result["settings"]["lr"] == 3e-3 and result["score"] == max(g["score"] for g in result["grid"])
    saved = json.loads((out / "results.json").read_text())
    assert {"task", "model", "eval"} <= set(saved) and saved["task"] == "sst2" and saved["model"] == tiny_model
    assert set(saved["eval"]) == {"accuracy"}
    assert "| sst2 |" in (out / "results.md").read_text()
    lines = (out / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 31
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_bertnas_finetune_command_dispatches(tmp_path, tiny_model):
    from bertnas.cli import main

    _synthetic_sst2(tmp_path / "data" / "glue" / "SST-2")
    argv = ["finetune", "--task", "sst2", "--model", tiny_model, "--data-dir", str(tmp_path / "data"),
            "--output-dir", str(tmp_path / "out"), "--epochs", "1", "--max-train-samples", "32",
            "--max-eval-samples", "16", "--max-length", "16", "--batch-size", "16"]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["num_train_samples"] == 32 and saved["settings"]["max_eval_samples"] == 16


def test_exported_bertnas_subnet_finetunes_through_the_command(tmp_path, minilm_path, capsys):
    """A searched subnet (not a BERT layout, remote code, fewer positions than the default max length)
    runs through the same command; an export folder of several subnets gets a clear hint."""
    from transformers import AutoTokenizer

    import bertnas
    from bertnas.cli import main
    from conftest import toy_config

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    supernet = bertnas.BertNasForMaskedLM(toy_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=32))
    subnet_dir = tmp_path / "export" / "rank-1"
    supernet.extract(["conv3", "ffn_wide"]).save_pretrained(subnet_dir)
    tokenizer.save_pretrained(subnet_dir)
    _synthetic_sst2(tmp_path / "data" / "glue" / "SST-2")
    common = ["finetune", "--task", "sst2", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
              "--max-train-samples", "32", "--max-eval-samples", "16", "--batch-size", "16", "--no-test-predictions"]

    assert main([*common, "--model", str(subnet_dir), "--output-dir", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["settings"]["max_length"] == 32  # the default 128 lowered to the subnet's positions
    assert 0.0 <= saved["eval"]["accuracy"] <= 1.0
    assert (tmp_path / "out" / "model" / "config.json").is_file()  # the fine-tuned model, save_pretrained layout

    capsys.readouterr()
    assert main([*common, "--model", str(tmp_path / "export"), "--output-dir", str(tmp_path / "out2")]) == 2
    assert re.search("error: .*pass one of them.*rank-1", capsys.readouterr().err)


# ---------------------------------------------------------------- SQuAD


def _features(example_id, offsets):
    return {"example_id": example_id, "offset_mapping": offsets}


def test_squad_postprocess_picks_best_valid_span():
    context = "The cat sat on the mat."
    # tokens: [CLS] q [SEP] The cat sat on the mat . [SEP]
    offsets = [None, None, None, (0, 3), (4, 7), (8, 11), (12, 14), (15, 18), (19, 22), (22, 23), None]
    examples = [{"id": "q1", "context": context}]
    features = [_features("q1", offsets)]
    start = [[0.0] * 11]
    end = [[0.0] * 11]
    start[0][1] = end[0][1] = 50.0  # the question token scores best but is outside the context
    start[0][7], end[0][8] = 5.0, 5.0  # "the mat"
    start[0][3], end[0][8] = 6.0, 5.0  # "The cat sat on the mat" scores higher but is 6 tokens long
    preds = postprocess_predictions(examples, features, start, end, n_best=5, max_answer_len=30)
    assert preds == [{"id": "q1", "prediction_text": "The cat sat on the mat"}]
    preds = postprocess_predictions(examples, features, start, end, n_best=5, max_answer_len=3)
    assert preds[0]["prediction_text"] == "the mat"
    # end before start is never chosen
    start2, end2 = [[0.0] * 11], [[-5.0] * 11]
    start2[0][8], start2[0][4], end2[0][4] = 9.0, 1.0, 9.0  # (8, 4) would score 18 but ends before it starts
    assert postprocess_predictions(examples, features, start2, end2)[0]["prediction_text"] == "cat"


def test_squad_postprocess_v2_null_answer_and_windows():
    context = "The cat sat on the mat."
    window1 = [None, None, (0, 3), (4, 7), (8, 11), None]  # "The cat sat"
    window2 = [None, None, (12, 14), (15, 18), (19, 22), None]  # "on the mat"
    examples = [{"id": "q", "context": context}]
    features = [_features("q", window1), _features("q", window2)]
    start = [[1.0, 0, 0, 2.0, 0, 0], [1.0, 0, 0, 3.0, 0, 0]]
    end = [[1.0, 0, 0, 0, 2.0, 0], [1.0, 0, 0, 0, 3.0, 0]]
    # best span over both windows: "the mat" in window 2 (6.0) beats "cat sat" (4.0) and null (2.0)
    pred = postprocess_predictions(examples, features, start, end, version_2=True)[0]
    assert pred["prediction_text"] == "the mat" and pred["no_answer_probability"] < 0.5
    start[0][0] = end[0][0] = 10.0
    start[1][0] = end[1][0] = 10.0  # both windows prefer [CLS]: no answer
    pred = postprocess_predictions(examples, features, start, end, version_2=True)[0]
    assert pred["prediction_text"] == "" and pred["no_answer_probability"] > 0.5


def test_squad_train_features_point_at_the_answer(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    context = "Alpha beta gamma. " * 8 + "The answer is Denver Broncos here. " + "Delta epsilon. " * 8
    answer = "Denver Broncos"
    examples = {"question": ["Who won?"], "context": [context],
                "answers": [{"text": [answer], "answer_start": [context.index(answer)]}]}
    enc = prepare_train_features(examples, tokenizer, max_length=32, doc_stride=8)
    assert len(enc["input_ids"]) > 2  # the long context was cut into several windows
    found = [tokenizer.decode(ids[s:e + 1]) for ids, s, e in zip(enc["input_ids"], enc["start_positions"], enc["end_positions"]) if s > 0]
    assert found and all(text == answer.lower() for text in found)
    assert 0 in enc["start_positions"]  # windows without the answer point at [CLS]


def test_squad_finetune_smoke(tmp_path, tiny_model):
    from transformers import AutoModelForQuestionAnswering

    # a checkpoint with a QA head class (the tiny BertModel works too: the head is newly initialised)
    AutoModelForQuestionAnswering.from_pretrained(tiny_model)
    context = "The Denver Broncos won Super Bowl 50 in the year 2016 at Levi's Stadium."
    qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("Who won?", "Denver Broncos"), ("When?", "2016"), ("Where?", "Levi's Stadium")])]
    squad = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}], "version": "1.1"}
    folder = tmp_path / "data" / "squad" / "v1.1"
    folder.mkdir(parents=True)
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (folder / name).write_text(json.dumps(squad))
    settings = Settings(epochs=1, batch_size=4, max_length=32, lr=1e-3)
    result = finetune_squad("squad", tiny_model, tmp_path / "out", settings, data_dir=tmp_path / "data", doc_stride=8)
    assert set(result["eval"]) == {"exact_match", "f1"}
    assert 0.0 <= result["eval"]["f1"] <= 100.0
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert set(preds) == {"q0", "q1", "q2"} and all(p in context for p in preds.values())


def _synthetic_rte(folder, n=40, seed=0):
    rng = random.Random(seed)
    words = "cat dog bird fish tree house car road".split()
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        labelled = name != "test.tsv"
        rows = ["index\tsentence1\tsentence2" + ("\tlabel" if labelled else "")]
        for i in range(n):
            a, b = rng.sample(words, 2)
            label = rng.choice(["entailment", "not_entailment"])
            rows.append(f"{i}\tthe {a} is here\tthe {a if label == 'entailment' else b} is here" + (f"\t{label}" if labelled else ""))
        (folder / name).write_text("\n".join(rows) + "\n")


def test_suite_runs_tasks_with_overrides_and_glue_average(tmp_path, tiny_model):
    from glue.suite import main

    _synthetic_sst2(tmp_path / "data" / "glue" / "SST-2")
    _synthetic_rte(tmp_path / "data" / "glue" / "RTE")
    out = tmp_path / "out"
    summary = main(["--tasks", "sst2,RTE", "--model", tiny_model, "--data-dir", str(tmp_path / "data"),
                    "--output-dir", str(out), "--epochs", "1", "--max-train-samples", "32", "--max-length", "16",
                    "--override", "rte:epochs=2", "--override", "sst2:lr=1e-4"])
    assert summary["glue_average_tasks"] == ["sst2", "rte"]
    tasks = summary["tasks"]
    assert tasks["rte"]["settings"]["epochs"] == 2 and tasks["sst2"]["settings"]["epochs"] == 1
    assert tasks["sst2"]["settings"]["lr"] == 1e-4 and tasks["rte"]["settings"]["lr"] == 5e-5
    assert summary["glue_average"] == pytest.approx((tasks["sst2"]["score"] + tasks["rte"]["score"]) / 2)
    assert "GLUE average over sst2, rte (2 of 9 tasks)" in (out / "results.md").read_text()
    rte_preds = (out / "rte" / "RTE.tsv").read_text().splitlines()[1:]
    assert len(rte_preds) == 40 and {p.split("\t")[1] for p in rte_preds} <= {"entailment", "not_entailment"}
