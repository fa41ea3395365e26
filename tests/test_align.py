import pytest

from bertnas import BertNasModel, BertSpace
from bertnas.align import Aligner
from tests.conftest import toy_config


@pytest.fixture
def setup(config, batch):
    config.num_hidden_layers = 4
    model = BertNasModel(config).eval()
    return model, BertSpace(config), batch


def test_block_ends():
    space = BertSpace(toy_config(num_hidden_layers=5))
    assert Aligner(space, ["ffn"] * 5, block_size=2).block_ends(5) == [2, 4, 5]
    assert Aligner(space, ["ffn"] * 5, block_size=1).block_ends(5) == [1, 2, 3, 4, 5]
    assert Aligner(space, ["ffn"] * 5, block_size=9).block_ends(5) == [5]


def test_align_loss_zero_on_base_positive_elsewhere_grad_only_on_path(setup):
    model, space, batch = setup
    base = ["mha12", "ffn", "mha12", "ffn"]
    aligner = Aligner(space, base, block_size=2)
    same = model(**batch, arch=base, output_hidden_states=True).hidden_states
    assert aligner.align_loss(model, batch, same).item() == 0.0
    assert aligner.align_loss(model, batch, same, arch=base).item() == 0.0
    model.train()
    other = ["conv3", "ffn", "mha6", "ffn_wide"]
    hidden = model(**batch, arch=other, output_hidden_states=True).hidden_states
    loss = aligner.align_loss(model, batch, hidden)
    assert loss.item() > 0 and model.training  # train mode restored after the eval-mode base forward
    loss.backward()
    layers = model.encoder.layers
    assert layers[0].ops["conv3"].pointwise.weight.grad is not None
    assert layers[0].ops["mha12"].query.weight.grad is None  # the base gets no gradient


def test_beat_replacement(setup):
    _, space, _ = setup
    scores = {("mha12", "ffn", "mha12", "ffn"): 2.0, ("conv3", "ffn", "conv3", "ffn"): 1.0,
              ("ffn", "ffn", "ffn", "ffn"): 3.0}
    evaluate = lambda arch: scores[arch.ops]  # noqa: E731
    aligner = Aligner(space, ["mha12", "ffn", "mha12", "ffn"], replacement="beat", every=5)
    assert not aligner.maybe_replace(3, evaluate, [["conv3", "ffn", "conv3", "ffn"]])  # not due
    assert not aligner.maybe_replace(5, evaluate, [["ffn"] * 4])  # worse: base kept
    assert aligner.base_arch.ops == ("mha12", "ffn", "mha12", "ffn") and aligner.base_score == 2.0
    assert aligner.maybe_replace(10, evaluate, [["conv3", "ffn", "conv3", "ffn"]])
    assert aligner.base_arch.ops == ("conv3", "ffn", "conv3", "ffn") and aligner.base_score == 1.0
    state = aligner.state_dict()
    fresh = Aligner(space, ["ffn"] * 4)
    fresh.load_state_dict(state)
    assert fresh.base_arch == aligner.base_arch and fresh.base_score == 1.0 and fresh.replacements == 1


def test_population_replacement_keeps_a_top_base(setup):
    _, space, _ = setup
    population = [space.arch([op, "ffn", op, "ffn"]) for op in ("mha6", "mha8", "conv3", "conv5", "ffn_wide",
                                                               "identity", "ffn", "mha12")][:7]
    base = ["mha12", "ffn", "mha12", "ffn"]
    ranks = {arch.ops: i for i, arch in enumerate(population)}  # lower index = better
    for base_score, expect_replace in ((1.5, False), (3.5, True)):
        # 2 of 7 better (29 % <= 30 % + 10 %): kept; 4 of 7 better (57 %): replaced by the best
        evaluate = lambda arch, s=base_score: s if arch.ops == tuple(base) else ranks[arch.ops]  # noqa: E731
        aligner = Aligner(space, base, replacement="population", every=1, top_p=0.3, tolerance=0.1)
        assert aligner.maybe_replace(1, evaluate, population) is expect_replace
        assert aligner.base_arch == (population[0] if expect_replace else space.arch(base))


def test_bad_options(setup):
    _, space, _ = setup
    with pytest.raises(ValueError, match="Unknown base replacement 'best'"):
        Aligner(space, ["ffn"] * 4, replacement="best")
    with pytest.raises(ValueError, match="Unknown candidate 'mha7'"):
        Aligner(space, ["mha7", "ffn", "ffn", "ffn"])
    with pytest.raises(ValueError, match="population must be >= 1"):
        Aligner(space, ["ffn"] * 4, replacement="population", population=0)
