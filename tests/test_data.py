import json

import datasets
import pytest

from bertnas.tasks import text_data as data_lib
from bertnas.tasks.text_data import build_lm_splits, build_tokenizer, embedded_corpus, load_texts
from tests.conftest import DATA_DIR


def test_embedded_corpus_is_english_and_deterministic():
    texts = embedded_corpus()
    assert len(texts) > 1000 and sum(map(len, texts)) > 500_000
    assert texts == embedded_corpus()
    assert sum(" the " in t for t in texts) > len(texts) / 3
    assert list(load_texts(None)["text"]) == texts


def test_embedded_corpus_rebuilds_identically(tmp_path, monkeypatch):
    """A fresh build (empty cache) gives the same paragraphs, capped, and caches them."""
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path))
    built = embedded_corpus(max_bytes=30_000)
    assert list(tmp_path.glob("embedded-corpus-*-30000.txt"))
    assert 30_000 <= sum(map(len, built)) < 40_000 and all("\n" not in t for t in built)
    assert built == data_lib._harvest_docstrings(30_000) == embedded_corpus(max_bytes=30_000)


def test_local_sources(tmp_path, tiny_corpus):
    assert len(load_texts(str(tiny_corpus))) == 400
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": f"line {i} here", "id": i}) for i in range(5)))
    ds = load_texts(str(tmp_path / "a.jsonl"))
    assert ds.column_names == ["text"] and len(ds) == 5
    (tmp_path / "wiki.raw").write_text(" = Title = \n\n Some text here .\n")  # any suffix is plain text
    assert list(load_texts(str(tmp_path / "wiki.raw"))["text"]) == [" = Title = ", " Some text here ."]
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("one two\n\nthree four\n")
    (folder / "sub" / "y.txt").write_text("five six\n")
    (folder / "z.jsonl").write_text(json.dumps({"text": "seven", "meta": 1}) + "\n")
    (folder / "README").write_text("not picked up\n")
    assert list(load_texts(str(folder))["text"]) == ["five six", "one two", "three four", "seven"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_texts(str(tmp_path / "missing.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no text files"):
        load_texts(str(tmp_path / "empty"))
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(ValueError, match="a 'text' column is needed"):
        load_texts(str(tmp_path / "b.jsonl"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no non-empty text"):
        load_texts(str(tmp_path / "blank.txt"))


def test_hub_name_offline_gives_a_clear_error():
    with pytest.raises(FileNotFoundError, match="could not be loaded with datasets.load_dataset"):
        load_texts("bertnas-no-such-dataset:some-config")


def test_real_text_folder():
    folder = DATA_DIR / "text" / "wikitext-2-raw"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (set BERTNAS_DATA_DIR to the shared data folder)")
    texts = load_texts(str(folder))  # wiki.test.raw + wiki.valid.raw, blank lines dropped
    assert 4000 < len(texts) < 8000 and all(t.strip() for t in texts["text"][:100])


def test_packing_split_and_tokenizer(tiny_corpus, tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.pad_token_id == 0 and len(tok) <= 120
    texts = load_texts(str(tiny_corpus))
    train, val = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=0)
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids"}
    ids = train[:]["input_ids"]
    assert ids.shape[1] == 24 and len(val) > 0 and len(train) > 8 * len(val)
    assert (ids[:, 0] == tok.cls_token_id).all() and (ids[:, -1] == tok.sep_token_id).all()
    assert (train[:]["attention_mask"] == 1).all() and (train[:]["token_type_ids"] == 0).all()
    # Packing keeps (almost) every token: only each map batch's last partial row is dropped.
    tokens = sum(len(x) + 1 for x in tok(list(texts["text"]), add_special_tokens=False)["input_ids"])
    assert 0.9 * tokens < 22 * (len(train) + len(val)) <= tokens
    train2, val2 = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=0)
    assert (val2[:]["input_ids"] == val[:]["input_ids"]).all() and (train2[:]["input_ids"] == ids).all()
    _, val3 = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=1)
    assert val3[:]["input_ids"].shape != val[:]["input_ids"].shape or not (val3[:]["input_ids"] == val[:]["input_ids"]).all()
    with pytest.raises(ValueError, match="packs into 0 rows"):
        build_lm_splits(texts.select(range(3)), tok, seq_len=500, val_fraction=0.5)
    with pytest.raises(FileNotFoundError, match="Could not load a tokenizer"):
        build_tokenizer(str(tiny_corpus.parent / "no-tokenizer-here"))


def test_packed_splits_cache(tmp_path, tiny_corpus, tiny_tokenizer, monkeypatch):
    texts = datasets.Dataset.from_dict({"text": list(load_texts(str(tiny_corpus))["text"])})  # in memory: no datasets cache
    train, val = build_lm_splits(texts, tiny_tokenizer, seq_len=16, val_fraction=0.1, seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1

    def no_map(*args, **kwargs):
        raise AssertionError("tokenised again instead of loading the cached splits")

    monkeypatch.setattr(datasets.Dataset, "map", no_map)
    train2, val2 = build_lm_splits(texts, tiny_tokenizer, seq_len=16, val_fraction=0.1, seed=0, cache_dir=tmp_path)
    assert (train2[:]["input_ids"] == train[:]["input_ids"]).all() and (val2[:]["input_ids"] == val[:]["input_ids"]).all()
    with pytest.raises(AssertionError, match="tokenised again"):  # other options: other splits
        build_lm_splits(texts, tiny_tokenizer, seq_len=16, val_fraction=0.1, seed=1, cache_dir=tmp_path)


def test_trained_tokenizer_is_cached_and_reused(tmp_path, monkeypatch, tiny_corpus):
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path))
    texts = load_texts(str(tiny_corpus))
    first = build_tokenizer(None, texts, vocab_size=100)
    assert len(first) == 100 and first.mask_token == "[MASK]"
    assert first("the cat sees a dog")["input_ids"][0] == first.cls_token_id
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached tokenizer")

    monkeypatch.setattr(data_lib, "_train_wordpiece", no_training)
    assert build_tokenizer(None, texts, vocab_size=100).get_vocab() == first.get_vocab()
    with pytest.raises(ValueError, match="needs texts"):
        build_tokenizer(None)


# -- streaming corpora (--streaming) -----------------------------------------------------------

def _jsonl_corpus(path, n=400):
    from tests.conftest import tiny_texts

    texts = tiny_texts(n)
    texts[7] = "   "  # a blank row: no tokens, but a row of the stream
    path.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(texts)))
    return texts


def test_streamed_batches_pack_like_the_map_style_corpus_and_resume_to_the_token(tmp_path, tiny_tokenizer):
    """A local corpus read through datasets' streaming mode: the rows are exactly the rows
    `pack_lm_rows` makes of the same texts; stopping after k batches and resuming from the
    (JSON) state gives the batches an uninterrupted stream gives, across an epoch's end, on
    every rank."""
    import torch

    from bertnas.tasks.bert import StreamSource
    from bertnas.tasks.text_data import PackedTextStream, pack_lm_rows, stream_corpus

    texts = _jsonl_corpus(tmp_path / "c.jsonl")
    corpus = stream_corpus(str(tmp_path / "c.jsonl"), text_column="body")
    assert isinstance(corpus, datasets.IterableDataset)
    source = StreamSource(corpus, "body", skip=5, source="c.jsonl")
    kept = [t for t in texts[5:] if t.strip()]
    packed = pack_lm_rows(datasets.Dataset.from_dict({"text": kept}), tiny_tokenizer, 16)["input_ids"]

    def stream(rank):
        return PackedTextStream(source.open, tiny_tokenizer, 16, batch_size=3, world_size=2, rank=rank)

    per_epoch = len(packed) // 6
    whole = {rank: stream(rank) for rank in (0, 1)}
    batches = {rank: [whole[rank].next() for _ in range(per_epoch + 5)] for rank in (0, 1)}
    rows = [row for i in range(per_epoch) for rank in (0, 1) for row in batches[rank][i]["input_ids"].tolist()]
    assert rows == packed[:per_epoch * 6]  # rank r holds the r-th slice of each global batch
    assert whole[0].epoch == 1 and torch.equal(batches[0][per_epoch]["input_ids"][0], torch.tensor(packed[0]))
    for k in (1, per_epoch - 1, per_epoch + 2):  # mid-epoch, just before the end, after it
        for rank in (0, 1):
            first = stream(rank)
            for _ in range(k):
                first.next()
            state = json.loads(json.dumps(first.state_dict()))
            resumed = stream(rank)
            resumed.load_state_dict(state)
            for want in batches[rank][k:k + 3]:
                got = resumed.next()
                assert all(torch.equal(got[key], want[key]) for key in want)


def test_pretrain_streaming_resumes_with_the_same_batches(tmp_path, monkeypatch):
    """`bertnas pretrain --data corpus.jsonl --streaming`: the position is in the checkpoint, and a
    run stopped after 2 steps and resumed to 4 logs the losses and ends with the weights of an
    uninterrupted 4-step run; a search of the checkpoint rebuilds its held-out rows."""
    import hashlib

    from tests.test_hf_stack import run_cli

    _jsonl_corpus(tmp_path / "c.jsonl")
    monkeypatch.setenv("BERTNAS_CACHE", str(tmp_path / "cache"))
    common = ["pretrain", "--data", str(tmp_path / "c.jsonl"), "--text-column", "body", "--streaming",
              "--save-steps", "2", "--no-progress", "--set", "eval_batches=2", "--set", "tokenizer_vocab_size=120"]
    for argv in (["--max-steps", "4", "--output-dir", str(tmp_path / "whole")],
                 ["--max-steps", "2", "--output-dir", str(tmp_path / "cut")],
                 ["--max-steps", "4", "--output-dir", str(tmp_path / "cut"), "--resume-from-checkpoint", "latest"]):
        code, _, err = run_cli([*common, *argv])
        assert code == 0, err[-2000:]
    state = json.loads((tmp_path / "cut" / "checkpoint-00000002" / "state.json").read_text())
    assert state["stream"]["kind"] == "streaming" and state["stream"]["position"] == 2
    assert state["data"]["streaming"] and state["data"]["val_texts"] > 0

    def losses(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    def weights(run):
        return hashlib.sha256((tmp_path / run / "checkpoint-00000004" / "model" / "model.safetensors").read_bytes()).hexdigest()

    assert losses("whole") == losses("cut") and len(losses("cut")) == 4
    assert weights("whole") == weights("cut")
    code, out, err = run_cli(["search", "--checkpoint", str(tmp_path / "whole"), "--output-dir", str(tmp_path / "s"),
                              "--no-progress", "--candidates-per-bin", "2", "--bins", "1", "--survivors-per-bin", "1"])
    assert code == 0, err[-2000:]
    assert json.loads((tmp_path / "s" / "search.json").read_text())["heldout"]["rows"] == 8  # 2 batches of 4
    # a run that takes training rows by index refuses --streaming in one line, before any training
    code, _, err = run_cli(["search", "--space", "bert", "--strategy", "spos", "--max-steps", "1", "--set",
                            "streaming=true", "--output-dir", str(tmp_path / "d")])
    assert code == 2 and "--streaming is not supported in a strategy run" in err and err.count("\n") == 1, err
