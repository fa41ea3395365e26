"""RL controllers (REINFORCE, PPO), RS-WS / SPOS, the entropy plot and `bertnas search --strategy`."""

import json
import math

import pytest
import torch

from bertnas.spaces.base import InputChoice, SearchSpace
from bertnas.strategies import build_strategy
from bertnas.strategies.controller import Controller

SPACE = SearchSpace({"node": InputChoice(["0", "1", "2", "3"], 2), "op_a": ["x", "y", "z"],
                     "op_b": ["x", "y", "z", "w"]})
BEST = SPACE.arch({"node": ["1", "3"], "op_a": "z", "op_b": "y"})


def toy_reward(arch) -> float:
    """One point per choice that matches BEST: BEST is the only arch with the top reward 3."""
    return float(sum(arch[label] == BEST[label] for label in BEST))


def prob(controller, arch) -> float:
    return math.exp(float(controller.log_prob(arch).detach()))


def test_controller_is_a_distribution_over_the_space():
    controller = Controller(SPACE, seed=0)
    with torch.no_grad():  # a non-uniform policy
        controller.logits["node"].copy_(torch.tensor([0.3, -1.0, 2.0, 0.5]))
        controller.logits["op_a"].copy_(torch.tensor([1.0, 0.0, -1.0]))
    probs = {arch: prob(controller, arch) for arch in SPACE.enumerate()}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    # sampled frequencies match log_prob (input choice: both orders of the pair counted)
    draws = [controller.sample() for _ in range(4000)]
    top = max(probs, key=probs.get)
    assert draws.count(top) / len(draws) == pytest.approx(probs[top], abs=0.03)
    assert controller.mode() == top == SPACE.arch({"node": ["2", "3"], "op_a": "x", "op_b": "x"})


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_controller_learns_the_best_arch_of_a_toy_reward(name):
    strategy = build_strategy(name, SPACE, seed=0)
    start = prob(strategy.controller, BEST)
    entropy_start = strategy.log_fields()["entropy"]
    assert start == pytest.approx(1 / SPACE.size())
    for _ in range(30):
        archs = [strategy.controller.sample() for _ in range(strategy.options["archs_per_step"])]
        strategy.update(archs, [toy_reward(a) for a in archs])
    assert prob(strategy.controller, BEST) > 10 * start
    assert strategy.derive() == BEST
    assert strategy.log_fields()["entropy"] < entropy_start


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_controller_state_resumes_exactly(name):
    def run(strategy, updates):
        for _ in range(updates):
            archs = [strategy.controller.sample() for _ in range(4)]
            strategy.update(archs, [toy_reward(a) for a in archs])

    straight = build_strategy(name, SPACE, seed=3)
    run(straight, 6)
    first = build_strategy(name, SPACE, seed=3)
    run(first, 3)
    saved = json.loads(json.dumps(first.state_dict()))  # through JSON, as in a checkpoint
    resumed = build_strategy(name, SPACE, seed=3)
    resumed.load_state_dict(saved)
    run(resumed, 3)
    for label in SPACE.choices:
        assert torch.equal(straight.controller.logits[label], resumed.controller.logits[label])
    assert straight.baseline.value == resumed.baseline.value
    assert straight.controller.sample() == resumed.controller.sample()  # the draw stream continues too


def test_controller_state_for_another_space_is_refused():
    other = build_strategy("reinforce", SearchSpace({"op_a": ["x", "y"]}), seed=0)
    with pytest.raises(ValueError, match="another space"):
        build_strategy("reinforce", SPACE, seed=0).load_state_dict(other.state_dict())


def test_unknown_strategy_option_names_the_accepted_ones():
    with pytest.raises(ValueError, match="archs_per_step"):
        build_strategy("ppo", SPACE, seed=0, rollouts=3)
