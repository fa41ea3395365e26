import json
import random

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import bertnas
from bertnas.spaces import Arch, BertSpace, SearchSpace


def test_arch_json_roundtrip_and_hash():
    a = Arch([("layer_0", "mha12"), ("layer_1", "ffn")])
    b = Arch.from_json(a.to_json())
    assert a == b and hash(a) == hash(b)
    assert a.ops == ("mha12", "ffn")
    assert len({a, b, a.replace(layer_1="conv3")}) == 2
    assert json.loads(a.to_json()) == {"layer_0": "mha12", "layer_1": "ffn"}


def test_space_validation_errors(config):
    space = BertSpace(config)
    assert space.arch(["mha12", "ffn"]) == space.arch({"layer_0": "mha12", "layer_1": "ffn"})
    assert space.arch('["conv3", "ffn"]').ops == ("conv3", "ffn")
    with pytest.raises(ValueError, match="Unknown candidate 'mha7' for layer_0; allowed: mha6"):
        space.arch(["mha7", "ffn"])
    with pytest.raises(ValueError, match="3 entries but the space has 2 choices"):
        space.arch(["mha12", "ffn", "ffn"])
    with pytest.raises(ValueError, match="missing \\['layer_1'\\]"):
        space.arch({"layer_0": "ffn"})
    with pytest.raises(ValueError, match="must be a string"):
        space.arch(["ffn", 3])


def test_sample_neighbour_size_enumerate():
    space = SearchSpace({"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["only"]})
    assert space.size() == 6
    archs = list(space.enumerate())
    assert len(archs) == 6 and len(set(archs)) == 6
    rng = random.Random(0)
    seen = {space.sample(rng) for _ in range(200)}
    assert seen == set(archs)
    base = archs[0]
    for k in (0, 1, 2):
        for _ in range(50):
            n = space.neighbour(base, k, rng)
            assert sum(base[c] != n[c] for c in base) == k
    with pytest.raises(ValueError, match="k=3 layers cannot change"):
        space.neighbour(base, 3, rng)
    with pytest.raises(ValueError, match="more than limit"):
        list(SearchSpace({f"l{i}": ["a", "b"] for i in range(30)}).enumerate())


def test_sampling_is_seeded(config):
    space = BertSpace(config)
    assert [space.sample(random.Random(3)) for _ in range(3)] == [space.sample(random.Random(3)) for _ in range(3)]


@pytest.mark.parametrize("op", bertnas.DEFAULT_CANDIDATES + ("identity",))
def test_params_and_flops_match_real_modules(op):
    from tests.conftest import toy_config

    config = toy_config(num_hidden_layers=3)
    space = BertSpace(config)
    arch = [op, "ffn", op]
    model = bertnas.BertNasModel(config, add_pooling_layer=False).extract(arch).eval()
    assert space.params(arch) == sum(p.numel() for p in model.parameters())
    assert space.params(arch, include_embeddings=False) == sum(
        p.numel() for p in model.encoder.parameters()
    )
    for seq_len in (7, 16):
        ids = torch.randint(1, config.vocab_size, (1, seq_len))
        # The math SDPA backend decomposes attention into bmm, which the FLOP counter sees.
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            model(ids)
        assert space.flops(arch, seq_len) == counter.get_total_flops()


def test_bert_arch(config):
    assert BertSpace(config).bert_arch().ops == ("mha12", "ffn")


# -- input choices ----------------------------------------------------------------------
from collections import Counter  # noqa: E402
from math import comb  # noqa: E402

from bertnas.spaces import InputChoice  # noqa: E402

CELL = SearchSpace({
    "op_0": ["conv3", "skip", "pool"],
    "node_2": InputChoice(["0", "1", "2", "3"], n_chosen=2),
    "node_3": InputChoice(["0", "1"], n_chosen=2),  # C(2, 2) = 1: never changes
    "node_4": InputChoice(["0", "1", "2"], n_chosen=1),
})


def test_layer_only_spaces_draw_as_before():
    """Golden values from the implementation before input choices: same seed, same archs."""
    space = SearchSpace({"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["only"], "d": ["p", "q", "r", "s"]})
    rng = random.Random(2024)
    assert [space.sample(rng).ops for _ in range(3)] == [
        ("y", "x", "only", "q"), ("z", "y", "only", "q"), ("z", "y", "only", "s")]
    start = space.arch(["x", "x", "only", "p"])
    assert [space.neighbour(start, 2, rng).ops for _ in range(3)] == [
        ("z", "x", "only", "r"), ("y", "x", "only", "s"), ("x", "y", "only", "s")]
    assert space.n_chosen == {"a": 1, "b": 1, "c": 1, "d": 1} and not space.input_choices


def test_input_choice_declaration():
    assert CELL.choices["node_2"] == ("0", "1", "2", "3") and CELL.n_chosen["node_2"] == 2
    assert CELL.n_chosen["op_0"] == 1 and CELL.input_choices == {"node_2", "node_3", "node_4"}
    assert CELL.mutable_choices() == ["op_0", "node_2", "node_4"]
    with pytest.raises(ValueError, match="n_chosen=3 must be between 1 and 2"):
        SearchSpace({"n": InputChoice(["0", "1"], n_chosen=3)})
    with pytest.raises(ValueError, match="lists a candidate twice"):
        SearchSpace({"n": InputChoice(["0", "0"], n_chosen=1)})
    with pytest.raises(ValueError, match="not the string 'abc'"):
        SearchSpace({"n": "abc"})


def test_input_choice_validation_and_canonical_order():
    arch = CELL.arch({"op_0": "skip", "node_2": ["3", "1"], "node_3": ("1", "0"), "node_4": ["2"]})
    assert arch["node_2"] == ("1", "3") and arch["node_3"] == ("0", "1") and arch["node_4"] == ("2",)
    assert CELL.arch(["skip", ["1", "3"], ["0", "1"], ["2"]]) == arch
    assert CELL.arch(arch.to_json()) == arch == CELL.arch(arch)
    with pytest.raises(ValueError, match=r"node_2 picks exactly 2 of 0, 1, 2, 3, got 1: \['1'\]"):
        CELL.arch(["skip", ["1"], ["0", "1"], ["2"]])
    with pytest.raises(ValueError, match=r"node_2 picks \['1'\] twice"):
        CELL.arch(["skip", ["1", "1"], ["0", "1"], ["2"]])
    with pytest.raises(ValueError, match="Unknown candidate '7' for node_2; allowed: 0, 1, 2, 3"):
        CELL.arch(["skip", ["1", "7"], ["0", "1"], ["2"]])
    with pytest.raises(ValueError, match="input choice node_4 must be a list of 1 names out of 0, 1, 2"):
        CELL.arch(["skip", ["1", "2"], ["0", "1"], "2"])
    with pytest.raises(ValueError, match="Arch entry for op_0 must be a string"):
        CELL.arch([["skip"], ["1", "2"], ["0", "1"], ["2"]])
    assert not CELL.contains(["skip", [1, 2], ["0", "1"], ["2"]])


def test_mixed_arch_json_roundtrip_and_hash():
    arch = CELL.arch(["pool", ["0", "2"], ["0", "1"], ["1"]])
    assert json.loads(arch.to_json()) == {"op_0": "pool", "node_2": ["0", "2"], "node_3": ["0", "1"], "node_4": ["1"]}
    back = Arch.from_json(arch.to_json())
    assert back == arch and hash(back) == hash(arch) and back.ops == arch.ops
    assert arch.to_list() == ["pool", ["0", "2"], ["0", "1"], ["1"]]
    assert arch.replace(node_2=["2", "3"])["node_2"] == ("2", "3")
    assert Arch({"n": ["a", "b"]}) == Arch([("n", ("a", "b"))])  # lists become tuples: hashable
    with pytest.raises(ValueError, match="pairs of strings"):
        Arch({"n": ["a", 1]})


def test_enumerate_counts_every_subset_once():
    expected = 3 * comb(4, 2) * comb(2, 2) * comb(3, 1)
    archs = list(CELL.enumerate())
    assert CELL.size() == expected == len(archs) == len(set(archs)) == 54
    assert all(CELL.arch(a) == a for a in archs)  # canonical and valid
    assert {a["node_2"] for a in archs} == {("0", "1"), ("0", "2"), ("0", "3"), ("1", "2"), ("1", "3"), ("2", "3")}


def _chi_square(counts: Counter, cells: list, draws: int) -> float:
    expected = draws / len(cells)
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in cells)


def test_sample_is_uniform_over_subsets():
    """18 equally likely (op, pair) cells; chi-square with 17 degrees of freedom, whose
    99.9999 % quantile is ~ 58. The same test rejects a plausible wrong subset sampler (first
    input uniform, second uniform among the later ones) by a wide margin."""
    space = SearchSpace({"op": ["a", "b", "c"], "pair": InputChoice(["0", "1", "2", "3"], n_chosen=2)})
    draws = 36_000
    rng = random.Random(1)
    counts = Counter((a["op"], a["pair"]) for a in (space.sample(rng) for _ in range(draws)))
    cells = [(a["op"], a["pair"]) for a in space.enumerate()]
    assert len(cells) == 18 and set(counts) == set(cells)
    assert _chi_square(counts, cells, draws) < 58

    def wrong(rng):
        first = rng.randrange(3)
        return rng.choice("abc"), (str(first), str(rng.randrange(first + 1, 4)))

    assert _chi_square(Counter(wrong(rng) for _ in range(draws)), cells, draws) > 1000


def test_neighbour_changes_exactly_k_choices_with_input_swaps():
    rng = random.Random(5)
    for k in (0, 1, 2, 3):
        for _ in range(200):
            base = CELL.sample(rng)
            other = CELL.neighbour(base, k, rng)
            changed = [c for c in base if base[c] != other[c]]
            assert len(changed) == k and "node_3" not in changed
            assert CELL.arch(other) == other  # canonical, valid
            for c in changed:
                if c in CELL.input_choices:  # one name swapped for one not chosen
                    assert len(set(base[c]) & set(other[c])) == CELL.n_chosen[c] - 1
    with pytest.raises(ValueError, match="k=4 layers cannot change"):
        CELL.neighbour(CELL.sample(rng), 4, rng)
    # every neighbouring subset is reached: 2 chosen x 2 not chosen swaps
    space = SearchSpace({"pair": InputChoice(["0", "1", "2", "3"], n_chosen=2)})
    start = space.arch([["0", "1"]])
    reached = Counter(space.neighbour(start, 1, rng)["pair"] for _ in range(4000))
    assert set(reached) == {("0", "2"), ("0", "3"), ("1", "2"), ("1", "3")}
    assert min(reached.values()) > 850  # 1000 expected each


def test_json_dumps_of_an_arch_round_trips_with_the_results_list_form():
    import copy
    import pickle

    space = SearchSpace({"layer_0": ["mha12", "ffn"], "node_2": InputChoice(["0", "1", "2"], 2)})
    arch = space.arch({"layer_0": "ffn", "node_2": ["2", "0"]})
    assert json.loads(json.dumps(arch)) == {"layer_0": "ffn", "node_2": ["0", "2"]}
    assert space.arch(json.loads(json.dumps(arch))) == arch == space.arch(arch.to_list())  # results.json form
    assert copy.deepcopy(arch) == arch == pickle.loads(pickle.dumps(arch))
    with pytest.raises(TypeError, match="immutable"):
        arch["layer_0"] = "mha12"
