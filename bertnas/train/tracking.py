"""Experiment trackers through accelerate, and Trainer-like console lines, at a logging interval.

`--report-to` takes `none`, `all` (every tracker installed here) or one of accelerate's trackers
(`TRACKERS`); each is an optional import, checked before the run starts (one line naming the pip
package). `IntervalLog` averages the numeric fields of the per-step records over `logging_steps`
steps and sends one row per interval to the trackers and, when the progress bar is off, one
`{'step': ..., 'loss': ..., 'lr': ...}` line to stderr (the format of transformers' `Trainer`).
The per-step `log.jsonl` is unchanged; nothing here runs more than once per interval.
"""

from __future__ import annotations

import importlib.util
import math
import sys

from bertnas.core.errors import UserError

# --report-to name -> (module to import, pip package); the names are accelerate's `LoggerType`s
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}
REPORT_TO = ("none", "all", *TRACKERS)
# fields that are not worth a curve (constant, or a description of the step rather than a measure)
SKIPPED = {"step", "world_size", "tokens", "step_time_s"}


class MissingTracker(UserError, ImportError):
    """A `--report-to` tracker whose package is not installed (one line naming it)."""


def installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name][0]) is not None


def trackers(report_to: str | None) -> list[str]:
    """The tracker names of a `--report-to` value; a tracker that is not installed is a one-line
    error naming its package (`all`: the installed ones, none is fine)."""
    value = (report_to or "none").strip().lower()
    if value == "none":
        return []
    if value == "all":
        return [name for name in TRACKERS if installed(name)]
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--report-to {name} is not a tracker accelerate knows",
                            f"choose one of {', '.join(REPORT_TO)}")
        if not installed(name):
            raise MissingTracker(f"--report-to {name} needs the {TRACKERS[name][1]} package",
                            f"pip install {TRACKERS[name][1]}, or pass --report-to none")
    return names


def accelerator_kwargs(report_to: str | None, project_dir) -> dict:
    """`Accelerator(**kwargs)` options of the run's trackers (none: nothing)."""
    names = trackers(report_to)
    return {"log_with": names, "project_dir": str(project_dir)} if names else {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class IntervalLog:
    """Per-step records in, one averaged row per `every` steps out (trackers, console)."""

    def __init__(self, accelerator, every: int, tracking: bool, console: bool, stream=None):
        self.acc, self.every = accelerator, max(1, int(every or 1))
        self.tracking, self.console = tracking, console
        self.stream = stream or sys.stderr
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last_step = None

    def update(self, record: dict) -> None:
        self.count += 1
        self.last_step = record.get("step")
        for key, value in record.items():
            if key not in SKIPPED and _number(value):
                self.sums[key] = self.sums.get(key, 0.0) + float(value)
        if self.last_step is not None and self.last_step % self.every == 0:
            self.flush()

    def flush(self) -> dict:
        """Send the interval's averages (called at the interval and at the end of the run)."""
        if not self.count:
            return {}
        row = {k: v / self.count for k, v in self.sums.items()}
        if self.tracking and self.acc is not None:
            self.acc.log(row, step=self.last_step)
        if self.console:
            shown = {"step": self.last_step, **{k: float(f"{v:.4g}") for k, v in row.items()}}
            print(shown, file=self.stream, flush=True)
        self.sums, self.count = {}, 0
        return row


__all__ = ["TRACKERS", "REPORT_TO", "MissingTracker", "trackers", "accelerator_kwargs", "IntervalLog", "installed"]
