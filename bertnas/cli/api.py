"""The commands as Python functions, for notebooks: `bertnas.pretrain(...)`, `bertnas.search(...)`,
`bertnas.export(...)`, `bertnas.compress(...)`, `bertnas.finetune(...)`.

Each takes the command's options as keyword arguments, under either spelling the command line
takes (`output_dir=`, `learning_rate=`, `per_device_train_batch_size=`, `max_steps=`, ...; an
option's name with `_` for `-`), runs exactly what `bertnas <command>` runs (the same parser, checks,
run folder guard, training.png, cards, Hub upload) and returns the command's result (a summary
dict, the ranked entries, the exported folders) instead of printing it. Bad input raises the
`UserError` the command would print. `config=` takes a YAML path; `set={"model.hidden_size": 64}`
is `--set`. See docs/python_api.md.
"""

from __future__ import annotations

import argparse
import importlib
import io

from bertnas.core.errors import UserError

_COMMANDS = {
    "pretrain": "bertnas.cli.pretrain",
    "search": "bertnas.cli.search",
    "export": "bertnas.cli.export",
    "compress": "bertnas.cli.compress",
    "finetune": "glue.cli",
}


def _options(parser: argparse.ArgumentParser) -> dict:
    """keyword name -> (option string, action): every option string with `_` for `-`, and dests."""
    table = {}
    for opt, action in parser._option_string_actions.items():
        if opt.startswith("--"):
            table.setdefault(opt[2:].replace("-", "_"), (opt, action))
    for action in parser._actions:  # `progress=False` for --no-progress
        if action.option_strings and action.dest not in table:
            table[action.dest] = (action.option_strings[0], action)
    return table


def to_argv(command: str, parser: argparse.ArgumentParser, options: dict) -> list[str]:
    """Keyword options as the command line that means the same."""
    table, argv = _options(parser), []
    for key, value in options.items():
        if value is None:
            continue
        if key not in table:
            raise UserError(f"bertnas.{command}() has no option {key!r}",
                            f"see `bertnas {command} --help` (options with _ for -)")
        opt, action = table[key]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(opt if value else "--no-" + opt[2:])
        elif action.nargs == 0:  # flags: no_progress=True, or progress=False (the flag's dest)
            negated = isinstance(action, argparse._StoreFalseAction) and key == action.dest
            if value is (False if negated else True):
                argv.append(opt)
        elif isinstance(action, argparse._AppendAction):
            items = value.items() if isinstance(value, dict) else value
            for item in items:
                argv += [opt, f"{item[0]}={item[1]}" if isinstance(item, tuple) else str(item)]
        elif value is True and action.nargs == "?":
            argv.append(opt)
        else:
            argv += [opt, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return argv


def run_command(command: str, **options):
    """Parse `options` with the command's parser and run it; returns its result."""
    from bertnas.cli import DefaultsFormatter, Parser

    module = importlib.import_module(_COMMANDS[command])
    parser = Parser(prog=f"bertnas.{command}()", formatter_class=DefaultsFormatter)
    module.add_arguments(parser)
    argv = to_argv(command, parser, options)
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        raise UserError(f"bertnas.{command}(): the options {argv} are not valid",
                        f"see `bertnas {command} --help`") from None
    args.stdout = io.StringIO()  # the printed result; the function returns it instead
    returned = module.run(args)
    return getattr(args, "result", returned)


def pretrain(**options) -> dict:
    """`bertnas pretrain`: returns the run's summary (step, loss, checkpoint, plot, ...)."""
    return run_command("pretrain", **options)


def search(**options):
    """`bertnas search` (`checkpoint=` or `strategy=`): returns the ranked entries (best first)."""
    return run_command("search", **options)


def export(*args, **options):
    """`bertnas export`: returns the exported folders. Positional arguments call the library
    function `bertnas.export.export(checkpoint, output_dir, ...)`."""
    if args:
        from bertnas.export import export as export_fn

        return export_fn(*args, **options)
    return run_command("export", **options)


def compress(**options) -> dict:
    """`bertnas compress`: returns the summary, keyed by budget."""
    return run_command("compress", **options)


def finetune(**options) -> dict:
    """`bertnas finetune`: returns the results (task, eval, score, model_dir, ...)."""
    return run_command("finetune", **options)


FUNCTIONS = {"pretrain": pretrain, "search": search, "export": export, "compress": compress, "finetune": finetune}

__all__ = ["pretrain", "search", "export", "compress", "finetune", "run_command", "to_argv", "FUNCTIONS"]
