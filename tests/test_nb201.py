"""NAS-Bench-201: the space (size, enumerate, arch strings), the benchmark table, exact params /
FLOPs, the supernet model (paths, one-hot mixes, extract, save / reload as remote code without
bertnas), and the classification task through pretrain (exact resume), search and export."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from bertnas.models import NB201_EDGES, NB201_OPS, Nb201Config, Nb201ForImageClassification
from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space, default_benchmark_path, to_string

from conftest import DATA_DIR

CIFAR = DATA_DIR / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def tiny(**kw):
    return Nb201Config(**{"init_channels": 4, "cells_per_stage": 1, "num_labels": 5, "image_size": 8, **kw})


def images(n=3, size=8, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- space ----------------------------------------------------------------------------------------


def test_space_size_enumerate_and_strings():
    space = Nb201Space()
    assert list(space.choices) == list(NB201_EDGES) == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1",
                                                        "edge_3_2"]
    assert space.size() == 15625 == 5 ** 6
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == 15625
    strings = {space.to_string(a) for a in archs}
    assert len(strings) == 15625
    for a in archs[::977]:
        assert space.from_string(space.to_string(a)) == a
    a = space.from_string(BEST_C10)
    assert a.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1")
    assert to_string(a.ops) == BEST_C10 and space.arch(BEST_C10) == a
    for bad in ("|nor_conv_3x3~0|+|none~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(ValueError):
            space.from_string(bad)


def test_benchmark_lookup_and_rank():
    path = default_benchmark_path()
    if not path.is_file():
        pytest.skip(f"the NB201 table {path} is absent (set BERTNAS_NASBENCH201_CSV or BERTNAS_DATA_DIR)")
    bench = Nb201Benchmark()
    assert len(bench) == 15625
    best, acc = bench.best("cifar10")
    assert best == BEST_C10 and round(acc, 2) == 94.37
    entry = bench.lookup(Nb201Space().from_string(BEST_C10))
    assert entry["index"] == 6111 and bench.rank(BEST_C10) == 1
    assert round(bench.best("cifar100")[1], 2) == 73.51 and round(bench.best("imagenet16-120")[1], 2) == 47.31
    worst = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert bench.accuracy(worst) == 10.0 and bench.rank(worst) > 15000
    assert bench.lookup(list(Nb201Space.parse_string(worst)))["cifar10"] == 10.0  # a list of ops works too


def test_benchmark_absent_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        Nb201Benchmark(missing)
    monkeypatch.setenv("BERTNAS_NASBENCH201_CSV", str(missing))
    with pytest.raises(FileNotFoundError, match="BERTNAS_NASBENCH201_CSV"):
        Nb201Benchmark()


def _conv_flops_but_pooling(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, *args,
                            out_shape=None, **kwargs):
    """torch's convolution count, except avg_pool_3x3's depthwise box filter (`AvgPool3x3`: a
    grouped conv whose filters see one channel each): NB201's accounting leaves pooling free."""
    from torch.utils.flop_counter import conv_flop_count

    if w_shape[1] == 1 and x_shape[1] == w_shape[0] > 1:
        return 0
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)


POOLING_FREE = {torch.ops.aten.convolution: _conv_flops_but_pooling}


@pytest.mark.parametrize("c,n,size,classes", [(4, 1, 8, 5), (6, 2, 16, 10), (16, 5, 32, 10)])
def test_params_and_flops_are_exact(c, n, size, classes):
    from torch.utils.flop_counter import FlopCounterMode

    config = Nb201Config(init_channels=c, cells_per_stage=n, image_size=size, num_labels=classes)
    model = Nb201ForImageClassification(config).eval()
    space = Nb201Space.from_config(config)
    archs = [space.sample(i) for i in range(3)] + [space.from_string(BEST_C10)] if n < 5 else [
        space.from_string(BEST_C10)]
    for arch in archs:
        fixed = model.extract(arch)
        assert sum(p.numel() for p in fixed.parameters()) == space.params(arch)
        with FlopCounterMode(display=False, custom_mapping=POOLING_FREE) as counter, torch.no_grad():
            fixed(images(1, size))
        assert counter.get_total_flops() == space.flops(arch)
    if (c, n) == (16, 5):  # NB201's published size of its CIFAR-10 optimum: 1.073 M params, 153.27 M MACs
        arch = space.from_string(BEST_C10)
        assert space.params(arch) == 1_073_466 and round(space.flops(arch) / 2e6, 2) == 153.27


# -- model ----------------------------------------------------------------------------------------


def test_forward_backward_and_one_hot_mix_is_the_path():
    model = Nb201ForImageClassification(tiny())
    space = Nb201Space.from_config(model.config)
    x, labels = images(), torch.tensor([0, 3, 4])
    arch = space.sample(1)
    out = model(x, labels=labels, arch=arch, output_hidden_states=True)
    assert out.logits.shape == (3, 5) and out.loss.ndim == 0
    assert len(out.hidden_states) == 1 + 3 + 2  # stem, N cells per stage, 2 reduction blocks
    out.loss.backward()
    on_path = {(label, op) for label, op in arch.items()}
    for (label, op), params in model.candidate_parameters().items():
        for _, p in params:
            assert (p.grad is not None) == ((label, op) in on_path), (label, op)
    for train in (True, False):
        model.train(train)
        one_hot = {label: F.one_hot(torch.tensor(NB201_OPS.index(op)), 5).float() for label, op in arch.items()}
        assert torch.equal(model(x, arch_weights=one_hot).logits, model(x, arch=arch).logits)
    with pytest.raises(ValueError, match="edge_1_0"):
        model(x, arch=["conv"] * 6)
    with pytest.raises(ValueError, match="supernet"):
        model(x)


def test_extract_equals_the_supernet_path_and_choice_protocol():
    from bertnas.spaces.choices import space_from_model

    model = Nb201ForImageClassification(tiny()).train()
    x = images()
    model(x, arch=Nb201Space.from_config(model.config).sample(0))  # BN statistics move
    model.eval()
    space = space_from_model(model)
    assert list(space.choices) == list(NB201_EDGES) and space.size() == 15625
    for seed in range(3):
        arch = space.sample(seed)
        fixed = model.extract(arch)
        assert fixed.config.arch == list(arch.ops) and not fixed.is_supernet
        assert torch.equal(fixed(x).logits, model(x, arch=arch).logits)
        assert space_from_model(fixed).size() == 1
    assert torch.equal(model.extract(BEST_C10)(x).logits, model(x, arch=BEST_C10).logits)


def test_save_and_reload_as_remote_code_without_bertnas(tmp_path):
    model = Nb201ForImageClassification(tiny()).eval()
    arch = Nb201Space.from_config(model.config).sample(2)
    fixed = model.extract(arch)
    fixed.save_pretrained(tmp_path / "m")
    assert {"modeling_nb201.py", "configuration_nb201.py", "supernet_mixin.py"} <= {p.name for p in (tmp_path / "m").iterdir()}
    x = images(2)
    torch.save(x, tmp_path / "x.pt")
    expected = fixed(x).logits
    again = Nb201ForImageClassification.from_pretrained(tmp_path / "m").eval()
    assert torch.equal(again(x).logits, expected)
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "bertnas" or name.startswith("bertnas."):
            raise ImportError("bertnas is not importable here")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForImageClassification
m = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True).eval()
assert not [k for k in sys.modules if k.startswith("bertnas")]
with torch.no_grad():
    torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})).logits, {str(tmp_path / 'y.pt')!r})
print(type(m).__name__, m.config.arch)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Nb201ForImageClassification" in done.stdout
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


# -- the classification task: pretrain, resume, search, export -----------------------------------


def test_augmentation_is_seeded_and_shapes_hold():
    from bertnas.tasks.vision import augment

    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 8, 8) and torch.equal(a, b)
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))
    plain = augment(x, torch.Generator().manual_seed(1), padding=0)  # no crop: identity or a mirror
    for i in range(5):
        xi = x[i].float() / 255
        assert torch.equal(plain[i], xi) or torch.equal(plain[i], xi.flip(-1))


def _need_cifar():
    if not CIFAR.is_file():
        pytest.skip(f"{CIFAR} is absent (set BERTNAS_DATA_DIR to the shared data folder)")


def _options(tmp_path, name, **overrides):
    o = dict(space="nb201", data=str(CIFAR), output_dir=str(tmp_path / name), max_steps=4, save_steps=2, keep_last=3,
             batch_size=8, eval_batches=2, lr=1e-3, warmup_steps=1, sampler="walk", align=True, align_block_size=2,
             base_replacement="beat", base_every=2, progress=False, seed=5, val_fraction=0.01,
             space_options={"C": 4, "N": 1, "calibration_batches": 1})
    o.update(overrides)
    return o


def test_pretrain_resume_search_export(tmp_path):
    _need_cifar()
    from bertnas.export import export
    from bertnas.search import search
    from bertnas.tasks import load_task
    from bertnas.storage.logs import read_log
    from bertnas.pipelines.pretrain import pretrain

    summary = pretrain(_options(tmp_path, "full"))
    full = read_log(tmp_path / "full" / "log.jsonl")
    assert summary["step"] == 4 and [r["step"] for r in full] == [1, 2, 3, 4]
    assert all(set(r["arch"]) <= set(NB201_OPS) and r["align_loss"] >= 0 and 0 <= r["accuracy"] <= 1 for r in full)
    for a, b in zip(full, full[1:]):  # MAGIC-T walk: one edge changes per step
        assert sum(x != y for x, y in zip(a["arch"], b["arch"])) == 1
    assert "base_score" in full[1]
    state = json.loads((tmp_path / "full" / "checkpoint-00000004" / "state.json").read_text())
    assert state["task"] == "classification" and state["data"]["num_classes"] == 10

    # exact resume from step 2 (augmentation and sampling come from checkpointed generators)
    (tmp_path / "part").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-00000002", tmp_path / "part" / "checkpoint-00000002")
    pretrain(_options(tmp_path, "part", resume_from_checkpoint="latest"))
    resumed = read_log(tmp_path / "part" / "log.jsonl")
    assert [r["step"] for r in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed):
        assert (a["loss"], a["arch"], a["align_loss"], a["accuracy"]) == (b["loss"], b["arch"], b["align_loss"],
                                                                          b["accuracy"])

    # search: accuracy after BN recalibration, with the benchmark's real numbers per entry
    entries = search(tmp_path / "full", "random", tmp_path / "search", num_samples=4, eval_batches=2, progress=False)
    assert len(entries) == 4 and all(e["metric"] == "accuracy" and e["params"] > 0 for e in entries)
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
    if default_benchmark_path().is_file():
        assert all(0 < e["benchmark"]["cifar10"] < 100 and e["benchmark"]["rank_cifar10"] >= 1 for e in entries)
    meta = json.loads((tmp_path / "search" / "search.json").read_text())
    assert meta["space"]["size"] == 15625 and meta["heldout"]["calibration_batches"] == 1
    task = load_task(tmp_path / "full")
    batches, _ = task.heldout(eval_batches=2)
    ev = task.evaluator(batches)
    assert ev.uses_batchnorm and abs(ev(entries[0]["arch"]) - entries[0]["score"]) < 1e-9
    for method, kw in (("evolution", dict(population=4, generations=1, parents=2)),
                       ("shrinking", dict(bins=2, candidates_per_bin=2, survivors_per_bin=1))):
        assert search(tmp_path / "full", method, None, eval_batches=1, progress=False, **kw)

    # export: the path with its recalibrated BatchNorm statistics, reloadable with the Auto class
    from transformers import AutoModelForImageClassification

    folder = export(tmp_path / "full", tmp_path / "export", arch=json.dumps(entries[0]["arch"]))[0]
    assert (folder / "preprocessor_config.json").is_file() and "edge_3_2" in (folder / "README.md").read_text()
    loaded = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert loaded.config.arch == entries[0]["arch"]
    x = batches[0]["pixel_values"]
    with torch.no_grad():
        ev(entries[0]["arch"] + [])  # cached: no recalibration; recalibrate explicitly for the comparison
        task.prepare_export(entries[0]["arch"])
        assert torch.allclose(loaded(x).logits, task.model(x, arch=entries[0]["arch"]).logits, atol=1e-5)


def test_standalone_arch_from_an_nb201_string(tmp_path):
    _need_cifar()
    from bertnas.tasks import load_task
    from bertnas.pipelines.pretrain import pretrain

    pretrain(_options(tmp_path, "one", arch=[BEST_C10], max_steps=2, save_steps=2, align=False))
    task = load_task(tmp_path / "one")
    assert task.fixed_arch.ops == Nb201Space.parse_string(BEST_C10) and task.space.size() == 1
    assert not task.model.is_supernet


def test_unknown_space_option_is_named(tmp_path):
    _need_cifar()
    from bertnas.pipelines.pretrain import pretrain

    with pytest.raises(ValueError, match="channels"):
        pretrain(_options(tmp_path, "bad", space_options={"channels": 4}))
