"""`log.jsonl`: one JSON line per optimizer step, appended and flushed as training goes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bertnas.storage import strict_json

LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"


def read_log(path: str | Path) -> list[dict]:
    """The lines of a `log.jsonl`, one per step. A step logged twice (a run killed after its last
    checkpoint, then resumed) keeps the later line, i.e. the one of the resumed run."""
    by_step: dict[int, dict] = {}
    with Path(path).open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            if "step" in record:
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


class StepLog:
    """Appends records to `log.jsonl` on the main process (a no-op elsewhere)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.file = (Path(run_dir) / LOG_FILE).open("a") if enabled else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(strict_json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def truncate_log(run_dir: str | Path, step: int) -> int:
    """Drop the lines of `run_dir/log.jsonl` after `step` (a resume from a checkpoint at `step`
    retrains those steps: the log must not hold a step twice). Returns the lines dropped.
    Rewritten atomically (a temporary file renamed over the log)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with path.open() as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write: never a complete step
                dropped += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
                dropped += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    return dropped


__all__ = ["LOG_FILE", "SUMMARY_FILE", "read_log", "StepLog", "truncate_log"]
