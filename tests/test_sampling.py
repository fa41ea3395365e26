import json
import math
import random
from collections import Counter

import pytest
import torch

from bertnas.sampling import UniformSampler, WalkSampler, arch_hash, assert_same_arch, build_sampler
from bertnas.spaces import SearchSpace

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
