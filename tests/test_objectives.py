import pytest
import torch

from bertnas import BertNasConfig, BertNasForMaskedLM, BertNasForPreTraining
from bertnas.train.data import build_lm_splits, load_texts
from bertnas.train.objectives import ElectraObjective, MLMObjective, mask_tokens
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
    opt = torch.optim.AdamW(params, lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for batch in _batches(tok, corpus, steps):
        out = objective.compute(batch, arch, gen)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out)
    return losses


def test_mlm_loss_falls(corpus_tok):
    corpus_tok, corpus = corpus_tok
    torch.manual_seed(0)
    model = BertNasForMaskedLM(_config(corpus_tok))
    outs = _train(MLMObjective(model, corpus_tok), model.parameters(), corpus_tok, corpus, ["mha8", "ffn"])
    first = sum(float(o.loss) for o in outs[:5]) / 5
    last = sum(float(o.loss) for o in outs[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert len(outs[0].hidden_states) == 3 and outs[0].inputs["input_ids"].shape == (8, 32)


def test_electra_labels_shared_embeddings_and_loss_falls(corpus_tok):
    corpus_tok, corpus = corpus_tok
    torch.manual_seed(0)
    disc = BertNasForPreTraining(_config(corpus_tok))
    gen = BertNasForMaskedLM(_config(corpus_tok, arch=["mha8", "ffn"]))
    objective = ElectraObjective(disc, gen, corpus_tok, disc_weight=50.0)
    assert gen.bert.embeddings.word_embeddings is disc.bert.embeddings.word_embeddings
    assert gen.cls.predictions.decoder.weight is disc.bert.embeddings.word_embeddings.weight
    params = list({id(p): p for p in list(disc.parameters()) + list(gen.parameters())}.values())
    outs = _train(objective, params, corpus_tok, corpus, ["conv3", "ffn"])
    o = outs[0]
    assert o.loss.item() == pytest.approx(o.metrics["gen_loss"] + 50 * o.metrics["disc_loss"], rel=1e-5)
    gen_first = sum(o.metrics["gen_loss"] for o in outs[:5]) / 5
    gen_last = sum(o.metrics["gen_loss"] for o in outs[-5:]) / 5
    assert gen_last < 0.8 * gen_first
    disc_first = sum(o.metrics["disc_loss"] for o in outs[:5]) / 5
    disc_last = sum(o.metrics["disc_loss"] for o in outs[-5:]) / 5
    assert disc_last < disc_first
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
    ElectraObjective(disc, gen, corpus_tok).compute(batch, ["ffn", "ffn"], torch.Generator().manual_seed(0))
    assert torch.equal(seen["labels"].bool(), seen["inputs"] != batch["input_ids"])
    assert seen["labels"].sum() > 0
