"""Vision throughput mechanisms (issue 24; the speeds themselves are bench/bench_vision.py's):
avg_pool_3x3 as a box filter, whole-batch uint8 augmentation, channels_last == the default
layout, compiled candidate ops == eager ones and compiled once for every arch, exact resume of
the augmented batches."""

import hashlib
import json

import pytest
import torch
from torch import nn

from bertnas.models import Nb201Config, Nb201ForImageClassification
from bertnas.models.modeling_nb201 import AvgPool3x3, ReLUConvBN
from bertnas.spaces.nb201 import Nb201Space

from conftest import DATA_DIR

CIFAR = DATA_DIR / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
CL = torch.channels_last


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    config = Nb201Config(init_channels=4, cells_per_stage=1, num_labels=5, image_size=8)
    return Nb201ForImageClassification(config).train(), Nb201Space.from_config(config)


def _step(model, x, labels, arch):
    model.zero_grad(set_to_none=True)
    out = model(pixel_values=x, labels=labels, arch=arch, output_hidden_states=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_box_filter_pool_is_avg_pool_without_padding_counts():
    """AvgPool3x3 computes nn.AvgPool2d(3, 1, 1, count_include_pad=False) to float rounding
    (1e-6 here), values and input gradients, in both memory formats."""
    reference = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    for shape in ((2, 3, 5, 7), (4, 8, 8, 8), (1, 2, 1, 1)):
        for memory_format in (torch.contiguous_format, CL):
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(memory_format=memory_format)
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = AvgPool3x3()(a), reference(b)
            torch.testing.assert_close(ya, yb, rtol=0, atol=1e-6)
            g = torch.randn_like(ya)
            ya.backward(g), yb.backward(g)
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


def test_uint8_batch_augmentation_equals_the_float_one_and_keeps_channels_last():
    """augment() gathers the uint8 crops and converts once: the same values as converting first;
    channels_last returns the same values in NHWC memory; the generator's draws are the same."""
    from bertnas.tasks.vision import augment, normalise

    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    floats = augment(x.float() / 255.0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    ints = augment(x, g)
    assert torch.equal(ints, floats) and ints.is_contiguous()
    g2 = torch.Generator().manual_seed(3)
    nhwc = augment(x, g2, channels_last=True)
    assert torch.equal(nhwc, floats) and nhwc.is_contiguous(memory_format=CL)
    assert torch.equal(g.get_state(), g2.get_state())
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    a, b = normalise(ints, mean, std), normalise(nhwc, mean, std, channels_last=True)
    assert torch.equal(a, b) and b.is_contiguous(memory_format=CL) and a.is_contiguous()


def test_channels_last_step_equals_the_default_layout():
    """The same supernet path on NHWC and NCHW inputs: logits, loss, hidden states and every
    gradient agree to float32 rounding (rtol 1e-4, atol 1e-5: convolutions sum in another order
    and BatchNorm divides by small batch deviations)."""
    model, space = _tiny_model()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 4])
    for seed in range(3):
        arch = space.sample(seed)
        state = {k: v.clone() for k, v in model.state_dict().items()}  # BN running stats move per call
        a, ga = _step(model, x, labels, arch)
        model.load_state_dict(state)
        b, gb = _step(model, x.contiguous(memory_format=CL), labels, arch)
        assert b.hidden_states[-1].is_contiguous(memory_format=CL)  # stays NHWC end to end
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.loss, a.loss, rtol=1e-4, atol=1e-5)
        for ha, hb in zip(a.hidden_states, b.hidden_states):
            torch.testing.assert_close(hb, ha, rtol=1e-4, atol=1e-5)
        assert ga.keys() == gb.keys()
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_op_equals_the_eager_op():
    """One conv-BN candidate through torch.compile (inductor, the option's backend) against the
    eager module with the same weights: output, input and weight gradients and BatchNorm running
    statistics agree to rtol 1e-4, atol 1e-5 (the compiled kernels fuse and reorder float sums)."""
    from bertnas.tasks.vision import _COMPILED, compile_candidate_ops

    torch.manual_seed(0)
    eager = ReLUConvBN(4, 4, 3, 1, 1).train()
    compiled = ReLUConvBN(4, 4, 3, 1, 1).train()
    compiled.load_state_dict(eager.state_dict())
    holder = nn.Module()  # a choice module holding the op, as the supernets do
    holder.label, holder.candidates, holder.forward_mixed = "edge", ("nor_conv_3x3",), None
    holder.candidate_parameters, holder.ops = None, nn.ModuleDict({"nor_conv_3x3": compiled})
    assert compile_candidate_ops(holder) == 1 and (ReLUConvBN, "inductor") in _COMPILED
    assert compile_candidate_ops(holder) == 0  # wrapped once
    x = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = eager(a), compiled(b)
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g), yb.backward(g)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.conv.weight.grad, eager.conv.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.bn.running_var, eager.bn.running_var, rtol=1e-4, atol=1e-5)
    assert compiled.bn.num_batches_tracked == eager.bn.num_batches_tracked == 1
    compiled.load_state_dict(eager.state_dict())
    with torch.no_grad():  # scoring runs the eager forward: bit-identical on the same weights
        assert torch.equal(compiled.eval()(x), eager.eval()(x))


def test_compiled_supernet_compiles_once_for_every_arch():
    """compile_candidate_ops: one graph per op class and shape (2 conv kinds x 3 stages), none
    more however many archs train (backend aot_eager: dynamo + autograd tracing, no C++ build),
    and every path's step equals the eager supernet's (rtol 1e-4, atol 1e-5)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from bertnas.tasks.vision import compile_candidate_ops

    torch._dynamo.reset()
    counters.clear()
    model, space = _tiny_model()
    eager, _ = _tiny_model()
    assert compile_candidate_ops(model, backend="aot_eager") == 2 * 6 * 3  # conv ops x edges x cells
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 4])
    archs = [space.sample(seed) for seed in range(12)]
    archs.append(space.arch(["nor_conv_1x1", "nor_conv_3x3"] * 3))  # both kinds in every stage
    for arch in archs:
        a, ga = _step(eager, x, labels, arch)
        b, gb = _step(model, x, labels, arch)
        torch.testing.assert_close(b.loss, a.loss, rtol=1e-4, atol=1e-5)
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-5, msg=name)
    assert counters["stats"]["unique_graphs"] == 2 * 3
    torch._dynamo.reset()


def _need_cifar():
    if not CIFAR.is_file():
        pytest.skip(f"{CIFAR} is absent (set BERTNAS_DATA_DIR to the shared data folder)")


def test_resume_replays_the_same_augmented_batches(tmp_path):
    """SPOS with augmentation, channels_last: a run resumed after 2 of 5 steps sees the same
    augmented batches (hashes of the model's inputs) and logs the same losses as one run."""
    _need_cifar()
    from bertnas.pipelines.pretrain import pretrain
    from bertnas.storage.logs import read_log
    from bertnas.tasks.vision import ClassificationTask

    class Recording(ClassificationTask):
        seen: list = []

        def inputs(self, pixel_values, generator=None):
            x = super().inputs(pixel_values, generator)
            if generator is not None:  # a training batch (held-out ones are not augmented)
                assert x.is_contiguous(memory_format=CL)
                Recording.seen.append(hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest())
            return x

    def options(name, **kw):
        return dict(space="nb201", data=str(CIFAR), output_dir=str(tmp_path / name), max_steps=5, save_steps=2,
                    keep_last=3, batch_size=8, eval_batches=1, lr=1e-3, warmup_steps=1, sampler="uniform",
                    progress=False, seed=3, val_fraction=0.01,
                    space_options={"C": 4, "N": 1, "calibration_batches": 1, "channels_last": True}, **kw)

    pretrain(options("full"), task=Recording())
    full, full_batches = read_log(tmp_path / "full" / "log.jsonl"), list(Recording.seen)
    assert len(full_batches) == 5 and len(set(full_batches)) == 5
    Recording.seen.clear()
    (tmp_path / "part").mkdir()
    import shutil

    shutil.copytree(tmp_path / "full" / "checkpoint-00000002", tmp_path / "part" / "checkpoint-00000002")
    pretrain(options("part", resume_from_checkpoint="latest"), task=Recording())
    resumed = read_log(tmp_path / "part" / "log.jsonl")
    assert Recording.seen == full_batches[2:]
    assert [(r["step"], r["loss"], r["arch"]) for r in resumed] == [(r["step"], r["loss"], r["arch"]) for r in full[2:]]
    state = json.loads((tmp_path / "full" / "checkpoint-00000004" / "state.json").read_text())
    assert state["config"]["space_options"]["channels_last"] is True
