import pytest
import torch

from bertnas import BertNasForMaskedLM, BertNasForPreTraining
from bertnas.tasks.text_data import build_lm_splits, load_texts
from bertnas.tasks.objectives import ElectraObjective, MLMObjective, mask_tokens
from tests.conftest import toy_config


def test_mask_tokens_80_10_10_and_never_special(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = torch.randint(len(tok.all_special_ids) + 1, len(tok), (64, 128))
    ids[:, 0], ids[:, -1], ids[:, -20:-1] = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    masked, labels = mask_tokens(ids, tok, torch.Generator().manual_seed(0))
    chosen = labels != -100
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not (chosen & special).any()
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01
    as_mask = (masked[chosen] == tok.mask_token_id).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.02  # the rest (~10 %) random
    again, _ = mask_tokens(ids, tok, torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # all randomness from the generator


def test_mask_tokens_always_predicts_something(tiny_tokenizer):
    """A tiny batch where 15 % picks nothing would give a NaN loss; one token is then chosen."""
    tok = tiny_tokenizer
    ids = torch.tensor([[tok.cls_token_id, 20, 21, tok.sep_token_id, tok.pad_token_id]])
    for seed in range(60):  # P(no token chosen) = 0.85^2: about 43 of these seeds without the guard
        _, labels = mask_tokens(ids, tok, torch.Generator().manual_seed(seed))
        chosen = labels != -100
        assert chosen.any() and not chosen[0, [0, 3, 4]].any()
    only_special = torch.tensor([[tok.cls_token_id, tok.sep_token_id, tok.pad_token_id]])
    _, labels = mask_tokens(only_special, tok, torch.Generator().manual_seed(0))
    assert (labels == -100).all()


def _batches(tok, corpus, n):
    train, _ = build_lm_splits(load_texts(str(corpus)), tok, seq_len=32, val_fraction=0.1, seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        rows = torch.randint(len(train), (8,), generator=g).tolist()
        yield {k: train[rows][k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture
def corpus_tok(tiny_tokenizer, tiny_corpus):
    return tiny_tokenizer, tiny_corpus


def _config(tok, **kw):
    return toy_config(**{"vocab_size": len(tok), "hidden_size": 32, "candidates": ["mha8", "ffn", "conv3"], **kw})


def _train(objective, params, tok, corpus, arch, steps=40):
    """Train a fixed arch; returns each step's (loss, metrics) and the first step's output."""
    opt = torch.optim.AdamW(params, lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    history, first = [], None
    for batch in _batches(tok, corpus, steps):
        out = objective.compute(batch, arch, gen)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        history.append((out.loss.item(), {k: float(v) for k, v in out.metrics.items()}))  # device scalars, read as the log does
        first = first or out
    return history, first


def _mean(values):
    values = list(values)
    return sum(values) / len(values)


def test_mlm_loss_falls(corpus_tok):
    corpus_tok, corpus = corpus_tok
    torch.manual_seed(0)
    model = BertNasForMaskedLM(_config(corpus_tok))
    history, out = _train(MLMObjective(model, corpus_tok), model.parameters(), corpus_tok, corpus, ["mha8", "ffn"])
    first = _mean(loss for loss, _ in history[:5])
    last = _mean(loss for loss, _ in history[-5:])
    assert last < 0.7 * first, (first, last)
    assert len(out.hidden_states) == 3 and out.inputs["input_ids"].shape == (8, 32)
    assert (out.inputs["input_ids"] == corpus_tok.mask_token_id).any()  # the subnet saw the masked batch


def test_electra_labels_shared_embeddings_and_loss_falls(corpus_tok):
    corpus_tok, corpus = corpus_tok
    torch.manual_seed(0)
    disc = BertNasForPreTraining(_config(corpus_tok))
    gen = BertNasForMaskedLM(_config(corpus_tok, arch=["mha8", "ffn"]))
    objective = ElectraObjective(disc, gen, corpus_tok, disc_weight=50.0)
    assert gen.bert.embeddings.word_embeddings is disc.bert.embeddings.word_embeddings
    assert gen.cls.predictions.decoder.weight is disc.bert.embeddings.word_embeddings.weight
    params = list({id(p): p for p in list(disc.parameters()) + list(gen.parameters())}.values())
    history, out = _train(objective, params, corpus_tok, corpus, ["conv3", "ffn"])
    loss, metrics = history[0]
    assert loss == pytest.approx(metrics["gen_loss"] + 50 * metrics["disc_loss"], rel=1e-5)
    assert len(out.hidden_states) == 3  # the discriminator subnet's, for MAGIC-A
    gen_first = _mean(m["gen_loss"] for _, m in history[:5])
    gen_last = _mean(m["gen_loss"] for _, m in history[-5:])
    assert gen_last < 0.8 * gen_first
    disc_first = _mean(m["disc_loss"] for _, m in history[:5])
    disc_last = _mean(m["disc_loss"] for _, m in history[-5:])
    assert disc_last < disc_first
    assert all(0 < m["replaced_fraction"] < 0.2 for _, m in history)  # of 15 % masked, some sampled right
    with pytest.raises(ValueError, match="same hidden size"):
        ElectraObjective(disc, BertNasForMaskedLM(_config(corpus_tok, hidden_size=24, candidates=["ffn"], arch=["ffn", "ffn"])), corpus_tok)


def test_electra_discriminator_labels_mark_replacements(corpus_tok):
    corpus_tok, corpus = corpus_tok
    disc = BertNasForPreTraining(_config(corpus_tok))
    gen = BertNasForMaskedLM(_config(corpus_tok, arch=["mha8", "ffn"]))
    seen = {}

    def spy(*args, labels=None, **kwargs):
        seen["inputs"], seen["labels"] = kwargs.get("input_ids", args[0] if args else None), labels
        return BertNasForPreTraining.forward(disc, *args, labels=labels, **kwargs)

    disc.forward = spy
    batch = next(_batches(corpus_tok, corpus, 1))
    batch["input_ids"][:, -4:] = corpus_tok.pad_token_id  # padded tail: never replaced
    batch["attention_mask"][:, -4:] = 0
    out = ElectraObjective(disc, gen, corpus_tok).compute(batch, ["ffn", "ffn"], torch.Generator().manual_seed(0))
    assert torch.equal(seen["labels"].bool(), seen["inputs"] != batch["input_ids"])
    assert seen["labels"].sum() > 0 and not seen["labels"][:, -4:].any()
    assert torch.equal(out.inputs["input_ids"], seen["inputs"])
    real = batch["attention_mask"].sum()
    assert out.metrics["replaced_fraction"] == pytest.approx(float(seen["labels"].sum() / real))
