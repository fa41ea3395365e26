"""User errors: bad input that a `bertnas` command reports in one line and exit code 2.

`UserError("what is wrong", "how to fix it")` reads `what is wrong; how to fix it`. The command
line (`bertnas/cli.py`) prints `error: <message>` and exits 2 for a `UserError` or a
`CheckpointError` (a missing / corrupt / foreign checkpoint is the user's input too); every
other exception is a bug and keeps its traceback. This module imports nothing heavy.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: a one-line message naming what is wrong and how to fix it. A `ValueError`, so
    code that caught the `ValueError`s of validation keeps working."""

    def __init__(self, what: str, fix: str | None = None):
        message = f"{what}; {fix}" if fix else what
        super().__init__(message)


class UserFileError(UserError, FileNotFoundError):
    """A path the user gave does not exist (also a `FileNotFoundError`)."""


class UserFileExistsError(UserError, FileExistsError):
    """An output path exists and may not be replaced (also a `FileExistsError`)."""


class Interrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after writing a checkpoint (exit 128 + signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def one_line(text: str) -> str:
    """A message on one line: lines joined with '; ', surrounding blanks dropped."""
    parts = [part.strip() for part in str(text).splitlines() if part.strip()]
    return "; ".join(parts)


def hub_offline() -> bool:
    import os

    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(text: str) -> bool:
    """True when `text` can only be a local path (not a Hub id `owner/name`)."""
    from pathlib import Path

    text = str(text)
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
            or Path(text).suffix in (".json", ".txt", ".safetensors", ".bin", ".model"))


def check_model_source(value: str, option: str) -> None:
    """A folder or Hub id given as `option`: a missing local path, or a Hub id while the Hub is
    offline, is a `UserError` naming the fix (checked before anything is loaded or created)."""
    from pathlib import Path

    path = Path(value).expanduser()
    if path.exists():
        return
    if looks_like_path(value):
        raise UserFileError(f"{option} {value} does not exist", "give an existing folder (or a Hub id)")
    if hub_offline():
        raise UserError(f"{option} {value} is not a local folder and the Hugging Face Hub is offline (HF_HUB_OFFLINE=1)",
                        "give a local folder, or unset HF_HUB_OFFLINE to download it")


__all__ = ["UserError", "UserFileError", "UserFileExistsError", "Interrupted", "one_line", "hub_offline",
           "looks_like_path", "check_model_source"]
