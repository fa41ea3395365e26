import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, BertConfig, BertForMaskedLM, BertModel

import bertnas
from bertnas import (
    BertNasForMaskedLM,
    BertNasForPreTraining,
    BertNasForQuestionAnswering,
    BertNasForSequenceClassification,
    BertNasForTokenClassification,
    BertNasModel,
)
from tests.conftest import toy_config

ALL_OPS = list(bertnas.DEFAULT_CANDIDATES) + ["identity"]


def _op_params(model, layer, op):
    return list(model.bert.encoder.layers[layer].ops[op].parameters())


@pytest.mark.parametrize("op", ALL_OPS)
def test_every_candidate_runs_and_only_the_path_gets_gradients(config, batch, op):
    model = BertNasForMaskedLM(config)
    arch = [op, "ffn"]
    out = model(**batch, labels=batch["input_ids"], arch=arch)
    assert out.logits.shape == (*batch["input_ids"].shape, config.vocab_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for layer, chosen in enumerate(arch):
        for name in config.candidates:
            params = _op_params(model, layer, name)
            if name == chosen:
                assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
            else:
                assert all(p.grad is None for p in params), f"layer {layer} {name} got a gradient off the path"


@pytest.mark.parametrize("op", ["mha6", "mha8", "mha12", "conv3", "conv5"])
def test_padding_never_leaks(config, op):
    model = BertNasModel(config).eval()
    ids = torch.randint(5, config.vocab_size, (1, 10))
    short = model(ids[:, :6], arch=[op, op]).last_hidden_state
    padded_ids = ids.clone()
    padded_ids[:, 6:] = torch.randint(5, config.vocab_size, (1, 4))  # garbage after the padding point
    mask = torch.ones_like(ids)
    mask[:, 6:] = 0
    long = model(padded_ids, attention_mask=mask, arch=[op, op]).last_hidden_state
    torch.testing.assert_close(long[:, :6], short, rtol=0, atol=1e-6)


def test_extract_matches_supernet_path(config, batch):
    for cls in (BertNasModel, BertNasForMaskedLM, BertNasForSequenceClassification, BertNasForQuestionAnswering,
                BertNasForTokenClassification, BertNasForPreTraining):
        supernet = cls(config).eval()
        arch = ["conv5", "mha8"]
        fixed = supernet.extract(arch)
        assert type(fixed) is cls and fixed.config.arch == arch and not fixed.is_supernet
        n_fixed = sum(p.numel() for p in fixed.parameters())
        assert n_fixed < sum(p.numel() for p in supernet.parameters())
        a, b = supernet(**batch, arch=arch), fixed(**batch)
        for key in a.keys():
            if isinstance(a[key], torch.Tensor):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        # A copy: training the fixed model leaves the supernet alone.
        next(fixed.parameters()).data.add_(1.0)
        assert not torch.equal(next(fixed.parameters()), next(supernet.parameters()))


def test_task_heads_losses(config, batch):
    labels = torch.tensor([0, 1, 1])
    assert BertNasForSequenceClassification(config)(**batch, labels=labels, arch=["mha12", "ffn"]).loss > 0
    reg = BertNasForSequenceClassification(toy_config(num_labels=1))
    assert reg(**batch, labels=torch.tensor([0.5, 1.0, 2.0]), arch=["ffn", "ffn"]).loss > 0
    tok = BertNasForTokenClassification(config)(**batch, labels=torch.zeros_like(batch["input_ids"]), arch=["ffn", "conv3"])
    assert tok.logits.shape == (3, 12, 2) and tok.loss > 0
    qa = BertNasForQuestionAnswering(config)(**batch, start_positions=torch.tensor([1, 2, 3]),
                                            end_positions=torch.tensor([2, 3, 50]), arch=["mha6", "ffn"])
    assert qa.start_logits.shape == (3, 12) and torch.isfinite(qa.loss)
    disc = BertNasForPreTraining(config)(**batch, labels=(batch["input_ids"] % 2), arch=["mha6", "ffn"])
    assert disc.logits.shape == (3, 12) and disc.loss > 0


def test_arch_accepts_arch_objects_and_mappings(config, batch):
    model = BertNasModel(config).eval()
    space = bertnas.BertSpace(config)
    a = model(**batch, arch=["conv3", "ffn"]).last_hidden_state
    b = model(**batch, arch=space.arch(["conv3", "ffn"])).last_hidden_state
    c = model(**batch, arch={"layer_0": "conv3", "layer_1": "ffn"}).last_hidden_state
    assert torch.equal(a, b) and torch.equal(a, c)


def test_bad_arch_errors(config, batch):
    model = BertNasModel(config)
    with pytest.raises(ValueError, match="'mha7' is not a candidate of this supernet; candidates: mha6"):
        model(**batch, arch=["mha7", "ffn"])
    with pytest.raises(ValueError, match="arch has 3 ops but the supernet has 2 layers"):
        model(**batch, arch=["ffn"] * 3)
    with pytest.raises(ValueError, match="This is a supernet .* pass arch="):
        model(**batch)
    fixed = model.extract(["ffn", "conv3"])
    fixed(**batch)
    fixed(**batch, arch=["ffn", "conv3"])
    with pytest.raises(ValueError, match="fixed to arch \\['ffn', 'conv3'\\] and cannot run \\['ffn', 'ffn'\\]"):
        fixed(**batch, arch=["ffn", "ffn"])
    with pytest.raises(ValueError, match="Unknown op 'attention'"):
        toy_config(candidates=["attention", "ffn"])
    with pytest.raises(ValueError, match="hidden_size divisible by 7"):
        toy_config(candidates=["mha7"])
    with pytest.raises(ValueError, match="config.arch has 1 ops but num_hidden_layers=2"):
        toy_config(arch=["ffn"])
    with pytest.raises(ValueError, match="kernels must be odd"):
        toy_config(candidates=["conv4"])


def test_save_load_roundtrip(tmp_path, config, batch):
    supernet = BertNasForMaskedLM(config).eval()
    supernet.save_pretrained(tmp_path / "super")
    assert (tmp_path / "super" / "model.safetensors").exists()
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "super").eval()
    assert type(loaded) is BertNasForMaskedLM and loaded.is_supernet
    for arch in (["mha6", "conv5"], ["ffn_wide", "identity"]):
        torch.testing.assert_close(loaded(**batch, arch=arch).logits, supernet(**batch, arch=arch).logits, rtol=0, atol=0)
    # the tied decoder stays tied after loading
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight

    fixed = supernet.extract(["conv3", "mha8"])
    fixed.save_pretrained(tmp_path / "fixed")
    reloaded = BertNasForMaskedLM.from_pretrained(tmp_path / "fixed").eval()
    assert reloaded.config.arch == ["conv3", "mha8"]
    torch.testing.assert_close(reloaded(**batch).logits, fixed(**batch).logits, rtol=0, atol=0)
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "fixed"), bertnas.BertNasConfig)
    assert type(AutoModel.from_pretrained(tmp_path / "fixed")) is BertNasModel


REMOTE_CODE_SCRIPT = """
import sys
sys.modules["bertnas"] = None  # make `import bertnas` fail, as in an environment without it
try:
    import bertnas
    raise SystemExit("bertnas is importable")
except ImportError:
    pass
import torch
from transformers import AutoModel, AutoModelForMaskedLM
path, ids = sys.argv[1], torch.load(sys.argv[2])
model = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=True).eval()
assert "transformers_modules" in type(model).__module__, type(model).__module__
with torch.no_grad():
    torch.save(model(ids).logits, sys.argv[3])
base = AutoModel.from_pretrained(path, trust_remote_code=True)
print("OK", type(model).__name__, type(base).__name__)
"""


def test_remote_code_loads_without_bertnas(tmp_path, config):
    supernet = BertNasForMaskedLM(config).eval()
    fixed = supernet.extract(["conv5", "mha6"])
    fixed.save_pretrained(tmp_path / "fixed")
    assert (tmp_path / "fixed" / "modeling_bertnas.py").exists()
    ids = torch.randint(5, config.vocab_size, (2, 9))
    torch.save(ids, tmp_path / "ids.pt")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path / "fixed"), str(tmp_path / "ids.pt"),
         str(tmp_path / "out.pt")],
        capture_output=True, text=True, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                          "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK BertNasForMaskedLM BertNasModel" in result.stdout
    with torch.no_grad():
        expected = fixed(ids).logits
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=0)


def _tiny_bert(**overrides):
    kwargs = dict(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=12,
                  intermediate_size=96, max_position_embeddings=64, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def test_from_bert_in_memory_and_heads(batch):
    torch.manual_seed(0)
    bert = BertForMaskedLM(_tiny_bert()).eval()
    supernet = BertNasForMaskedLM.from_bert(bert).eval()
    path = ["mha12", "ffn", "mha12", "ffn"]
    assert supernet.config.num_hidden_layers == 4
    torch.testing.assert_close(supernet(**batch, arch=path).logits, bert(**batch).logits, rtol=0, atol=1e-5)
    back = supernet.extract(path).to_bert().eval()
    assert type(back) is BertForMaskedLM
    torch.testing.assert_close(back(**batch).logits, bert(**batch).logits, rtol=0, atol=1e-5)
    # Other candidates start from their BERT neighbours: mha6 shares mha12's projections, ffn_wide
    # starts equal to ffn, conv is freshly initialised.
    layer0 = supernet.bert.encoder.layers[0].ops
    assert torch.equal(layer0["mha6"].query.weight, layer0["mha12"].query.weight)
    wide = supernet(**batch, arch=["mha12", "ffn_wide", "mha12", "ffn_wide"]).logits
    torch.testing.assert_close(wide, bert(**batch).logits, rtol=0, atol=1e-5)
    # A bare BertModel into a task class: backbone copied, head fresh.
    cls_model = BertNasForSequenceClassification.from_bert(BertModel(_tiny_bert()))
    assert cls_model.classifier.out_features == 2


def test_from_bert_errors(tmp_path):
    bert = BertModel(_tiny_bert())
    with pytest.raises(ValueError, match="hidden_size: config 96 vs BERT 48"):
        BertNasModel.from_bert(bert, config=toy_config(hidden_size=96, num_hidden_layers=4))
    with pytest.raises(ValueError, match="num_hidden_layers: config 2 vs BERT 4"):
        BertNasModel.from_bert(bert, config=toy_config())
    with pytest.raises(OSError, match="could not load a BERT from .*no-such-dir"):
        BertNasModel.from_bert(str(tmp_path / "no-such-dir"))
    with pytest.raises(ValueError, match="to_bert needs a fixed-arch model"):
        BertNasModel(toy_config()).to_bert()
    with pytest.raises(ValueError, match="is not a BERT; only \\[mha<heads>, ffn\\] x L"):
        BertNasModel(toy_config()).extract(["ffn", "mha12"]).to_bert()


def test_from_bert_with_matching_config_and_other_heads(batch):
    bert = BertModel(_tiny_bert(num_attention_heads=4)).eval()
    config = toy_config(num_hidden_layers=4, candidates=["mha4", "ffn", "conv3"])
    supernet = BertNasModel.from_bert(bert, config=config).eval()
    out = supernet(**batch, arch=["mha4", "ffn"] * 2)
    torch.testing.assert_close(out.last_hidden_state, bert(**batch).last_hidden_state, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.pooler_output, bert(**batch).pooler_output, rtol=0, atol=1e-5)
