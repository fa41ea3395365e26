"""`bertnas launch`: `accelerate launch` with the one-line error contract of every command.

    bertnas launch --num_processes 1 --cpu recipes/pretrain_supernet.py --config recipes/configs/toy.yaml ...
    python -m bertnas.cli.launch --config_file recipes/configs/accelerate_multi_gpu.yaml recipes/search.py ...

Takes exactly `accelerate launch`'s arguments. The recipes under any launcher already report a
refusal (a bad config key, a missing file) as `error: ...` on one line and exit 2; plain
`accelerate launch` then raises `CalledProcessError` (single process) or `ChildFailedError`
(several) with its own traceback, and `accelerate launch --quiet` hides it but exits 1. This
launcher runs accelerate's launcher in process and ends with the child's exit code (2 for a user
error, 128 + N after signal N) and no traceback of its own; the child's stderr has already gone
through. Any other failure of the launcher itself keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Shown in `bertnas launch --help`; `bertnas launch ...` hands its arguments to main() unparsed.
    parser.add_argument("accelerate_args", nargs=argparse.REMAINDER,
                        help="accelerate launch's arguments: [launcher options] SCRIPT [script options]")


def child_exit_code(err: BaseException) -> int | None:
    """The exit code of the failed child process behind a launcher's exception, or None when
    `err` is not a child's failure."""
    import subprocess

    if isinstance(err, subprocess.CalledProcessError):
        return int(err.returncode)
    failures = getattr(err, "failures", None)  # torch.distributed.elastic's ChildFailedError
    if type(err).__name__ == "ChildFailedError" and failures:
        codes = {rank: int(getattr(f, "exitcode", 1) or 1) for rank, f in failures.items()}
        # when one rank exits, torchrun stops the others with SIGTERM (-15): the rank that exited
        # by itself (earliest, then lowest rank) is the one whose code tells what went wrong
        exited = [rank for rank, code in codes.items() if code > 0]
        if exited:
            rank = min(exited, key=lambda r: (getattr(failures[r], "timestamp", 0), r))
            return codes[rank]
        return 128 - codes[min(codes)]  # every rank killed by a signal N: torch reports -N
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from accelerate.commands.launch import launch_command, launch_command_parser

    parser = launch_command_parser()
    parser.prog = "bertnas launch"
    args = parser.parse_args(argv)
    try:
        launch_command(args)
    except Exception as err:  # noqa: BLE001 - a child's failure: its exit code, no launcher traceback
        code = child_exit_code(err)
        if code is None:
            raise
        return code
    return 0


def run(args: argparse.Namespace) -> int:
    return main(args.accelerate_args)


if __name__ == "__main__":
    sys.exit(main())
