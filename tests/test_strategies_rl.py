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
    with torch.no_grad():
        return math.exp(float(controller.log_prob(arch)))


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


def test_controller_on_darts_cells_draws_only_valid_genotypes():
    """DARTS cell choices are coupled (an input edge carries a real op, the others `none`):
    every draw and the mode are valid archs, and p sums to 1 over the valid ones."""
    from bertnas.spaces.darts import DartsSpace

    space = DartsSpace(steps=2, candidates=["none", "skip_connect", "avg_pool_3x3"])  # 2,304 archs
    controller = Controller(space, seed=1)
    with torch.no_grad():
        for logits in controller.logits.values():
            logits.copy_(torch.randn(logits.shape, generator=torch.Generator().manual_seed(len(logits))))
    assert sum(prob(controller, arch) for arch in space.enumerate()) == pytest.approx(1.0, abs=1e-4)
    for arch in [controller.sample() for _ in range(50)] + [controller.mode()]:
        assert space.arch(arch) == arch  # DartsSpace.arch raises on a `none` input edge


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


class CostedSpace(SearchSpace):
    """SPACE with a cost model (search results carry params / FLOPs)."""

    def params(self, arch) -> int:
        return sum(len(str(v)) for v in arch.values())

    def flops(self, arch, seq_len=None) -> int:
        return 2 * self.params(arch)


def fake_context(space):
    """What RS-WS / SPOS use of a run: `ctx.search` (the one `run_strategy` hands in) over the
    task's held-out evaluator (here the toy reward), and `ctx.scoring()`."""
    import contextlib
    from types import SimpleNamespace

    from bertnas.pipelines.strategy import search_function

    class ToyEvaluator:
        higher_is_better = True

        def __call__(self, arch):
            return toy_reward(space.arch(arch))

    task = SimpleNamespace(space=space, heldout=lambda eval_batches: ([{}], {}),
                           evaluator=lambda batches: ToyEvaluator())
    return SimpleNamespace(search=search_function(task, 1), progress=False, scoring=contextlib.nullcontext)


@pytest.mark.parametrize("name, options", [("rsws", {"num_samples": 72}),
                                           ("spos", {"population": 6, "generations": 4, "parents": 3})])
def test_weight_sharing_search_finds_the_best_arch_with_the_evaluator(name, options):
    space = CostedSpace({label: SPACE.choices[label] if label not in SPACE.input_choices
                         else InputChoice(SPACE.choices[label], 2) for label in SPACE.choices})
    strategy = build_strategy(name, space, seed=0, **options)
    assert not strategy.chooses_archs  # a uniform sampler of its own trains the weights
    with pytest.raises(ValueError, match="call candidates"):
        strategy.derive()
    found = strategy.candidates(fake_context(space), 3)
    assert found[0] == BEST == strategy.derive()
    assert [toy_reward(a) for a in found] == sorted((toy_reward(a) for a in found), reverse=True)


# -- bertnas search --strategy ---------------------------------------------------------------

def search_cli(argv, capsys):
    from bertnas.cli import main

    code = main(["search", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "darts", "--checkpoint", "runs/x", "--output-dir", "o"], "only apply to a --checkpoint search"),
    (["--strategy", "enas", "--output-dir", "o"], "unknown strategy 'enas'; choose one of darts, gaea-darts"),
    (["--output-dir", "o"], "give --checkpoint (search a trained supernet) or --strategy NAME"),
    (["--strategy", "spos", "--space", "nope", "--output-dir", "o"], "Unknown space 'nope'"),
    (["--strategy", "spos"], "--output-dir is required"),
    (["--checkpoint", "runs/x", "--space-option", "C=8", "--output-dir", "o"], "--space-option goes with --strategy"),
    (["--checkpoint", "runs/x", "--set", "lr=1e-3", "--output-dir", "o"], "--set goes with --strategy"),
    (["--strategy", "spos", "--set", "nope=3", "--output-dir", "o"], "unknown config key 'nope'"),
])
def test_search_strategy_bad_combinations_are_one_line_errors(argv, message, capsys):
    code, out, err = search_cli(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_search_strategy_without_vision_data_names_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTNAS_DATA_DIR", str(tmp_path))  # no CIFAR-10 subset there
    code, _, err = search_cli(["--space", "nb201", "--strategy", "darts", "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "does not exist" in err and "pass --data" in err
    assert not (tmp_path / "o").exists()


def test_search_strategy_spos_end_to_end(tmp_path, capsys):
    """Train 2 SPOS steps on the toy BERT, evolve on the shared weights: results + log, no entropy plot."""
    out = tmp_path / "spos"
    code, stdout, _ = search_cli(["--space", "bert", "--strategy", "spos", "--max-steps", "2", "--no-progress",
                                  "--strategy-option", "population=3", "--strategy-option", "generations=1",
                                  "--top-k", "3", "--output-dir", str(out)], capsys)
    assert code == 0 and "results.json" in stdout
    entries = json.loads((out / "results.json").read_text())
    assert len(entries) == 3 and [e["rank"] for e in entries] == [1, 2, 3]
    assert entries[0]["score"] <= entries[-1]["score"]  # MLM loss: lower first
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [1, 2] and "align_loss" not in log[0]  # SPOS: no MAGIC-A
    assert not (out / "entropy.png").exists()  # no architecture weights to plot
    search = json.loads((out / "search.json").read_text())
    assert search["derived"] == entries[0]["arch"]


def test_reinforce_in_the_trainer_resumes_exactly_and_plots_entropy(tmp_path):
    """REINFORCE picks the paths and learns from held-out rewards inside the trainer; a run
    resumed from its step-1 checkpoint ends with the same controller as the straight run."""
    import shutil

    from bertnas.strategies import run_strategy

    config = {"space": "bert", "strategy": "reinforce", "strategy_options": {"archs_per_step": 2}, "max_steps": 2,
              "save_steps": 1, "keep_last": 2, "eval_batches": 2, "progress": False, "seed": 5}
    straight = tmp_path / "straight"
    summary = run_strategy({**config, "output_dir": str(straight)}, top_k=2)
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [line["controller"]["updates"] for line in log] == [1, 2]
    assert log[-1]["entropy"] < math.log(len(next(iter(log[-1]["arch_weights"].values()))))
    assert (straight / "entropy.png").stat().st_size > 0
    assert summary["derived"] in [entry["arch"] for entry in summary["results"]]  # the mode is scored too

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-00000002")
    for name in ("results.json", "evaluated.json", "search.json", "pareto.png", "entropy.png"):
        (resumed / name).unlink()
    run_strategy({**config, "output_dir": str(resumed), "resume_from_checkpoint": "latest"}, top_k=2)

    def controller(folder):
        return json.loads((folder / "checkpoint-00000002" / "state.json").read_text())["strategy"]["controller"]

    assert controller(resumed) == controller(straight)
