"""`bertnas <command>`: pre-train, search, export, analyse and compress supernets.

Every command's argument parser lives in this package. A command module exposes `add_arguments(parser)` and `run(args)`; it is imported only when its
command runs, so `bertnas --help` stays fast and light (no torch, no transformers). A new
command: a module with those two functions and one `COMMANDS` entry (or `register_command`).

Errors: bad input (`bertnas.core.errors.UserError`, a checkpoint's `CheckpointError`, a bad option)
prints `error: <what is wrong>; <how to fix it>` on one line and exits 2; a training run stopped
by SIGINT / SIGTERM saves a checkpoint, says so in one line and exits 128 + the signal number.
Any other exception is a bug and shows its traceback. `--debug` (or BERTNAS_DEBUG=1) shows the
traceback of every error.

Output: only a command's result goes to stdout (`bertnas pretrain ... | jq` works); logs,
progress bars and libraries' prints go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import sys
from pathlib import Path

from bertnas.core.errors import Interrupted, UserError, one_line
from bertnas.core.registry import Registry

# name -> (module with add_arguments / run, one-line help); `finetune` is the glue plug-in's
COMMANDS = Registry("command", {
    "demo": ("bertnas.cli.demo", "Run the whole flow on the embedded toy default (no download)"),
    "pretrain": ("bertnas.cli.pretrain", "Pre-train a supernet (MLM / ELECTRA, MAGIC-T / MAGIC-A)"),
    "search": ("bertnas.cli.search", "Search a trained supernet for the best subnets, or train and search with a strategy"),
    "export": ("bertnas.cli.export", "Export subnets of a supernet checkpoint with save_pretrained"),
    "finetune": ("glue.cli", "Fine-tune any checkpoint on a GLUE task or SQuAD"),
    "analyze": ("bertnas.cli.analyze", "Check whether a supernet ranks subnets like the ground truth (ranking, interference, bias, report)"),
    "split": ("bertnas.cli.split", "Few-shot NAS: split a trained supernet into one child per candidate of a choice"),
    "calibrate": ("bertnas.cli.calibrate", "Which signal ranks archs best (supernet, zero-cost proxies, a hybrid), from K stand-alone archs"),
    "compress": ("bertnas.cli.compress", "Distil a BERT into small searched BERTs, one per parameter budget"),
    "launch": ("bertnas.cli.launch", "accelerate launch a recipe, ending with its exit code and one-line errors "
                                     "(no launcher traceback)"),
})


def register_command(name: str, module: str, help_text: str) -> None:
    """`bertnas name ...` runs `module`'s `run(args)` with the options of its `add_arguments(parser)`."""
    COMMANDS.register(name, (module, help_text))
EXIT_USER_ERROR = 2


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's true default (none shown for unset / off options)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default in (None, False, argparse.SUPPRESS)
                or default == [] or "default" in text):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (`error: ...; see `bertnas pretrain --help``), exit 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # `--max-params -5M` is a (bad) value, not an option: argparse's own pattern knows only
        # plain negative numbers and would answer "expected one argument".
        self._negative_number_matcher = re.compile(
            r"^-\d+(\.\d*)?([eE]-?\d+)?[a-zA-Z]?$|^-\.\d+[a-zA-Z]?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def error(self, message: str):  # noqa: D401 - argparse's hook
        sys.stderr.write(f"error: {message}; see `{self.prog} --help`\n")
        sys.exit(EXIT_USER_ERROR)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="bertnas", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module_name, help_text) in COMMANDS.items():  # in name order
        sub_parser = sub.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=DefaultsFormatter)
        sub_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                help="show the traceback of every error")
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


# the repository root (this file is bertnas/cli/__init__.py): its bertnas/ and glue/ are our code
OUR_CODE = tuple(str(Path(__file__).resolve().parents[2] / name) + os.sep for name in ("bertnas", "glue"))
VALIDATION_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def is_user_error(err: BaseException) -> bool:
    """Bad input rather than a bug: a `UserError`, a checkpoint that cannot be used, or a
    ValueError / FileNotFoundError that bertnas's own validation raised with a `raise` statement
    (e.g. an unknown op in an arch). The same exception types raised inside Python, torch or
    transformers, or implicitly in our code (a failed unpacking), are bugs: traceback."""
    if isinstance(err, UserError):
        return True
    checkpoint = sys.modules.get("bertnas.storage.checkpoint")  # imported if it raised
    if checkpoint is not None and isinstance(err, checkpoint.CheckpointError):
        return True
    if not isinstance(err, VALIDATION_ERRORS):
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    if not filename.startswith(OUR_CODE):
        return False
    import linecache

    line = tb.tb_lineno
    try:  # the first line of the statement that raised (a `raise X(...)` may span several lines)
        start = list(tb.tb_frame.f_code.co_positions())[tb.tb_lasti // 2][0]
        line = start if start else line
    except (AttributeError, IndexError, TypeError):
        pass
    return linecache.getline(filename, line).strip().startswith("raise ")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:  # accelerate launch's own arguments, parsed by accelerate's parser
        return importlib.import_module(COMMANDS["launch"][0]).main(argv[1:])
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_USER_ERROR

    def run(args):
        return importlib.import_module(COMMANDS[args.command][0]).run(args)

    return execute(run, args)


def run_command(add_arguments, run, argv: list[str] | None = None, prog: str | None = None,
                description: str | None = None) -> int:
    """A command module's own entry point (`python -m glue.cli`, `recipes/pretrain_supernet.py`)
    with the errors, exit codes and clean stdout of `bertnas <command>`."""
    parser = Parser(prog=prog, description=description, formatter_class=DefaultsFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    add_arguments(parser)
    return execute(run, parser.parse_args(argv))


def execute(run, args: argparse.Namespace) -> int:
    """`run(args)` with stdout kept for the result (`args.stdout`) and errors mapped to exit codes."""
    debug = getattr(args, "debug", False) or os.environ.get("BERTNAS_DEBUG", "").lower() in ("1", "true", "yes")
    args.stdout = sys.stdout  # the result goes here; everything else is redirected to stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args)
    except Interrupted as err:
        sys.stderr.write(f"{one_line(err)}\n")
        return 128 + err.signum
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as err:  # noqa: BLE001 - user errors get one line, bugs their traceback
        full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
        if debug or not (full or is_user_error(err)):
            raise
        if full:  # the machine's state, not a bug: checkpoints are written atomically, earlier ones stay intact
            where = f" writing {err.filename}" if err.filename else ""
            sys.stderr.write(f"error: the disk is full{where} ({err.strerror}); free space (or pass an --output-dir "
                             "on another disk) and rerun; a pre-training run continues from its last checkpoint with "
                             "--resume-from-checkpoint latest\n")
            return EXIT_USER_ERROR
        sys.stderr.write(f"error: {one_line(err)}\n")
        return EXIT_USER_ERROR
    return result if isinstance(result, int) else 0


def result_stream(args: argparse.Namespace):
    """Where a command prints its result: the real stdout under `bertnas`, else sys.stdout."""
    return getattr(args, "stdout", None) or sys.stdout


if __name__ == "__main__":
    sys.exit(main())
