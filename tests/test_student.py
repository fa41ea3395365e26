"""Student supernets from a teacher BERT (bertnas compress, model side): exact copy at the teacher's
width, importance slicing when narrower, the new op kinds (mha<h>w<width>, ffn<k>x, conv7) and
factorised embeddings (costs, export as remote code), the parameter counters, teacher errors."""

import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig

import bertnas
from bertnas.models.student import (
    default_candidates,
    embedding_params,
    attention_channels,
    layer_map,
    load_teacher,
    non_embedding_params,
    smallest_arch,
    student_supernet,
    total_params,
)
from bertnas.models.ops_bertnas import build_op, op_flops, op_params, parse_op, short_op_name

from conftest import DATA_DIR, toy_config

NEW_OPS = ["mha2w16", "mha4w64", "ffn1x", "ffn2x", "conv7"]


def _teacher(**overrides):
    torch.manual_seed(0)
    kwargs = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kwargs.update(overrides)
    return BertForMaskedLM(BertConfig(**kwargs)).eval()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher")
    _teacher().save_pretrained(path)
    return path


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_same_width_student_is_the_teacher(teacher_dir):
    """[mha4, ffn] x 2 at the teacher's width copies every teacher weight: same hidden states and
    MLM logits, exactly; a wider FFN (ffn4x: 128 > 64 neurons) starts equal to the teacher's."""
    teacher = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    student = student_supernet(teacher_dir, 32, 4, ["mha4", "ffn", "ffn4x", "conv3", "identity"]).eval()
    report = student.student_init
    assert report.layer_map == [0, 1, 2, 3] and report.hidden_channels == list(range(32))
    assert report.sliced == [] and all(".ffn4x." in n for n in report.partial) and report.partial
    assert set(report.fresh) == {n for n, _ in student.named_parameters() if ".conv3." in n and "LayerNorm" not in n}
    ids, mask = _inputs()
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for ffn in ("ffn", "ffn4x"):
            out = student(input_ids=ids, attention_mask=mask, arch=["mha4", ffn] * 2, output_hidden_states=True)
            torch.testing.assert_close(out.hidden_states[-1], expected.hidden_states[-1], rtol=0,
                                       atol=0 if ffn == "ffn" else 1e-6)
            torch.testing.assert_close(out.logits, expected.logits, rtol=0, atol=0 if ffn == "ffn" else 1e-5)


def test_layer_map_spreads_student_layers_over_the_teacher():
    assert layer_map(12, 12) == list(range(12))
    assert layer_map(12, 6) == [0, 2, 4, 6, 8, 10]
    assert layer_map(12, 4) == [0, 3, 6, 9]
    assert layer_map(4, 6) == [0, 1, 1, 2, 3, 3]  # deeper than the teacher: layers repeat, never past the end


def test_attention_keeps_whole_heads_when_head_sizes_agree():
    scores = torch.tensor([1.0, 1.0, 9.0, 0.0, 0.0, 5.0, 3.0, 3.0])  # 4 heads of 2: sums 2, 9, 5, 6
    assert attention_channels(scores, 4, 2, 4).tolist() == [2, 3, 6, 7]  # heads 1 and 3, whole
    assert attention_channels(scores, 4, 1, 4).tolist() == [2, 5, 6, 7]  # head size 4 != 2: top channels
    assert attention_channels(scores, 4, 2, 8).tolist() == list(range(8))  # everything, in order


def _constructed_teacher(path):
    """A teacher whose important units are known: hidden channels IMPORTANT_H carry large
    activations (LayerNorm gains x5), heads 1 and 3 large values, FFN neurons IMPORTANT_N large
    activations (bias +3) and large output weights."""
    teacher = _teacher()
    bert = teacher.bert
    with torch.no_grad():
        norms = [bert.embeddings.LayerNorm] + [m for layer in bert.encoder.layer
                                               for m in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
        for norm in norms:
            norm.weight[IMPORTANT_H] = 5.0
        for layer in bert.encoder.layer:
            layer.attention.self.value.weight[8:16] *= 10  # head 1 (head size 8)
            layer.attention.self.value.weight[24:32] *= 10  # head 3
            layer.intermediate.dense.bias[IMPORTANT_N] = 3.0  # large activations
            layer.output.dense.weight[:, IMPORTANT_N] *= 10  # large weights
    teacher.save_pretrained(path)
    return teacher


IMPORTANT_H = [1, 4, 5, 9, 12, 17, 20, 22, 25, 26, 27, 28, 29, 30, 31, 0]
IMPORTANT_N = [3, 7, 8, 15, 16, 23, 31, 32, 40, 41, 42, 50, 55, 60, 61, 63]


@pytest.mark.parametrize("calibrate", [True, False], ids=["activation", "weight"])
def test_narrow_student_keeps_the_most_important_units(tmp_path, calibrate):
    teacher = _constructed_teacher(tmp_path)
    ids, mask = _inputs()
    batches = [{"input_ids": ids, "attention_mask": mask}] if calibrate else None
    # hidden 16 of 32; mha2 heads of size 8 = 2 of the 4 teacher heads; ffn inner 16 of 64 neurons
    student = student_supernet(tmp_path, 16, 2, ["mha2", "ffn"], calibration_batches=batches, intermediate_size=16)
    report = student.student_init
    assert report.importance == ("activation" if calibrate else "weight")
    keep = sorted(IMPORTANT_H)
    assert report.hidden_channels == keep
    t_layer, s_layers = teacher.bert.encoder.layer[0], student.bert.encoder.layers
    heads = list(range(8, 16)) + list(range(24, 32))
    torch.testing.assert_close(s_layers[0].ops["mha2"].value.weight, t_layer.attention.self.value.weight[heads][:, keep])
    torch.testing.assert_close(s_layers[0].ops["mha2"].dense.weight,
                               t_layer.attention.output.dense.weight[keep][:, heads])
    ffn = s_layers[1].ops["ffn"]  # student layer 1 = teacher chain position 2: BERT layer 1's FFN
    t_ffn = teacher.bert.encoder.layer[1]
    assert report.layer_map == [0, 2]
    neurons = sorted(IMPORTANT_N)
    # activation importance sees the +3 bias, weight importance the x10 output weights
    torch.testing.assert_close(ffn.intermediate.weight, t_ffn.intermediate.dense.weight[neurons][:, keep])
    torch.testing.assert_close(ffn.output.weight, t_ffn.output.dense.weight[keep][:, neurons])
    torch.testing.assert_close(student.bert.embeddings.word_embeddings.weight,
                               teacher.bert.embeddings.word_embeddings.weight[:, keep])
    assert report.fresh == [] and report.partial == []


@pytest.mark.parametrize("op", NEW_OPS)
def test_new_op_kinds_count_params_and_flops_of_their_modules(op):
    config = toy_config(candidates=["mha12", "ffn"] + [op])
    module = build_op(config, op).eval()
    assert op_params(config, op) == bertnas.BertSpace(config).op_params(op) == sum(p.numel() for p in
                                                                                  module.parameters())
    for seq_len in (5, 12):
        x = torch.randn(2, seq_len, config.hidden_size)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        assert op_flops(config, op, seq_len) == counter.get_total_flops() // 2


def test_from_bert_starts_new_op_kinds_from_the_bert_block():
    """from_bert with mha<h>w<width> and ffn<k>x candidates: a wider FFN starts equal to BERT's (extra
    neurons silent); attention and narrower FFNs start from the leading channels / neurons."""
    bert = _teacher().bert
    model = bertnas.BertNasModel.from_bert(bert, candidates=["mha4w64", "mha2w16", "ffn4x", "ffn1x"]).eval()
    ids, mask = _inputs()
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        wide = model(input_ids=ids, attention_mask=mask, arch=["mha4", "ffn4x"] * 2).last_hidden_state
        torch.testing.assert_close(wide, expected, rtol=0, atol=1e-5)
    narrow = model.encoder.layers[0].ops["mha2w16"]
    torch.testing.assert_close(narrow.query.weight, bert.encoder.layer[0].attention.self.query.weight[:16])
    assert model.encoder.layers[1].ops["ffn1x"].intermediate.weight.shape == (32, 32)


def test_new_op_names_parse_and_validate():
    assert parse_op("mha4w128") == ("mha_w", (4, 128)) and short_op_name("mha4w128") == "a4w128"
    assert parse_op("ffn2x") == ("ffn_x", 2) and short_op_name("ffn2x") == "f2x"
    assert parse_op("conv7") == ("conv", 7) and parse_op("ffn") == ("ffn", 0) and parse_op("mha12") == ("mha", 12)
    with pytest.raises(ValueError, match="inner width 32 divisible by its 3 heads"):
        toy_config(candidates=["mha3w32"])
    with pytest.raises(ValueError, match="Unknown op 'ffn0x'"):
        toy_config(candidates=["ffn0x"])
    with pytest.raises(ValueError, match="embedding_size must be a positive int"):
        toy_config(embedding_size=0)


REMOTE_SCRIPT = """
import sys
sys.modules["bertnas"] = None  # only the exported files may be used
import torch
from transformers import AutoModel, AutoModelForMaskedLM
folder, ids, mask, out = sys.argv[1:]
model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True)
assert "transformers_modules" in type(model).__module__, type(model).__module__
with torch.no_grad():
    torch.save(model(input_ids=torch.load(ids), attention_mask=torch.load(mask)).logits, out)
print("OK", model.config.arch, model.config.embedding_size, sum(p.numel() for p in model.parameters()))
"""


def test_new_ops_and_factorised_embeddings_export_and_reload_without_bertnas(tmp_path):
    config = toy_config(candidates=["mha12"] + NEW_OPS + ["identity"], num_hidden_layers=6, embedding_size=16)
    supernet = bertnas.BertNasForMaskedLM(config).eval()
    arch = ["mha2w16", "ffn2x", "conv7", "identity", "mha4w64", "ffn1x"]
    fixed = supernet.extract(arch)
    n_params = sum(p.numel() for p in fixed.parameters())
    assert total_params(config, arch) == n_params
    assert non_embedding_params(config, arch) == sum(p.numel() for n, p in fixed.named_parameters() if ".encoder." in n)
    assert embedding_params(config) == sum(p.numel() for n, p in fixed.bert.named_parameters()
                                           if n.startswith("embeddings"))
    assert fixed.cls.predictions.decoder.weight is fixed.bert.embeddings.word_embeddings.weight
    with pytest.raises(ValueError, match="factorised"):
        bertnas.BertNasForMaskedLM(toy_config(candidates=["mha12", "ffn"], embedding_size=16)).extract(
            ["mha12", "ffn"]).to_bert()
    fixed.save_pretrained(tmp_path / "student")
    ids, mask = _inputs()
    ids = ids % config.vocab_size
    torch.save(ids, tmp_path / "ids.pt")
    torch.save(mask, tmp_path / "mask.pt")
    result = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path / "student"), str(tmp_path / "ids.pt"),
                             str(tmp_path / "mask.pt"), str(tmp_path / "logits.pt")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"OK {arch} 16 {n_params}" in result.stdout
    with torch.no_grad():
        expected = supernet(input_ids=ids, attention_mask=mask, arch=arch).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-6)


def test_factorised_student_embeddings_are_the_best_rank_e_projection(teacher_dir):
    teacher = BertForMaskedLM.from_pretrained(teacher_dir)
    student = student_supernet(teacher_dir, 16, 2, ["mha2", "ffn", "identity"], embedding_size=8)
    keep = student.student_init.hidden_channels
    words = teacher.bert.embeddings.word_embeddings.weight[:, keep].detach()
    project = student.bert.embeddings_project
    gain = teacher.bert.embeddings.LayerNorm.weight[keep].detach()
    basis = project.weight.detach() / gain[:, None]  # (16, 8): orthonormal columns
    torch.testing.assert_close(basis.T @ basis, torch.eye(8), atol=1e-5, rtol=0)
    residual = words - student.bert.embeddings.word_embeddings.weight.detach() @ basis.T
    tail = torch.linalg.svdvals(words)[8:]
    torch.testing.assert_close(residual.pow(2).sum(), tail.pow(2).sum(), rtol=1e-4, atol=1e-5)
    assert "bert.embeddings_project.weight" in student.student_init.sliced
    ids, mask = _inputs()
    out = student(input_ids=ids, attention_mask=mask, labels=ids, arch=["mha2", "ffn"])
    assert torch.isfinite(out.loss) and out.logits.shape == (3, 10, 100)


def test_default_candidates_build_at_the_student_width():
    candidates = default_candidates(256, head_size=32)
    assert candidates == ["mha8", "mha4w128", "mha2w64", "ffn", "ffn2x", "ffn1x", "conv3", "conv5", "conv7",
                          "identity"]
    toy_config(hidden_size=256, candidates=candidates)  # every one validates
    assert default_candidates(64, head_size=32)[:2] == ["mha2", "mha1w32"]
    with pytest.raises(ValueError, match="not a multiple of head_size 64"):
        default_candidates(48)


def test_parameter_counters_and_smallest_arch():
    config = toy_config(candidates=["mha12", "ffn", "conv3", "ffn1x"], num_hidden_layers=4)
    arch, size = smallest_arch(config)
    assert arch == ["conv3"] * 4 and size == 4 * op_params(config, "conv3")
    assert smallest_arch(toy_config(candidates=["mha12", "identity"]))[1] == 0
    model = bertnas.BertNasModel(config.__class__(**{**config.to_dict(), "arch": ["ffn", "conv3", "mha12", "ffn1x"]}),
                                 add_pooling_layer=True)
    assert total_params(config, ["ffn", "conv3", "mha12", "ffn1x"], head="pooler") == sum(
        p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="arch has 2 ops but the space has 4 layers"):
        non_embedding_params(config, ["ffn", "ffn"])


def test_teacher_errors(tmp_path, teacher_dir):
    DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=64).save_pretrained(tmp_path / "d")
    with pytest.raises(ValueError, match="'distilbert' model, not a BERT"):
        student_supernet(tmp_path / "d", 16, 2, ["mha2", "ffn"])
    with pytest.raises(FileNotFoundError, match="could not be read"):
        student_supernet(tmp_path / "missing", 16, 2, ["mha2", "ffn"])
    with pytest.raises(ValueError, match="wider than the teacher's 32"):
        student_supernet(teacher_dir, 64, 2, ["mha2", "ffn"])
    with pytest.raises(ValueError, match="embedding_size 32 is larger than hidden_size 16"):
        student_supernet(teacher_dir, 16, 2, ["mha2", "ffn"], embedding_size=32)


def test_bare_bert_teacher_leaves_the_mlm_head_fresh(teacher_dir, tmp_path):
    """A sentence-transformers style teacher (a bare BertModel, as all-MiniLM-L6-v2) has no MLM head:
    the backbone is still copied, the head's transform starts fresh and is reported so."""
    teacher = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    student = student_supernet(teacher.bert, 32, 4, ["mha4", "ffn"]).eval()
    assert set(student.student_init.fresh) == {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                                              "cls.predictions.transform.dense.bias",
                                              "cls.predictions.transform.LayerNorm.weight",
                                              "cls.predictions.transform.LayerNorm.bias"}
    bare_dir = tmp_path / "bare"
    teacher.bert.save_pretrained(bare_dir)
    loaded, missing = load_teacher(bare_dir)  # the loaded teacher passed on still knows its head is fresh
    assert missing and all(k.startswith("cls.") for k in missing)
    assert set(student_supernet(loaded, 32, 2, ["mha4", "ffn"]).student_init.fresh) == set(student.student_init.fresh)
    ids, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(student.bert(input_ids=ids, attention_mask=mask, arch=["mha4", "ffn"] * 2)
                                   .last_hidden_state, teacher.bert(input_ids=ids, attention_mask=mask)
                                   .last_hidden_state, rtol=0, atol=0)


def _text_batches(path, rows, per_batch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    text = DATA_DIR / "text" / "wikitext-2-raw" / "wiki.valid.raw"
    if not text.is_file():
        pytest.skip(f"{text} is missing (the shared data sets)")
    lines = [line.strip() for line in text.read_text().splitlines() if len(line.strip()) > 80][:rows]
    return [dict(tok(lines[i:i + per_batch], padding=True, truncation=True, max_length=48, return_tensors="pt"))
            for i in range(0, rows, per_batch)]


def test_real_teacher_importance_init_beats_first_channels_and_random(minilm_path, monkeypatch):
    """On all-MiniLM-L6-v2 (hidden 384) and real text, a student of half the width, 4 chain layers
    and factorised embeddings (E=128): the cosine between its hidden states and the teacher's on the
    kept channels is highest with activation importance, lower when keeping the first channels
    (naive slicing), about zero from a random start."""
    import bertnas.models.student as student_module

    batches = _text_batches(minilm_path, 24, 8)
    calibration, held = batches[:2], batches[2]
    teacher, _ = load_teacher(minilm_path)
    with torch.no_grad():
        target = teacher.bert(**held).last_hidden_state
    real = held["attention_mask"].bool()
    arch = ["mha6", "ffn"] * 2

    def cosine(init, calibration_batches=None):
        model = student_supernet(teacher, 192, 4, ["mha6", "ffn"], embedding_size=128, init=init,
                                 calibration_batches=calibration_batches).eval()
        kept = model.student_init.hidden_channels or list(range(192))
        with torch.no_grad():
            out = model.bert(**held, arch=arch).last_hidden_state
        return torch.nn.functional.cosine_similarity(out[real], target[..., kept][real], dim=-1).mean().item()

    importance = cosine("importance", calibration)
    random_start = cosine("random")
    monkeypatch.setattr(student_module, "top_units", lambda scores, k: torch.arange(min(k, scores.numel())))
    first = cosine("importance")
    assert importance > first + 0.05 and first > random_start + 0.1 and abs(random_start) < 0.15, (
        importance, first, random_start)
