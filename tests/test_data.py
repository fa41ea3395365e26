import json

import pytest

from bertnas.train.data import build_lm_splits, build_tokenizer, embedded_corpus, load_texts


def test_embedded_corpus_is_english_and_deterministic():
    texts = embedded_corpus()
    assert len(texts) > 1000 and sum(map(len, texts)) > 500_000
    assert texts == embedded_corpus()
    assert sum(" the " in t for t in texts) > len(texts) / 3


def test_local_sources(tmp_path, tiny_corpus):
    assert len(load_texts(str(tiny_corpus))) == 400
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": f"line {i} here", "id": i}) for i in range(5)))
    ds = load_texts(str(tmp_path / "a.jsonl"))
    assert ds.column_names == ["text"] and len(ds) == 5
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.txt").write_text("one two\n\nthree four\n")
    (folder / "y.txt").write_text("five six\n")
    assert load_texts(str(folder))["text"] == ["one two", "three four", "five six"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_texts(str(tmp_path / "missing.txt"))
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(ValueError, match="a 'text' column is needed"):
        load_texts(str(tmp_path / "b.jsonl"))


def test_packing_split_and_tokenizer(tiny_corpus, tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.pad_token_id == 0 and tok.mask_token_id is not None and len(tok) <= 120
    texts = load_texts(str(tiny_corpus))
    train, val = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=0)
    assert train[0]["input_ids"].shape == (24,) and len(val) > 0 and len(train) > 8 * len(val)
    assert (train[:]["input_ids"][:, 0] == tok.cls_token_id).all() and (train[:]["input_ids"][:, -1] == tok.sep_token_id).all()
    train2, val2 = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=0)
    assert (val2[:]["input_ids"] == val[:]["input_ids"]).all()
    _, val3 = build_lm_splits(texts, tok, seq_len=24, val_fraction=0.1, seed=1)
    assert val3[:]["input_ids"].shape != val[:]["input_ids"].shape or not (val3[:]["input_ids"] == val[:]["input_ids"]).all()
    with pytest.raises(ValueError, match="packs into 0 rows"):
        build_lm_splits(texts.select(range(3)), tok, seq_len=500, val_fraction=0.5)
    with pytest.raises(FileNotFoundError, match="Could not load a tokenizer"):
        build_tokenizer(str(tiny_corpus.parent / "no-tokenizer-here"))
