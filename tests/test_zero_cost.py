"""Zero-cost proxies: hand-computed values on tiny networks (a changed definition fails here),
and every proxy on every space (NB201, DARTS cell, CNN chain, BERT chain)."""

import math
import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bertnas.analysis.zero_cost import (JACOB_K, PROXIES, ProxyModel, ZeroCostScorer, grad_norm, grasp, jacob_cov,
                                        nwot, snip, synflow, zen)


class Tiny(nn.Module):
    """x -> W1 (-> ReLU) -> W2, no biases; `relu` False: a linear chain."""

    def __init__(self, w1, w2=None, relu=True):
        super().__init__()
        self.l1 = nn.Linear(len(w1[0]), len(w1), bias=False)
        self.l1.weight.data = torch.tensor(w1, dtype=torch.float32)
        self.l2 = None
        if w2 is not None:
            self.l2 = nn.Linear(len(w2[0]), len(w2), bias=False)
            self.l2.weight.data = torch.tensor(w2, dtype=torch.float32)
        self.relu = relu

    def forward(self, pixel_values, output_hidden_states=False, return_dict=True):
        h = self.l1(pixel_values.to(self.l1.weight.dtype))
        if self.relu:
            h = F.relu(h)
        out = self.l2(h) if self.l2 is not None else h
        return SimpleNamespace(logits=out, hidden_states=(h,))


def batch(x, labels):
    return {"pixel_values": torch.tensor(x, dtype=torch.float32), "labels": torch.tensor(labels)}


# One linear layer W = [[1, 0], [0, 0]], one item x = [1, 2], label 1, cross-entropy:
# logits [1, 0], p = softmax = [e / (e + 1), 1 / (e + 1)], dL/dW = (p - onehot(1)) x^T.
P0 = math.e / (math.e + 1)
P1 = 1 / (math.e + 1)


def one_layer():
    return ProxyModel(Tiny([[1.0, 0.0], [0.0, 0.0]], relu=False), batch([[1.0, 2.0]], [1]))


def test_snip_and_grad_norm_by_hand():
    # dL/dW = [[p0, 2 p0], [-p0, -2 p0]]: |W * g| sums to p0; its norm is p0 sqrt(10)
    assert snip(one_layer()) == pytest.approx(P0, rel=1e-5)
    assert grad_norm(one_layer()) == pytest.approx(P0 * math.sqrt(10), rel=1e-5)


def test_grasp_by_hand():
    # H g = S (g x) x^T with S = p0 p1 [[1, -1], [-1, 1]] (the softmax Hessian) and g x = |x|^2 (p - y):
    # (H g)_00 = 2 p0^2 p1 |x|^2 x_0, and only W_00 is non-zero: grasp = -W_00 (H g)_00
    assert grasp(one_layer()) == pytest.approx(-2 * P0 ** 2 * P1 * 5 * 1, rel=1e-4)


def test_synflow_by_hand():
    # |W1| 1 = [3, 7]; |W2| [3, 7] = [10, 17]; R = 27. A linear chain of L layers has synflow L * R.
    pm = ProxyModel(Tiny([[1.0, -2.0], [3.0, 4.0]], [[1.0, 1.0], [-1.0, 2.0]]), batch([[5.0, -3.0]], [0]))
    assert synflow(pm) == pytest.approx(54.0)
    assert pm.model.l1.weight[0, 1].item() == -2.0  # the model itself is untouched (signs kept)


def test_synflow_drops_batchnorm():
    class WithBN(Tiny):
        def __init__(self):
            super().__init__([[2.0]], [[3.0]], relu=False)
            self.bn = nn.BatchNorm1d(1)

        def forward(self, pixel_values, output_hidden_states=False, return_dict=True):
            h = self.bn(self.l1(pixel_values))
            return SimpleNamespace(logits=self.l2(h), hidden_states=(h,))

    # without BN: R = 2 * 3 = 6, two layers: 12 (a BN on one all-ones item would give 0)
    assert synflow(ProxyModel(WithBN(), batch([[1.0], [2.0]], [0, 0]))) == pytest.approx(12.0)


def test_jacob_cov_by_hand():
    # a linear map has the same input Jacobian for every item: correlation matrix all ones,
    # eigenvalues {0, 2}
    pm = ProxyModel(Tiny([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]], relu=False), batch([[1, 2, 3], [4, 5, 6]], [0, 1]))
    expected = -sum(math.log(v + JACOB_K) + 1 / (v + JACOB_K) for v in (0.0, 2.0))
    assert jacob_cov(pm) == pytest.approx(expected, rel=1e-6)


def test_nwot_by_hand():
    # codes of the ReLU input (identity W1): [1, 0], [1, 1], [0, 0]; K_ij = units where items i and j
    # agree = [[2, 1, 1], [1, 2, 0], [1, 0, 2]], det 4
    pm = ProxyModel(Tiny([[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0]]), batch([[1, -1], [1, 1], [-1, -1]], [0, 0, 0]))
    assert nwot(pm) == pytest.approx(math.log(4.0))


def test_zen_is_seeded_and_reads_the_last_hidden_state():
    pm = ProxyModel(Tiny([[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0]]), batch([[1, -1], [1, 1], [-1, -1]], [0, 0, 0]))
    a = zen(pm, torch.Generator().manual_seed(0))
    assert a == zen(pm, torch.Generator().manual_seed(0))
    assert math.isfinite(a) and a != zen(pm, torch.Generator().manual_seed(1))
    assert pm.model.l1.weight[0, 0].item() == 1.0  # Gaussian weights went to a copy


# -- every space ------------------------------------------------------------------------------


def vision_batch(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(n, 3, size, size, generator=g), "labels": torch.randint(0, 5, (n,), generator=g)}


def check_all(model, space, batches, arch=None):
    scorer = ZeroCostScorer(model, space, batches, seed=0)
    arch = arch if arch is not None else space.sample(random.Random(1))
    values = scorer.score(arch)
    assert list(values) == list(PROXIES)
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    assert set(finite) == set(PROXIES), values
    assert values == scorer.score(arch)  # seeded: the same numbers again
    return values


def test_every_proxy_on_nb201():
    from bertnas.tasks.vision import build_nb201

    torch.manual_seed(0)
    model, space = build_nb201({"C": 4, "N": 1}, 5)
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    values = check_all(model, space, [vision_batch()], arch)
    assert values["params"] == space.params(space.arch(arch)) and values["flops"] == space.flops(space.arch(arch))
    empty = ZeroCostScorer(model, space, [vision_batch()]).score("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert empty["synflow"] == 0.0 and empty["snip"] == 0.0  # a cut-off cell: no signal through it


def test_every_proxy_on_darts_and_cnn():
    from bertnas.spaces.cnn import build_supernet as cnn
    from bertnas.spaces.darts import build_supernet as darts

    torch.manual_seed(0)
    model, space = darts({"C": 4, "layers": 3, "steps": 2}, 5, image_shape=(3, 16, 16))
    check_all(model, space, [vision_batch()])
    model, space = cnn({"stem_channels": 8, "first_block_channels": 8, "stage_channels": [8, 16],
                        "stage_depths": [1, 1], "stage_strides": [1, 2], "last_channels": 16}, 5,
                       image_shape=(3, 16, 16))
    check_all(model, space, [vision_batch()])


def test_every_proxy_on_the_bert_chain(config, batch):
    import bertnas

    torch.manual_seed(0)
    model = bertnas.BertNasForMaskedLM(config)
    from bertnas.spaces.bert import BertSpace

    space = BertSpace(config)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2] = batch["input_ids"][:, 2]  # one masked token per row: the MLM objective
    values = check_all(model, space, [{**batch, "labels": labels}], space.arch(["mha12", "ffn"]))
    assert values["params"] == space.params(space.arch(["mha12", "ffn"]))
