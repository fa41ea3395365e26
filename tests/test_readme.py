"""The README's Quick tour runs as written, with the local all-MiniLM-L6-v2 checkpoint standing in
for its Hub id (nothing is downloaded in tests), and its exported subnet reloads as it says."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def quick_tour() -> str:
    text = README.read_text()
    section = text.split("## Quick tour", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_tour_runs_as_written(minilm_path, tmp_path, monkeypatch):
    code = quick_tour()
    assert HUB_ID in code
    monkeypatch.chdir(tmp_path)  # save_pretrained("my-subnet") lands here
    scope: dict = {}
    exec(compile(code.replace(HUB_ID, str(minilm_path)), str(README), "exec"), scope)

    space, arch, subnet = scope["space"], scope["arch"], scope["subnet"]
    assert scope["out"].logits.shape[:2] == scope["input_ids"].shape
    params, flops = space.params(arch), space.flops(arch, seq_len=128)
    assert params > 0 and flops > 0
    assert type(scope["bert"]).__name__ == "BertForMaskedLM"

    # "anywhere, even without bertnas installed": the saved folder loads through the Auto classes
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "my-subnet", trust_remote_code=True).eval()
    subnet.eval()
    ids, mask = scope["input_ids"], scope["mask"]
    with torch.no_grad():
        expected = subnet.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = reloaded(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(expected, got, atol=1e-5)
