"""`bertnas <command>`: one entry point, each command implemented in the module that owns it.

A command module exposes `add_arguments(parser)` and `run(args)`; it is imported only when its
command runs, so `bertnas --help` stays fast and light.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("bertnas.demo", "Run the whole flow on the embedded toy default (no download)"),
    "pretrain": ("bertnas.train.cli", "Pre-train a supernet (MLM / ELECTRA, MAGIC-T / MAGIC-A)"),
    "search": ("bertnas.search.cli", "Search a trained supernet for the best subnets"),
    "export": ("bertnas.export", "Export subnets of a supernet checkpoint with save_pretrained"),
    "finetune": ("glue.cli", "Fine-tune any checkpoint on a GLUE task or SQuAD"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    result = module.run(args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
