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
