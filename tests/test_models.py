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
    assert (tmp_path / "fixed" / "supernet_mixin.py").exists()  # imported relatively: copied with it
    ids = torch.randint(5, config.vocab_size, (2, 9))
    torch.save(ids, tmp_path / "ids.pt")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path / "fixed"), str(tmp_path / "ids.pt"),
         str(tmp_path / "out.pt")],
        capture_output=True, text=True, cwd=tmp_path,
        # the same intra-op threads as this process: another count sums in another order (1e-8 apart)
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
             "OMP_NUM_THREADS": str(torch.get_num_threads())},
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


# -- the op registry ---------------------------------------------------------------------
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bertnas.models import OP_KINDS, OpKind, op_flops, op_params, parse_op, register_op_kind, short_op_name  # noqa: E402
from bertnas.models.ops_bertnas import build_op  # noqa: E402


@pytest.mark.parametrize("op", ALL_OPS)
def test_registry_costs_are_the_built_modules(config, op):
    """One registry entry per op kind: parameters and FLOPs (torch's counter) of the module it
    builds, and BertSpace reads the same numbers."""
    space = bertnas.BertSpace(config)
    module = build_op(config, op).eval()
    assert op_params(config, op) == space.op_params(op) == sum(p.numel() for p in module.parameters())
    for seq_len in (5, 12):
        x = torch.randn(2, seq_len, config.hidden_size)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        assert op_flops(config, op, seq_len) == space.op_flops(op, seq_len) == counter.get_total_flops() // 2


def test_short_op_names_come_from_the_registry():
    names = {op: short_op_name(op) for op in ["mha12", "mha6", "ffn", "ffn_wide", "conv3", "conv5", "identity"]}
    assert names == {"mha12": "a12", "mha6": "a6", "ffn": "f", "ffn_wide": "F", "conv3": "c3", "conv5": "c5",
                     "identity": "-"}
    assert short_op_name("not-an-op") == "not-an-op"
    assert set(OP_KINDS) == {"mha", "mha_w", "ffn", "ffn_wide", "ffn_x", "conv", "identity"}


class _ScaleOp(torch.nn.Module):
    def __init__(self, config, n):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((config.hidden_size,), float(n)))

    def forward(self, x, attn_mask=None, token_mask=None):
        return x * self.scale


def test_adding_an_op_kind_is_one_registry_entry(batch):
    register_op_kind(OpKind(kind="scale", pattern=r"scale(\d+)", example="scale<n>", short=lambda n: f"s{n}",
                            build=lambda config, n: _ScaleOp(config, n), params=lambda config, n: config.hidden_size,
                            flops=lambda config, n, t: t * config.hidden_size, sizes=("hidden_size",)))
    try:
        config = toy_config(candidates=["mha12", "ffn", "scale2"])
        assert parse_op("scale2") == ("scale", 2) and short_op_name("scale2") == "s2"
        space = bertnas.BertSpace(config)
        model = BertNasModel(config, add_pooling_layer=False)
        assert space.params(["scale2", "ffn"]) == sum(p.numel() for p in model.extract(["scale2", "ffn"]).parameters())
        assert space.flops(["scale2", "scale2"], 10) == 2 * 10 * 48
        out = model(**batch, arch=["scale2", "ffn"]).last_hidden_state
        assert torch.isfinite(out).all()
        with pytest.raises(ValueError, match="ops are mha<heads>.* and scale<n>"):
            parse_op("scale")
    finally:
        del OP_KINDS["scale"]


# -- the choice protocol: single path, mixed ops, candidate parameters -----------------------
def _one_hot(config, op):
    return torch.nn.functional.one_hot(torch.tensor(config.candidates.index(op)), len(config.candidates)).float()


@pytest.mark.parametrize("op", ALL_OPS)
def test_mixed_one_hot_is_exactly_the_single_path(config, batch, op):
    model = BertNasForMaskedLM(config).eval()
    arch = [op, "conv3"]
    layer = model.bert.encoder.layers[0]
    assert layer.candidates == tuple(config.candidates) and layer.label == "layer_0"
    x = torch.randn(3, 12, config.hidden_size)
    with torch.no_grad():
        weights = _one_hot(config, op)
        assert torch.equal(layer.forward_mixed(x, weights), layer(x, op))
    weights = {f"layer_{i}": _one_hot(config, o).requires_grad_() for i, o in enumerate(arch)}  # every op runs
    mixed = model(**batch, arch_weights=weights)
    path = model(**batch, arch=arch)
    assert torch.equal(mixed.logits, path.logits)


def test_mixed_gradient_reaches_the_weights(config, batch):
    model = BertNasForMaskedLM(config)
    alpha = torch.zeros(config.num_hidden_layers, len(config.candidates), requires_grad=True)
    weights = dict(zip(model.choice_labels, alpha.softmax(-1)))
    out = model(**batch, labels=batch["input_ids"], arch_weights=weights)
    out.loss.backward()
    assert alpha.grad is not None and bool((alpha.grad != 0).all())
    for (layer, op), params in model.candidate_parameters().items():
        if op != "identity":
            assert all(p.grad is not None for _, p in params), (layer, op)


def test_mixed_without_gradients_skips_zero_weights(config, batch):
    model = BertNasModel(config).eval()
    calls = []
    hook = model.encoder.layers[0].ops["conv5"].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(**batch, arch_weights={"layer_0": _one_hot(config, "mha6"), "layer_1": _one_hot(config, "ffn")})
    assert not calls
    model(**batch, arch_weights={"layer_0": _one_hot(config, "mha6").requires_grad_(), "layer_1": _one_hot(config, "ffn")})
    assert calls
    hook.remove()


def test_candidate_parameters_cover_exactly_each_op(config):
    for model, prefix in ((BertNasForSequenceClassification(config), "bert."), (BertNasModel(config), "")):
        found = model.candidate_parameters()
        assert set(found) == {(f"layer_{i}", op) for i in range(config.num_hidden_layers) for op in config.candidates}
        named = dict(model.named_parameters())
        for (label, op), params in found.items():
            assert sum(p.numel() for _, p in params) == op_params(config, op)
            i = int(label.removeprefix("layer_"))
            for name, p in params:
                assert name.startswith(f"{prefix}encoder.layers.{i}.ops.{op}.") and named[name] is p
        chain = {n for n in named if n.startswith(f"{prefix}encoder.")}
        assert chain == {name for params in found.values() for name, _ in params}


def test_arch_weights_list_form_still_runs_with_a_deprecation_warning(config, batch):
    model = BertNasModel(config).eval()
    weights = {"layer_0": _one_hot(config, "mha6"), "layer_1": _one_hot(config, "ffn")}
    with torch.no_grad():
        by_label = model(**batch, arch_weights=weights).last_hidden_state
        with pytest.warns(DeprecationWarning, match="pass a mapping label -> 1-D weights"):
            in_order = model(**batch, arch_weights=list(weights.values())).last_hidden_state
        with pytest.warns(DeprecationWarning):  # a 2-D tensor, one row per layer
            rows = model(**batch, arch_weights=torch.stack(list(weights.values()))).last_hidden_state
    assert torch.equal(by_label, in_order) and torch.equal(by_label, rows)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"arch_weights\[1\]: weights must be"):
        model(**batch, arch_weights=[weights["layer_0"], torch.ones(7)])


def test_arch_weights_errors(config, batch):
    model = BertNasModel(config)
    ones = torch.ones(len(config.candidates))
    good = {"layer_0": ones, "layer_1": ones}
    with pytest.raises(ValueError, match="arch_weights has no entry for layer_1"):
        model(**batch, arch_weights={"layer_0": ones})
    with pytest.raises(ValueError, match="unknown labels \\['layer_2'\\]"):
        model(**batch, arch_weights={**good, "layer_2": ones})
    with pytest.raises(ValueError, match=r"arch_weights\['layer_1'\]: weights must be a 1-D tensor with one entry "
                                         r"per candidate \(8: mha6, .*got shape \(7,\)"):
        model(**batch, arch_weights={"layer_0": ones, "layer_1": torch.ones(7)})
    with pytest.raises(ValueError, match="not both"):
        model(**batch, arch=["ffn", "ffn"], arch_weights=good)
    with pytest.warns(DeprecationWarning, match="sequence in choice order is deprecated"), \
            pytest.raises(ValueError, match="arch_weights has 3 entries but the supernet has 2 layers"):
        model(**batch, arch_weights=[ones] * 3)
    with pytest.raises(ValueError, match="fixed to arch .* cannot mix candidates"):
        model.extract(["ffn", "ffn"])(**batch, arch_weights=good)


# -- transformers conventions --------------------------------------------------------------
@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("mixed", [False, True])
def test_gradient_checkpointing_gives_the_same_numbers(batch, mixed, reentrant):
    config = toy_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    assert BertNasForMaskedLM.supports_gradient_checkpointing
    runs = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = BertNasForMaskedLM(config).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
            assert model.bert.encoder.layers[0].gradient_checkpointing
        alpha = torch.zeros(2, len(config.candidates), requires_grad=True)
        route = {"arch_weights": dict(zip(model.choice_labels, alpha.softmax(-1)))} if mixed else {"arch": ["mha8", "conv3"]}
        torch.manual_seed(1)
        out = model(**batch, labels=batch["input_ids"], **route)
        out.loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        runs.append((out.loss.detach(), grads, alpha.grad))
    (loss_a, grads_a, alpha_a), (loss_b, grads_b, alpha_b) = runs
    assert torch.equal(loss_a, loss_b) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=0, atol=0, msg=name)
    if mixed:
        torch.testing.assert_close(alpha_a, alpha_b, rtol=0, atol=0)


def test_return_dict_false_gives_tuples(config, batch):
    arch = ["mha12", "ffn"]
    model = BertNasModel(config).eval()
    as_dict = model(**batch, arch=arch)
    as_tuple = model(**batch, arch=arch, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], as_dict.last_hidden_state) and torch.equal(as_tuple[1], as_dict.pooler_output)
    mlm = BertNasForMaskedLM(config).eval()
    loss, logits, hidden = mlm(**batch, arch=arch, labels=batch["input_ids"], output_hidden_states=True,
                               return_dict=False)
    assert torch.equal(logits, mlm(**batch, arch=arch).logits) and len(hidden) == 3
    config.return_dict = False
    assert isinstance(BertNasForQuestionAnswering(config).eval()(**batch, arch=arch), tuple)


def test_output_attentions_and_hidden_states(config, batch):
    model = BertNasModel(config).eval()
    arch = ["mha6", "conv3"]
    out = model(**batch, arch=arch, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[1] is None  # no attention in a conv layer
    probs = out.attentions[0]
    assert probs.shape == (3, 6, 12, 12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 6, 12))
    assert probs[1, :, :, 8:].abs().max() < 1e-6  # padded keys get no attention
    assert len(out.hidden_states) == 3 and torch.equal(out.hidden_states[-1], out.last_hidden_state)
    # The eager attention that returns the maps gives the SDPA output.
    torch.testing.assert_close(out.last_hidden_state, model(**batch, arch=arch).last_hidden_state,
                               rtol=1e-5, atol=1e-5)
    mixed = model(**batch, arch_weights={"layer_0": _one_hot(config, "mha6"), "layer_1": _one_hot(config, "ffn")},
                  output_attentions=True)
    assert mixed.attentions == (None, None)
    assert model(**batch, arch=arch).attentions is None


def test_unknown_kwargs_raise_and_trainer_loss_kwarg(config, batch):
    model = BertNasForMaskedLM(config).eval()
    with pytest.raises(TypeError, match="unexpected keyword argument 'output_attention'"):
        model(**batch, arch=["ffn", "ffn"], output_attention=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'labelz'"):
        BertNasModel(config)(**batch, arch=["ffn", "ffn"], labelz=1)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    mean = model(**batch, arch=["ffn", "ffn"], labels=labels).loss
    count = int((labels != -100).sum())
    summed = model(**batch, arch=["ffn", "ffn"], labels=labels, num_items_in_batch=torch.tensor(2 * count)).loss
    torch.testing.assert_close(summed, mean / 2)
    assert BertNasForMaskedLM.accepts_loss_kwargs and not BertNasModel.accepts_loss_kwargs


def test_inputs_embeds_match_input_ids(config, batch):
    model = BertNasModel(config).eval()
    embeds = model.get_input_embeddings()(batch["input_ids"])
    a = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], arch=["mha8", "conv5"])
    b = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], arch=["mha8", "conv5"])
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(arch=["mha8", "conv5"])
