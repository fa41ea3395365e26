"""The package's layers and its registries: what `docs/architecture.md` promises.

- the layers contract (pyproject.toml, [tool.importlinter]) holds: no module imports upward,
  imports inside functions included;
- no module of bertnas or glue imports a path that moved (those work only for users, with a
  DeprecationWarning, for one release);
- a strategy, a search method and a command are each added from outside the package, with one
  registration and nothing in train/ (a space and a task: tests/test_new_space.py; an op kind:
  tests/test_models.py::test_adding_an_op_kind_is_one_registry_entry).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bertnas.core.moved import MOVED_MODULES
from bertnas.core.registry import Registry, UnknownName

REPO = Path(__file__).resolve().parents[1]


def test_the_layers_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (make setup installs it)")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "bertnas layers KEPT" in done.stdout


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_no_module_of_the_package_imports_a_moved_path():
    users = [p for folder in ("bertnas", "glue") for p in (REPO / folder).rglob("*.py")]
    stale = sorted({f"{p.relative_to(REPO)}: {m}" for p in users for m in _imported_modules(p) if m in MOVED_MODULES})
    assert not stale, stale


@pytest.mark.parametrize("old", ["bertnas.train.checkpoint", "bertnas.sampling", "bertnas.search.evaluator"])
def test_a_moved_module_still_imports_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])


def test_a_moved_function_still_imports_with_a_warning():
    import bertnas.train.trainer as trainer
    from bertnas.pipelines.pretrain import pretrain

    with pytest.warns(DeprecationWarning, match="pipelines.pretrain"):
        assert trainer.pretrain is pretrain


def test_registry_names_lazy_entries_and_errors():
    reg = Registry("widget", {"a": 1}, lazy={"join": "os.path:join"})
    assert reg.names() == ["a", "join"] and "join" in reg and len(reg) == 2
    import os.path

    assert reg.get("join") is os.path.join and reg["a"] == 1
    with pytest.raises(UnknownName, match=r"Unknown widget 'jion' \(did you mean 'join'\?\); known: a, join"):
        reg.get("jion")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    reg.register("b")(print)
    assert reg.get("b") is print and reg.name_of(print) == "b"


def test_registered_names_reach_the_cli_help():
    from bertnas.cli import build_parser
    from bertnas.supernet.registry import SAMPLERS

    SAMPLERS.register("test-only-sampler", "bertnas.supernet.sampling:UniformSampler")
    try:
        help_text = build_parser("pretrain")._subparsers._group_actions[0].choices["pretrain"].format_help()
        assert "test-only-sampler" in help_text
    finally:
        SAMPLERS.unregister("test-only-sampler")


# -- plug-ins written here ----------------------------------------------------------------------


def test_a_strategy_written_here_runs_through_the_trainer(tmp_path):
    """One class and one registration: the trainer runs it as the arch policy (nothing in train/)."""
    from bertnas.pipelines.strategy import run_strategy
    from bertnas.strategies import STRATEGIES, Strategy

    class AlwaysFirst(Strategy):
        """Trains and returns the arch of every choice's first candidate."""

        def choose(self, step):
            return self.derive()

        def after_weight_step(self, ctx, step, arch):
            return {"first_seen": ctx.rank == 0 and ctx.world_size == 1}

        def derive(self):
            return self.space.arch([cands[0] for cands in self.space.choices.values()])

    STRATEGIES.register("always-first", AlwaysFirst)
    try:
        out = run_strategy({"strategy": "always-first", "max_steps": 2, "save_steps": 0, "progress": False,
                            "output_dir": str(tmp_path / "run"), "eval_batches": 1})
    finally:
        STRATEGIES.unregister("always-first")
    from bertnas.storage.logs import read_log

    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [line["first_seen"] for line in log] == [True, True]
    assert len({tuple(line["arch"]) for line in log}) == 1 and out["derived"] == log[0]["arch"]


def test_a_search_method_written_here_searches_a_checkpoint(tmp_path):
    from bertnas.pipelines.pretrain import pretrain
    from bertnas.search import SEARCH_METHODS, register_search_method, search
    from bertnas.search.shrinking import SearchOutcome
    from bertnas.storage.results import make_candidate

    run = tmp_path / "run"
    pretrain({"max_steps": 2, "save_steps": 0, "progress": False, "output_dir": str(run), "align": False})

    @register_search_method("first-two")
    def first_two(task, space, evaluator, constraints, options):
        archs = [space.sample(seed) for seed in (0, 1)]
        scored = [make_candidate(space, constraints, a, evaluator(a)) for a in archs]
        return SearchOutcome(results=scored, evaluated=scored), {"archs": 2}

    try:
        entries = search(run, method="first-two", output_dir=str(tmp_path / "search"), progress=False, eval_batches=1)
    finally:
        SEARCH_METHODS.unregister("first-two")
    assert len(entries) == 2 and (tmp_path / "search" / "results.json").is_file()


def test_a_command_written_here_runs_under_bertnas(tmp_path, capsys):
    from bertnas.cli import COMMANDS, main, register_command

    register_command("hello", __name__, "Say hello")
    try:
        assert main(["hello", "--name", "layers"]) == 0
    finally:
        COMMANDS.unregister("hello")
    assert capsys.readouterr().out == "hello layers\n"


# the command module of the test above: this file
def add_arguments(parser):
    parser.add_argument("--name", required=True)


def run(args):
    from bertnas.cli import result_stream

    print(f"hello {args.name}", file=result_stream(args))
    return 0


def test_dir_of_old_paths_is_not_needed_by_the_suite():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        importlib.import_module("bertnas.pipelines.pretrain")  # the new paths warn about nothing
