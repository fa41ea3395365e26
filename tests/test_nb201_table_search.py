"""bench/nb201_table_search.py: the table-lookup protocols charge the simulated budget as NB201 does,
pick the best query by the guide metric, and are reproducible per seed; on a made-up table (always)
and on the real NB201 table (skipped when the shared data is absent)."""

import random

import pytest
from conftest import load_bench_script

from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space, default_benchmark_path

ts = load_bench_script("nb201_table_search")
SPACE = Nb201Space()
METHODS = ("random", "rea", "reinforce", "ppo")


class MadeUpTable:
    """Accuracy = 80 + 2 per 3x3 conv + 1 per 1x1 conv + a per-arch jitter: a smooth landscape the
    searches can climb, no data file needed."""

    def accuracy(self, arch, dataset="cifar10"):
        arch = SPACE.arch(arch)
        score = 80 + sum(2.0 if op == "nor_conv_3x3" else 1.0 if op == "nor_conv_1x1" else 0.0 for op in arch.ops)
        return score + random.Random(SPACE.to_string(arch)).random() * 0.5

    def rank(self, arch, dataset="cifar10"):
        return 1


@pytest.fixture(scope="module")
def made_up_oracle():
    return ts.TableOracle(MadeUpTable(), SPACE, guide="test", cost="flops")


def _traced_run(method, seed, oracle, budget_s):
    """run_one, plus the Budget it used (re-run with the same seed: runs are deterministic)."""
    seen = {}

    class Spy(ts.Budget):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen["budget"] = self

    original, ts.Budget = ts.Budget, Spy
    try:
        result = ts.run_one(method, seed, oracle, SPACE, budget_s=budget_s)
    finally:
        ts.Budget = original
    return result, seen["budget"]


def _check_mechanism(method, oracle, budget_s):
    result, budget = _traced_run(method, 0, oracle, budget_s)
    charged = [seconds for _, _, seconds in budget.history]
    # every charged second is a query's cost, and the search spent the budget up to the last query
    # that fitted: what is left is less than the dearest arch of the space costs
    assert budget.spent == pytest.approx(sum(charged))
    assert result["queries"] == len(budget.history) and result["charged_s"] == pytest.approx(budget.spent, abs=1e-3)
    dearest = max(oracle.seconds(a) for a in SPACE.enumerate()) if oracle.cost == "flops" else oracle.mean_seconds
    if method == "rea":  # the initial population is charged unconditionally, as NB201's R_EA.py does
        assert budget.spent <= max(budget_s, sum(charged[:10]))
    else:
        assert budget.spent <= budget_s
    assert budget.spent > budget_s - dearest
    # the found arch is the best query by the guide metric
    best_guide = max(value for _, value, _ in budget.history)
    assert result["guide"] == pytest.approx(best_guide, abs=1e-4)
    assert result["accuracy"] == oracle.test_accuracy(SPACE.arch(result["arch"]))
    # seeded: the same seed repeats the run, another seed gives another trajectory
    again = ts.run_one(method, 0, oracle, SPACE, budget_s=budget_s)
    other = ts.run_one(method, 1, oracle, SPACE, budget_s=budget_s)
    assert again == result
    assert other["charged_s"] != result["charged_s"] or other["arch"] != result["arch"]
    return result, budget


@pytest.mark.parametrize("method", METHODS)
def test_protocol_mechanism_on_a_made_up_table(method, made_up_oracle):
    _check_mechanism(method, made_up_oracle, budget_s=2500.0)


def test_constant_cost_charges_the_mean_and_noisy_guide_is_seeded():
    oracle = ts.TableOracle(MadeUpTable(), SPACE, guide="noisy", cost="constant", mean_seconds=100.0, noise_sd=0.5)
    result, budget = _traced_run("random", 3, oracle, 1050.0)
    assert result["queries"] == 10 and budget.spent == pytest.approx(1000.0)  # the 11th would overflow
    # the guide is the test accuracy plus per-query noise: not equal to it, but repeatable per seed
    assert any(value != oracle.test_accuracy(arch) for arch, value, _ in budget.history)
    assert ts.run_one("random", 3, oracle, SPACE, budget_s=1050.0) == result


def test_flops_cost_is_calibrated_to_the_mean_and_prices_convs_higher(made_up_oracle):
    seconds = [made_up_oracle.seconds(a) for a in SPACE.enumerate()]
    assert sum(seconds) / len(seconds) == pytest.approx(ts.MEAN_ARCH_S)
    all_conv = SPACE.arch(["nor_conv_3x3"] * 6)
    all_skip = SPACE.arch(["skip_connect"] * 6)
    assert made_up_oracle.seconds(all_conv) > ts.MEAN_ARCH_S > made_up_oracle.seconds(all_skip)


@pytest.fixture(scope="module")
def real_oracle():
    path = default_benchmark_path()
    if not path.is_file():
        pytest.skip(f"the NB201 table {path} is absent (set BERTNAS_NASBENCH201_CSV or BERTNAS_DATA_DIR)")
    return ts.TableOracle(Nb201Benchmark(path), SPACE, guide="test", cost="flops")


@pytest.mark.parametrize("method", METHODS)
def test_protocol_mechanism_on_the_real_table(method, real_oracle):
    result, _ = _check_mechanism(method, real_oracle, budget_s=3000.0)
    # a search of ~25 queries on the real table finds an arch in the top quarter of CIFAR-10
    assert result["accuracy"] > 90.0 and result["rank"] < 15625 / 4
