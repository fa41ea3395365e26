"""The CNN chain space (ProxylessNAS inverted residuals, SPOS ShuffleNetV2 blocks): exact params /
FLOPs against the built module and torch's FLOP counter, the published layouts, single-path,
mixed and extracted forms, export reload without bertnas."""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from bertnas.spaces.choices import space_from_model
from bertnas.models.configuration_cnn import CnnNasConfig
from bertnas.models.modeling_cnn import CnnNasForImageClassification
from bertnas.spaces.cnn import CnnSpace, build_supernet

TINY = {
    "mbconv": dict(stem_channels=8, first_block_channels=8, stage_channels=[8, 16, 24], stage_depths=[2, 2, 1],
                   stage_strides=[1, 2, 2], last_channels=32, image_size=32, num_labels=5),
    "shufflenet": dict(stem_channels=8, stage_channels=[16, 32], stage_depths=[2, 2], stage_strides=[2, 2],
                       last_channels=32, image_size=32, num_labels=5),
}


def tiny(block_type):
    torch.manual_seed(0)
    config = CnnNasConfig(block_type=block_type, **TINY[block_type])
    return CnnNasForImageClassification(config), CnnSpace(config)


def images(n=2, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_published_layouts():
    proxyless = CnnSpace(CnnNasConfig())
    assert len(proxyless.choices) == 21  # 4+4+4+4+4+1 blocks after the fixed MBConv1 block
    assert proxyless.choices["block_0"] == ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6")  # strided: no skip
    assert proxyless.choices["block_1"][-1] == "skip"
    assert "skip" not in proxyless.choices["block_12"]  # 80 -> 96 at stride 1: shapes differ
    shuffle = CnnSpace(CnnNasConfig(block_type="shufflenet"))
    assert len(shuffle.choices) == 20 and shuffle.size() == 4 ** 4 * 5 ** 16
    assert shuffle.choices["block_1"] == ("shuffle_k3", "shuffle_k5", "shuffle_k7", "xception", "skip")


@pytest.mark.parametrize("block_type", ["mbconv", "shufflenet"])
def test_full_size_params_and_flops_exact(block_type):
    """The ImageNet network at 224 x 224: the analytic counts equal the module and torch's FLOP counter."""
    space = CnnSpace(CnnNasConfig(block_type=block_type))
    arch = space.sample(7)
    model = CnnNasForImageClassification(CnnNasConfig(block_type=block_type, arch=list(arch.ops))).eval()
    assert space.params(arch) == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images(1, 224))
    assert space.flops(arch) == counter.get_total_flops()


@pytest.mark.parametrize("block_type", ["mbconv", "shufflenet"])
def test_tiny_params_and_flops_exact_for_many_archs(block_type):
    model, space = tiny(block_type)
    model.eval()
    for seed in range(6):
        arch = space.sample(seed)
        sub = model.extract(arch)
        assert space.params(arch) == sum(p.numel() for p in sub.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            sub(images(1))
        assert space.flops(arch) == counter.get_total_flops(), arch
    # FLOPs at another resolution
    arch = space.sample(0)
    sub = model.extract(arch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sub(images(1, 64))
    assert space.flops(arch, 64) == counter.get_total_flops()


@pytest.mark.parametrize("block_type", ["mbconv", "shufflenet"])
def test_forward_backward_one_hot_and_extract(block_type):
    model, space = tiny(block_type)
    assert dict(space_from_model(model).choices) == dict(space.choices)
    arch = space.sample(1)
    out = model(images(), labels=torch.tensor([0, 3]), arch=arch, output_hidden_states=True)
    assert out.logits.shape == (2, 5) and len(out.hidden_states) == 1 + len(space.choices)
    out.loss.backward()
    for (label, op), params in model.candidate_parameters().items():
        assert all((p.grad is not None) == (op == arch[label]) for _, p in params), (label, op)
    model.train()
    model(images(4, seed=3), arch=arch)  # BN statistics off their init
    model.eval()
    path = model(images(), arch=arch).logits
    one_hot = {label: F.one_hot(torch.tensor(space.choices[label].index(op)), len(space.choices[label])).float()
               for label, op in arch.items()}
    assert torch.equal(model(images(), arch_weights=one_hot).logits, path)
    assert torch.equal(model(images(), arch=arch.ops).logits, path)
    sub = model.extract(arch)
    assert type(sub) is type(model) and torch.equal(sub(images()).logits, path)
    with pytest.raises(ValueError, match="fixed"):
        sub(images(), arch=space.neighbour(arch, 1, 0))


def test_skip_and_residual():
    model, space = tiny("mbconv")
    model.eval()
    arch = space.sample(0)
    skipped = arch.replace(block_1="skip")
    x = images()
    hidden = model(x, arch=skipped, output_hidden_states=True).hidden_states
    assert torch.equal(hidden[2], hidden[1])  # block_1 left out
    assert model.blocks[1].ops["k3_e3"].residual and not model.blocks[2].ops["k3_e3"].residual


def test_vision_builder_options_and_fixed_arch():
    model, space = build_supernet({"block_type": "shufflenet", **{k: v for k, v in TINY["shufflenet"].items()
                                                                if k not in ("image_size", "num_labels")}},
                                  num_classes=10, image_shape=(3, 32, 32))
    assert model.config.num_labels == 10 and space.config.image_size == 32
    arch = space.sample(0)
    fixed, _ = build_supernet({"block_type": "shufflenet", **{k: v for k, v in TINY["shufflenet"].items()
                                                            if k not in ("image_size", "num_labels")}},
                              num_classes=10, arch=arch.to_list(), image_shape=(3, 32, 32))
    assert not fixed.is_supernet and sum(p.numel() for p in fixed.parameters()) == space.params(arch)
    with pytest.raises(ValueError, match="unknown cnn space_options"):
        build_supernet({"width": 3})


def test_export_reloads_in_a_fresh_process_without_bertnas(tmp_path):
    from test_darts import reload_in_fresh_process

    model, space = tiny("shufflenet")
    model.eval()
    sub = model.extract(space.sample(2))
    sub.save_pretrained(tmp_path / "export")
    assert (tmp_path / "export" / "configuration_cnn.py").exists()
    x = images()
    with torch.no_grad():
        expected = sub(x).logits
    assert reload_in_fresh_process(tmp_path / "export", x, expected, tmp_path) == 0.0
