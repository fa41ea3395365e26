"""Export: plain BERT layout (no remote code), remote-code layout (loads in a process without
bertnas), top-k from a results file, model card, push_to_hub up to the network call, errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

import bertnas
from bertnas.export import export, is_bert_arch

from test_search import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer, tiny_corpus):
    return make_run(tmp_path_factory.mktemp("run"), tiny_tokenizer, tiny_corpus)


@pytest.fixture(scope="module")
def supernet(run_dir):
    return bertnas.BertNasForMaskedLM.from_pretrained(run_dir / "checkpoint-00000010" / "model").eval()


def _ids(vocab_size):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (2, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return ids, mask


def test_is_bert_arch():
    assert is_bert_arch(["mha12", "ffn"]) and is_bert_arch(["mha6", "ffn"] * 3)
    for arch in (["ffn", "mha12"], ["mha12", "ffn", "mha8", "ffn"], ["mha12"], [], ["conv3", "ffn"]):
        assert not is_bert_arch(arch)


def test_bert_arch_exports_plain_bert_without_remote_code(run_dir, supernet, tmp_path):
    out = export(run_dir, tmp_path / "bert", arch='["mha12", "ffn"]')[0]
    assert not (out / "modeling_bertnas.py").exists() and (out / "model.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["bertnas_arch"] == ["mha12", "ffn"]
    assert "auto_map" not in config
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(model).__name__ == "BertForMaskedLM"
    backbone = AutoModel.from_pretrained(out).eval()
    assert type(backbone).__name__ == "BertModel"
    ids, mask = _ids(supernet.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits,
                                   supernet(input_ids=ids, attention_mask=mask, arch=["mha12", "ffn"]).logits)
        expected = supernet.bert(input_ids=ids, attention_mask=mask, arch=["mha12", "ffn"]).last_hidden_state
        torch.testing.assert_close(backbone(input_ids=ids, attention_mask=mask).last_hidden_state, expected)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.mask_token == "[MASK]" and len(tok) == supernet.config.vocab_size
    card = (out / "README.md").read_text()
    assert "| 0 | `mha12` |" in card and "| 1 | `ffn` |" in card and "trust_remote_code" not in card.split("## Arch")[0]


REMOTE_SCRIPT = """
import sys
sys.modules["bertnas"] = None  # any import of bertnas fails: only the exported files may be used
import torch
from transformers import AutoModelForMaskedLM
folder, ids, mask, out = sys.argv[1:]
model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
assert "transformers_modules" in type(model).__module__, type(model).__module__
with torch.no_grad():
    torch.save(model(input_ids=torch.load(ids), attention_mask=torch.load(mask)).logits, out)
print("OK", type(model).__name__, model.config.arch)
"""


def test_hybrid_arch_exports_remote_code_that_loads_without_bertnas(run_dir, supernet, tmp_path):
    arch = ["conv3", "mha6"]
    out = export(run_dir, tmp_path / "hybrid", arch="conv3,mha6")[0]
    assert (out / "modeling_bertnas.py").exists() and (out / "configuration_bertnas.py").exists()
    assert json.loads((out / "config.json").read_text())["arch"] == arch
    ids, mask = _ids(supernet.config.vocab_size)
    torch.save(ids, tmp_path / "ids.pt")
    torch.save(mask, tmp_path / "mask.pt")
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(out), str(tmp_path / "ids.pt"),
                             str(tmp_path / "mask.pt"), str(tmp_path / "logits.pt")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK BertNasForMaskedLM ['conv3', 'mha6']" in result.stdout
    with torch.no_grad():
        expected = supernet(input_ids=ids, attention_mask=mask, arch=arch).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "| 0 | `conv3` |" in card


def _results(tmp_path, archs):
    folder = tmp_path / "search"
    folder.mkdir()
    entries = [{"arch": a, "score": 2.0 + i, "params": 1, "flops": 1, "latency_ms": None, "rank": i + 1,
                "metric": "mlm_loss"} for i, a in enumerate(archs)]
    (folder / "results.json").write_text(json.dumps(entries))
    (folder / "search.json").write_text(json.dumps({"method": "shrinking", "heldout": {"seq_len": 16}}))
    return folder / "results.json"


def test_top_k_from_results_via_the_command(run_dir, tmp_path, capsys):
    from bertnas.cli import main

    results = _results(tmp_path, [["mha8", "ffn"], ["ffn_wide", "conv5"], ["identity", "ffn"]])
    assert main(["export", "--checkpoint", str(run_dir), "--results", str(results), "--top-k", "2",
                 "--output-dir", str(tmp_path / "exports")]) == 0
    folders = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert folders == ["rank-1", "rank-2"]
    assert json.loads((tmp_path / "exports" / "rank-1" / "config.json").read_text())["model_type"] == "bert"
    assert json.loads((tmp_path / "exports" / "rank-2" / "config.json").read_text())["arch"] == ["ffn_wide", "conv5"]
    card = (tmp_path / "exports" / "rank-2" / "README.md").read_text()
    assert "- rank: 2" in card and "- score: 3.0" in card and "- search method: shrinking" in card
    assert "rank-1" in capsys.readouterr().out


def test_push_to_hub_calls_the_hub_with_the_exported_folder(run_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    class Repo:
        repo_id = "someone/subnet"

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)
        return Repo()

    def upload_folder(self, **kwargs):
        calls["upload"] = kwargs
        calls["files"] = sorted(os.listdir(kwargs["folder_path"]))
        return "https://huggingface.co/someone/subnet/commit/0"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = export(run_dir, tmp_path / "push", arch=["mha12", "conv3"], push_to_hub="someone/subnet", private=True)[0]
    assert calls["create"] == ("someone/subnet", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls["upload"]["folder_path"] == str(out) and calls["upload"]["repo_id"] == "someone/subnet"
    needed = {"README.md", "config.json", "model.safetensors", "modeling_bertnas.py", "tokenizer.json"}
    assert needed <= set(calls["files"])
    assert 'from_pretrained("someone/subnet", trust_remote_code=True)' in (out / "README.md").read_text()
    results = _results(tmp_path, [["mha8", "ffn"], ["ffn", "ffn"]])
    with pytest.raises(ValueError, match="uploads one model"):
        export(run_dir, tmp_path / "push2", results=results, top_k=2, push_to_hub="someone/subnet")


def test_bad_inputs_give_clear_errors(run_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown candidate 'mha7' for layer_0"):
        export(run_dir, tmp_path / "a", arch=["mha7", "ffn"])
    with pytest.raises(ValueError, match="3 entries but the space has 2"):
        export(run_dir, tmp_path / "a", arch="ffn,ffn,ffn")
    with pytest.raises(ValueError, match="not valid JSON"):
        export(run_dir, tmp_path / "a", arch='["ffn", ')
    with pytest.raises(ValueError, match="exactly one of arch"):
        export(run_dir, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(tmp_path / "no-run", tmp_path / "a", arch=["ffn", "ffn"])
    with pytest.raises(FileNotFoundError, match="Results file"):
        export(run_dir, tmp_path / "a", results=tmp_path / "missing.json")
    results = _results(tmp_path, [["ffn", "ffn", "ffn"]])
    with pytest.raises(ValueError, match="entry 0 is not an arch of this supernet"):
        export(run_dir, tmp_path / "a", results=results)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export(run_dir, tmp_path / "full", arch=["ffn", "ffn"])
    with pytest.raises(FileExistsError, match="not written by bertnas export"):  # never deletes others' files
        export(run_dir, tmp_path / "full", arch=["ffn", "ffn"], overwrite=True)
    assert (tmp_path / "full" / "old.txt").read_text() == "x"
    export(run_dir, tmp_path / "mine", arch=["ffn", "ffn"])
    export(run_dir, tmp_path / "mine", arch=["mha8", "ffn"], overwrite=True)  # its own export: replaced
    assert json.loads((tmp_path / "mine" / "config.json").read_text())["bertnas_arch"] == ["mha8", "ffn"]
    card = (tmp_path / "mine" / "README.md").read_text()
    assert str(tmp_path) not in card and str(run_dir.resolve()) not in card  # no local absolute paths
