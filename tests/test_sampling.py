import json
import math
import random
from collections import Counter

import pytest
import torch

from bertnas.supernet.sampling import (
    SAMPLERS,
    ConstantSampler,
    Sampler,
    UniformSampler,
    WalkSampler,
    arch_hash,
    assert_same_arch,
    build_sampler,
    register_sampler,
)
from bertnas.spaces import InputChoice, SearchSpace

TINY = SearchSpace({f"layer_{i}": ["a", "b", "c"] for i in range(3)})  # 27 archs


@pytest.mark.parametrize("k", [1, 2, 3])
def test_walk_changes_exactly_k_layers(k):
    start = TINY.arch(["b", "c", "a"])
    sampler = WalkSampler(TINY, seed=0, k=k, start=start)
    prev = sampler.next()
    assert prev == start
    for _ in range(200):
        arch = sampler.next()
        assert sum(prev[c] != arch[c] for c in arch) == k
        prev = arch


def _tv_to_uniform(archs) -> float:
    counts = Counter(archs)
    n, size = len(archs), TINY.size()
    return 0.5 * sum(abs(counts.get(a, 0) / n - 1 / size) for a in TINY.enumerate())


def test_walk_mixes_towards_uniform_within_the_bound():
    """d_TV(pi_t, uniform) <= exp(-t/N + ln N) = N exp(-t/N), checked empirically from a fixed start.

    METHODS §3 prints the exponent as `- ln N`, but its own corollary (eps-close after
    t >= N ln N + N ln(1/eps) steps) needs `+ ln N`; `- ln N` fails already at t = 1 (one step
    from a point reaches only 6 of 27 archs here: d_TV = 0.78 > e^(-1/3) / 3 = 0.24)."""
    n_layers, walks = 3, 4000
    start = TINY.arch(["a", "a", "a"])
    noise = 0.5 * math.sqrt(TINY.size() / walks)  # sampling error of the empirical TV distance
    distances = []
    for t in (1, 3, 8, 20):
        ends = []
        for w in range(walks):
            sampler = WalkSampler(TINY, seed=w, start=start)
            for _ in range(t + 1):  # the first draw is the start itself
                arch = sampler.next()
            ends.append(arch)
        d = _tv_to_uniform(ends)
        bound = math.exp(-t / n_layers + math.log(n_layers))
        assert d <= bound + noise, (t, d, bound)
        distances.append(d)
    assert distances[0] > distances[1] > distances[2]
    assert distances[-1] <= noise  # mixed: indistinguishable from uniform at this sample size
    uniform = UniformSampler(TINY, seed=1)
    assert _tv_to_uniform([uniform.next() for _ in range(walks)]) <= noise


@pytest.mark.parametrize("name", ["uniform", "walk"])
def test_state_dict_resumes_the_same_stream(name):
    a = build_sampler(name, TINY, seed=3)
    for _ in range(5):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))  # JSON-serialisable
    expected = [a.next() for _ in range(10)]
    b = build_sampler(name, TINY, seed=99)
    b.load_state_dict(state)
    assert [b.next() for _ in range(10)] == expected


def test_same_seed_same_archs_and_bad_inputs():
    assert [WalkSampler(TINY, 7).next() for _ in range(3)] == [WalkSampler(TINY, 7).next() for _ in range(3)]
    with pytest.raises(ValueError, match="Unknown sampler 'spos'"):
        build_sampler("spos", TINY, 0)
    with pytest.raises(ValueError, match="walk k=4 must be between 1 and"):
        WalkSampler(TINY, 0, k=4)
    with pytest.raises(ValueError, match="resume with the same --sampler"):
        WalkSampler(TINY, 0).load_state_dict(UniformSampler(TINY, 0).state_dict())


class FakeAccelerator:
    def __init__(self, hashes):
        self.num_processes, self.device, self.hashes = len(hashes), torch.device("cpu"), hashes

    def gather(self, tensor):
        return torch.tensor(self.hashes)


def test_assert_same_arch_detects_desync():
    arch = TINY.sample(random.Random(0))
    other = TINY.neighbour(arch, 1, random.Random(0))
    assert_same_arch(arch, FakeAccelerator([arch_hash(arch)] * 2))
    with pytest.raises(RuntimeError, match=r"\[\[0, 2\], \[1\]\]"):
        assert_same_arch(arch, FakeAccelerator([arch_hash(arch), arch_hash(other), arch_hash(arch)]))


# -- registry, constant sampler, feedback, input-choice spaces ---------------------------
CELL = SearchSpace({
    "op": ["conv3", "skip", "pool"],
    "node_2": InputChoice(["0", "1", "2", "3"], n_chosen=2),
    "node_3": InputChoice(["0", "1", "2"], n_chosen=1),
})


def test_layer_only_streams_are_unchanged():
    """Golden values from the samplers before the registry and input choices."""
    space = SearchSpace({"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["only"], "d": ["p", "q", "r", "s"]})
    uniform, walk = build_sampler("uniform", space, 5, k=1), build_sampler("walk", space, 5, k=1)
    assert [uniform.next().ops for _ in range(3)] == [
        ("z", "y", "only", "p"), ("y", "x", "only", "q"), ("x", "y", "only", "q")]
    assert [walk.next().ops for _ in range(4)] == [
        ("z", "y", "only", "p"), ("z", "x", "only", "p"), ("z", "x", "only", "q"), ("x", "x", "only", "q")]
    assert arch_hash(space.arch(["z", "y", "only", "s"])) == 9116417786319338530


def test_registry_and_options():
    assert {"uniform", "walk", "constant"} <= set(SAMPLERS)
    assert type(build_sampler("uniform", TINY, 0, k=2, start=None)) is UniformSampler  # the trainer passes k always
    assert build_sampler("walk", TINY, 0, k=2).k == 2
    with pytest.raises(ValueError, match=r"Unknown sampler 'spos'; known: constant, .*uniform, walk"):
        build_sampler("spos", TINY, 0)
    with pytest.raises(ValueError, match=r"No sampler takes the option\(s\) \['walk_k'\]; 'walk' takes \['k', 'start'\]"):
        build_sampler("walk", TINY, 0, walk_k=2)

    @register_sampler("test_first")
    class FirstSampler(Sampler):
        """Always the first arch of the enumeration, or `index`."""

        def __init__(self, space, seed, index: int = 0):
            super().__init__(space, seed)
            self.index = index

        def _draw(self):
            return list(self.space.enumerate())[self.index]

    try:
        assert build_sampler("test_first", TINY, 0, index=2, k=1).next() == TINY.arch(["a", "a", "c"])
        assert FirstSampler.name == "test_first"
        with pytest.raises(ValueError, match="already registered"):
            register_sampler("walk")(FirstSampler)
    finally:
        SAMPLERS.unregister("test_first")


def test_constant_sampler():
    arch = CELL.arch(["skip", ["2", "0"], ["1"]])
    sampler = build_sampler("constant", CELL, 0, arch=arch.to_json(), k=1)
    assert isinstance(sampler, ConstantSampler) and [sampler.next() for _ in range(3)] == [arch] * 3
    with pytest.raises(ValueError, match="constant sampler trains one fixed arch: pass arch="):
        build_sampler("constant", CELL, 0)
    with pytest.raises(ValueError, match="constant sampler: invalid arch: Unknown candidate 'conv9' for op"):
        ConstantSampler(CELL, 0, arch=["conv9", ["0", "1"], ["1"]])
    state = json.loads(json.dumps(sampler.state_dict()))
    resumed = ConstantSampler(CELL, 1, arch=arch)
    resumed.load_state_dict(state)
    assert resumed.steps == 3 and resumed.next() == arch
    with pytest.raises(ValueError, match="resume with the same arch"):
        ConstantSampler(CELL, 0, arch=["pool", ["0", "1"], ["1"]]).load_state_dict(state)


@pytest.mark.parametrize("name", ["uniform", "walk"])
def test_feedback_does_not_change_the_stream(name):
    plain, told = build_sampler(name, CELL, 4), build_sampler(name, CELL, 4)
    assert not told.learns
    expected = [plain.next() for _ in range(30)]
    got = []
    for i in range(30):
        got.append(told.next())
        told.feedback(got[-1], reward=float(i))
    assert got == expected


@pytest.mark.parametrize("name", ["uniform", "walk", "constant"])
@pytest.mark.parametrize("space", [TINY, CELL], ids=["layers", "inputs"])
def test_state_round_trip_beyond_the_first_draw(name, space):
    options = {"k": 2, "arch": space.sample(random.Random(0))}
    a = build_sampler(name, space, 11, **options)
    [a.next() for _ in range(10)]
    state = json.loads(json.dumps(a.state_dict()))
    expected = [a.next() for _ in range(10)]
    b = build_sampler(name, space, 12345, **options)
    b.load_state_dict(state)
    assert b.steps == 10 and b.arch == a.space.arch(state["arch"])
    assert [b.next() for _ in range(10)] == expected


@pytest.mark.parametrize("k", [1, 2])
def test_walk_on_input_choices(k):
    sampler = WalkSampler(CELL, seed=3, k=k)
    prev = sampler.next()
    seen = {prev}
    for _ in range(300):
        arch = sampler.next()
        assert sum(prev[c] != arch[c] for c in arch) == k
        assert len(set(prev["node_2"]) & set(arch["node_2"])) >= 1  # a swap keeps one of two
        prev = arch
        seen.add(arch)
    assert len(seen) > CELL.size() // 2  # 3 * 6 * 3 = 54 archs
    with pytest.raises(ValueError, match="walk k=4 must be between 1 and the number of searchable layers \\(3\\)"):
        WalkSampler(CELL, 0, k=4)


def test_arch_hash_of_input_choices_is_stable():
    """A pinned value: sha1 of the values, independent of the process's PYTHONHASHSEED."""
    archs = list(CELL.enumerate())
    assert len({arch_hash(a) for a in archs}) == len(archs)
    assert arch_hash(CELL.arch(["skip", ["3", "0"], ["1"]])) == 5130370114414382900
