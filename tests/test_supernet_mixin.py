"""Every space's supernet shares one mixin (`bertnas/models/supernet_mixin.py`): `is_supernet`,
`candidate_parameters` keyed `(label, candidate)`, `extract`, and `arch_weights` as a mapping
label -> weights."""

import pytest
import torch
from torch.nn import functional as F

from bertnas.models import (
    BertNasForMaskedLM,
    CnnNasConfig,
    CnnNasForImageClassification,
    DartsNasConfig,
    DartsNasForImageClassification,
    Nb201Config,
    Nb201ForImageClassification,
)
from bertnas.models.supernet_mixin import SupernetMixin
from bertnas.spaces import BertSpace, CnnSpace, DartsSpace, Nb201Space
from tests.conftest import toy_config


def _bert():
    model = BertNasForMaskedLM(toy_config())
    return model, BertSpace(model.config), {"input_ids": torch.randint(5, 120, (2, 7), generator=_gen())}


def _nb201():
    config = Nb201Config(init_channels=4, cells_per_stage=1, num_labels=5, image_size=8)
    return Nb201ForImageClassification(config), Nb201Space.from_config(config), {"pixel_values": _images(8)}


def _darts():
    config = DartsNasConfig(init_channels=4, num_cells=3, image_size=16, num_labels=5)
    return DartsNasForImageClassification(config), DartsSpace(config), {"pixel_values": _images(16)}


def _cnn():
    config = CnnNasConfig(block_type="shufflenet", stem_channels=8, stage_channels=[16, 32], stage_depths=[2, 2],
                          stage_strides=[2, 2], last_channels=32, image_size=32, num_labels=5)
    return CnnNasForImageClassification(config), CnnSpace(config), {"pixel_values": _images(32)}


def _gen():
    return torch.Generator().manual_seed(0)


def _images(size):
    return torch.randn(2, 3, size, size, generator=_gen())


def _output(out):
    return out.logits


SPACES = {"bert": _bert, "nb201": _nb201, "darts": _darts, "cnn": _cnn}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_candidate_parameters_have_one_key_shape_in_every_space(name):
    torch.manual_seed(0)
    model, space, _ = SPACES[name]()
    assert isinstance(model, SupernetMixin) and model.is_supernet
    found = model.candidate_parameters()
    # every key is (label, candidate) of the space; every candidate of every choice is there
    assert set(found) == {(label, c) for label, candidates in space.choices.items() for c in candidates}
    named = dict(model.named_parameters())
    listed = [n for params in found.values() for n, _ in params]
    assert len(listed) == len(set(listed)), "a parameter under two candidates"
    for (label, candidate), params in found.items():
        for qualified, p in params:
            assert named[qualified] is p and f".ops.{candidate}." in f".{qualified}", (label, candidate, qualified)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_extract_and_one_hot_mapping_are_the_path(name):
    torch.manual_seed(0)
    model, space, inputs = SPACES[name]()
    model.eval()
    arch = space.sample(3)
    with torch.no_grad():
        path = _output(model(**inputs, arch=arch))
        one_hot = {label: F.one_hot(torch.tensor(space.choices[label].index(arch[label])),
                                    len(space.choices[label])).float()
                   for label in space.choices if label not in space.input_choices}
        assert torch.equal(_output(model(**inputs, arch_weights=one_hot)), path)
        fixed = model.extract(arch)
        assert type(fixed) is type(model) and not fixed.is_supernet
        assert torch.equal(_output(fixed(**inputs)), path)
    # the fixed model's candidates are the path's: a subset of the supernet's keys
    assert set(fixed.candidate_parameters()) <= set(model.candidate_parameters())
    with pytest.raises(ValueError, match="unknown labels"):
        model(**inputs, arch_weights={**one_hot, "no_such_choice": torch.ones(2)})
