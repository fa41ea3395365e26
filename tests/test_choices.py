import pytest
import torch
from torch import nn

from bertnas.spaces.choices import InputChoice, LayerChoice, choice_modules, space_from_model
from bertnas.spaces import InputChoice as InputChoiceSpec


class Scaled(nn.Module):
    """An op with a keyword argument, to check that kwargs reach the candidates."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, scale=1.0):
        return scale * torch.tanh(self.proj(x))


def _layer(dim=6, label="edge"):
    torch.manual_seed(0)
    return LayerChoice(
        {"lin": nn.Linear(dim, dim), "mlp": nn.Sequential(nn.Linear(dim, 9), nn.GELU(), nn.Linear(9, dim)),
         "skip": nn.Identity(), "scaled": Scaled(dim)},
        label=label,
    )


def test_layer_choice_single_path_and_one_hot_exactness():
    layer, x = _layer(), torch.randn(3, 5, 6)
    assert layer.candidates == ("lin", "mlp", "skip", "scaled")
    assert torch.equal(layer(x, op="skip"), x)
    for i, name in enumerate(layer.candidates):
        weights = torch.zeros(4)
        weights[i] = 1.0
        assert torch.equal(layer.forward_mixed(x, weights=weights), layer(x, op=name)), name
    assert torch.equal(layer(x, op="scaled", scale=0.5), 0.5 * layer(x, op="scaled"))
    both = LayerChoice({"a": Scaled(6), "b": Scaled(6)}, label="kw")  # keyword args reach every candidate
    assert torch.equal(both.forward_mixed(x, weights=torch.tensor([0.0, 1.0]), scale=3.0), both(x, op="b", scale=3.0))
    with pytest.raises(ValueError, match="LayerChoice 'edge' has no candidate 'conv'; candidates: lin, mlp, skip, scaled"):
        layer(x, op="conv")
    with pytest.raises(ValueError, match=r"one entry per candidate \(4: lin, mlp, skip, scaled\), got shape \(3,\)"):
        layer.forward_mixed(x, weights=torch.ones(3))


def test_layer_choice_mixed_gradient_reaches_weights():
    layer, x = _layer(), torch.randn(2, 6)
    alpha = torch.randn(4, requires_grad=True)
    weights = torch.softmax(alpha, 0)
    out = layer.forward_mixed(x, weights=weights)
    outputs = [layer(x, op=name) for name in layer.candidates]
    assert torch.allclose(out, sum(w * o for w, o in zip(weights, outputs)))
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    # d/dw_o <sum_o w_o op_o(x), g> = <op_o(x), g>, chained through the softmax
    direct = torch.stack([(o * upstream).sum() for o in outputs]).detach()
    softmax_jacobian = torch.diag(weights) - torch.outer(weights, weights)
    assert torch.allclose(alpha.grad, softmax_jacobian.detach() @ direct, atol=1e-6)
    assert all(p.grad is not None for p in layer.parameters())


def test_candidate_parameters_match_named_parameters():
    model = nn.Module()
    model.block = nn.Module()
    model.block.choice = _layer()
    params = model.block.choice.candidate_parameters(prefix="block.choice.")
    assert list(params) == ["lin", "mlp", "skip", "scaled"] and params["skip"] == []
    assert [n for n, _ in params["scaled"]] == ["block.choice.ops.scaled.proj.weight", "block.choice.ops.scaled.proj.bias"]
    named = dict(model.named_parameters())
    flat = [(n, p) for group in params.values() for n, p in group]
    assert len(flat) == len(named) and all(named[n] is p for n, p in flat)
    assert [n for n, _ in _layer().candidate_parameters()["lin"]] == ["ops.lin.weight", "ops.lin.bias"]


def test_input_choice_single_path_mixed_and_errors():
    choice = InputChoice(4, n_chosen=2, label="node_2")
    assert choice.candidates == ("0", "1", "2", "3") and choice.candidate_parameters() == {c: [] for c in "0123"}
    inputs = [torch.randn(2, 3, dtype=torch.float64) for _ in range(4)]
    for chosen in (("1", "3"), ["3", "1"], [1, 3], ("3", 1)):
        assert torch.equal(choice(inputs, chosen=chosen), inputs[1] + inputs[3])
    two_hot = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.equal(choice.forward_mixed(inputs, weights=two_hot), choice(inputs, chosen=("1", "3")))
    weights = torch.rand(4, dtype=torch.float64, requires_grad=True)
    choice.forward_mixed(inputs, weights=weights).sum().backward()
    assert torch.allclose(weights.grad, torch.stack([x.sum() for x in inputs]))
    with pytest.raises(ValueError, match=r"picks 2 distinct inputs, got \['1', '1'\]"):
        choice(inputs, chosen=["1", "1"])
    with pytest.raises(ValueError, match=r"picks 2 distinct inputs, got \['1'\]"):
        choice(inputs, chosen=["1"])
    with pytest.raises(ValueError, match="has no candidate '7'; candidates: 0, 1, 2, 3"):
        choice(inputs, chosen=["1", "7"])
    with pytest.raises(ValueError, match="takes 4 inputs, got 3"):
        choice(inputs[:3], chosen=["0", "1"])
    with pytest.raises(ValueError, match="n_chosen=3 must be between 1 and 2"):
        InputChoice(["a", "b"], n_chosen=3, label="x")
    named = InputChoice(["prev", "prev_prev"], n_chosen=1, label="n")
    assert torch.equal(named(inputs[:2], chosen=["prev_prev"]), inputs[1])


class Cell(nn.Module):
    """A toy cell written as an ordinary module: node 2 keeps 2 of its inputs, then one op."""

    def __init__(self):
        super().__init__()
        self.node_2 = InputChoice(["0", "1", "2"], n_chosen=2, label="node_2")
        self.op = LayerChoice({"lin": nn.Linear(4, 4), "skip": nn.Identity()}, label="op")

    def forward(self, inputs, arch):
        return self.op(self.node_2(inputs, chosen=arch["node_2"]), op=arch["op"])


def test_choice_modules_and_space_from_model():
    model = nn.Sequential(Cell(), Cell())  # two cells share their choices by label
    modules = choice_modules(model)
    assert list(modules) == ["node_2", "op"] and modules["op"] is model[0].op
    space = space_from_model(model)
    assert space.choices == {"node_2": ("0", "1", "2"), "op": ("lin", "skip")}
    assert space.n_chosen == {"node_2": 2, "op": 1} and space.input_choices == {"node_2"} and space.size() == 6
    arch = space.arch({"node_2": ["2", "0"], "op": "skip"})
    inputs = [torch.randn(1, 4) for _ in range(3)]
    assert torch.equal(model[0](inputs, arch), inputs[0] + inputs[2])
    clash = nn.Sequential(Cell(), LayerChoice({"lin": nn.Linear(4, 4)}, label="op"))
    with pytest.raises(ValueError, match="Choice modules labelled 'op' disagree"):
        choice_modules(clash)
    with pytest.raises(ValueError, match="has no choice modules"):
        space_from_model(nn.Linear(2, 2))
    assert isinstance(InputChoiceSpec(["0"], 1), InputChoiceSpec)
