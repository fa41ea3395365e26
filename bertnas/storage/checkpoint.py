"""Training checkpoints: written atomically, verified on load, the last K kept.

Layout of `OUT/checkpoint-00000020/` (step with 8 digits, so names sort by step):

    model/                 supernet `save_pretrained` (safetensors, config, remote code) + tokenizer
    generator/             ELECTRA generator `save_pretrained` (ELECTRA only)
    optimizer.pt           optimizer state dict           (DeepSpeed runs: deepspeed/ instead)
    scheduler.pt           LR scheduler state dict
    rng_state_<rank>.pt    python / torch / CUDA RNG states and the masking generator, per rank
    state.json             step, sampler, aligner, search strategy state, data position and options,
                           run config, signature
    manifest.json          every file above with its size and SHA-256; written last

A checkpoint is written into `OUT/.tmp-checkpoint-<step>/` and renamed into place only when
complete, so a killed run never leaves a half-written `checkpoint-*` behind. Loading checks the
manifest (missing, truncated or changed files: sizes and SHA-256), the safetensors headers, and
that the checkpoint was written for the same model / space as the run that loads it; search and
export verify the files they read and name the intact checkpoints when one is damaged.

A run folder is guarded too (`run_dir_guard`): a new run refuses a folder that holds another run
(unless resumed or `--overwrite`, which deletes only bertnas's files), and holds a lock file
(`.bertnas.lock`: pid, host) for its lifetime. `StopOnSignal` turns SIGINT / SIGTERM into a clean
stop after the current step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bertnas.core.errors import UserError, UserFileExistsError

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TMP_PREFIX = ".tmp-checkpoint-"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
GENERATOR_DIR = "generator"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
DEEPSPEED_DIR = "deepspeed"
FORMAT_VERSION = 2  # 1: sizes only; 2: sizes and SHA-256
LOCK_FILE = ".bertnas.lock"
logger = logging.getLogger("bertnas.pretrain")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or belongs to another model / space
    (the command line reports it in one line, exit 2)."""


# ----------------------------------------------------------------------------------------
# Finding checkpoints
# ----------------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def checkpoint_step(path: str | Path) -> int:
    match = CHECKPOINT_RE.match(Path(path).name)
    if not match:
        raise CheckpointError(f"{path} is not named checkpoint-<step>")
    return int(match.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's complete checkpoint folders, oldest first (temp folders are never listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=checkpoint_step)


def is_checkpoint_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / STATE_FILE).exists() or (path / MANIFEST_FILE).exists())


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a checkpoint folder, or a run folder to its latest (highest-step) checkpoint.

    Raises FileNotFoundError when `path` does not exist and CheckpointError when it holds
    no checkpoint or the checkpoint lacks its state / model."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run folder or a checkpoint-<step> folder)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; give a run folder or a checkpoint-<step> folder")
    if is_checkpoint_dir(path):
        found = path
    else:
        checkpoints = list_checkpoints(path)
        if not checkpoints:
            partial = sorted(p.name for p in path.iterdir() if p.name.startswith(TMP_PREFIX))
            hint = f" (only unfinished {', '.join(partial)}: the run was stopped while saving)" if partial else ""
            raise CheckpointError(
                f"{path} holds no checkpoint-<step> folder{hint}; pass a run's --output-dir after it saved "
                "at least once, or a checkpoint folder"
            )
        found = checkpoints[-1]
    for required in (STATE_FILE, MODEL_DIR):
        if not (found / required).exists():
            raise CheckpointError(f"checkpoint {found} is incomplete: {required} is missing")
    return found


# ----------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------


def _check_safetensors(path: Path) -> None:
    """Header parses and every tensor's bytes lie inside the file (catches truncation)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated ({size} bytes): not a safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise CheckpointError(f"{path} is truncated or corrupt: header of {header_len} bytes in a {size}-byte file")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path} is corrupt: unreadable safetensors header ({err})") from None
    data_size = size - 8 - header_len
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if end > data_size:
        raise CheckpointError(f"{path} is truncated: tensors need {end} bytes of data, the file has {data_size}")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(ckpt: Path) -> dict:
    """Size and SHA-256 of every file (fsynced first, so the manifest never describes unwritten bytes)."""
    files = {}
    for path in _files(ckpt):
        with path.open("rb") as f:
            os.fsync(f.fileno())
        files[path.relative_to(ckpt).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    _write_json(ckpt / MANIFEST_FILE, manifest)
    return manifest


def verify_checkpoint(ckpt: str | Path, parts: tuple[str, ...] | None = None) -> dict:
    """Check a checkpoint is complete and uncorrupted (sizes, SHA-256, safetensors headers);
    returns its state.json. `parts`: only the files under these prefixes (e.g. "model/").

    Raises CheckpointError naming the missing / truncated / changed / unreadable file."""
    ckpt = Path(ckpt)
    manifest_path = ckpt / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {ckpt} has no {MANIFEST_FILE}: it is incomplete or not a bertnas checkpoint")
    manifest = _read_json(manifest_path)
    missing, wrong, changed = [], [], []
    for rel, entry in manifest.get("files", {}).items():
        if parts is not None and not rel.startswith(parts):
            continue
        size, digest = (entry, None) if isinstance(entry, int) else (entry.get("size"), entry.get("sha256"))
        path = ckpt / rel
        if not path.is_file():
            missing.append(rel)
        elif path.stat().st_size != size:
            wrong.append(f"{rel} ({path.stat().st_size} bytes, expected {size})")
        elif digest is not None and _sha256(path) != digest:
            changed.append(rel)
    if missing:
        raise CheckpointError(f"checkpoint {ckpt} is incomplete: missing {', '.join(missing)}")
    if wrong:
        raise CheckpointError(f"checkpoint {ckpt} is corrupt: wrong size of {', '.join(wrong)} (truncated or overwritten)")
    if changed:
        raise CheckpointError(f"checkpoint {ckpt} is corrupt: {', '.join(changed)} changed since it was written "
                              f"(SHA-256 differs from {MANIFEST_FILE})")
    for path in ckpt.rglob("*.safetensors"):
        if parts is None or path.relative_to(ckpt).as_posix().startswith(parts):
            _check_safetensors(path)
    return read_state(ckpt)


READ_PARTS = (MODEL_DIR + "/", GENERATOR_DIR + "/", STATE_FILE)  # what search and export read


def verified_checkpoint(path: str | Path, parts: tuple[str, ...] | None = READ_PARTS,
                        option: str = "--checkpoint", trust: bool = False) -> Path:
    """`find_checkpoint(path)`, with the files search / export read (`parts`; None: all, for a
    resume) verified. A damaged checkpoint raises CheckpointError naming the bad file and the
    run's intact checkpoints (to pass as `option`); one without a manifest is refused unless
    `trust` (the user's --trust-checkpoint)."""
    ckpt = find_checkpoint(path)
    if parts is not None and not (ckpt / MANIFEST_FILE).is_file():
        # Training always writes the manifest last: without it the files may be a half-copied or
        # damaged checkpoint, and nothing can tell. Only the user can vouch for them.
        if not trust:
            raise CheckpointError(
                f"checkpoint {ckpt} has no {MANIFEST_FILE}, so its files cannot be verified (a copy that lost it, "
                "or a folder assembled by hand); pass --trust-checkpoint if you trust these files, or use a "
                "checkpoint written by bertnas pretrain")
        logger.warning("%s has no %s: its files are not verified (--trust-checkpoint)", ckpt, MANIFEST_FILE)
        return ckpt
    try:
        verify_checkpoint(ckpt, parts)
    except CheckpointError as err:
        intact = []
        for other in reversed(list_checkpoints(ckpt.parent)):
            if other == ckpt:
                continue
            try:
                verify_checkpoint(other, parts)
            except CheckpointError:
                continue
            intact.append(str(other))
        fix = (f"intact checkpoints: {', '.join(intact)} (pass one as {option})" if intact else
               f"no intact checkpoint in {ckpt.parent}; train again or restore the files")
        raise CheckpointError(f"{err}; {fix}") from None
    return ckpt


def read_state(ckpt: str | Path) -> dict:
    path = Path(ckpt) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {ckpt} has no {STATE_FILE}")
    state = _read_json(path)
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a bertnas training state (no 'step')")
    return state


def checkpoint_space(path: str | Path) -> tuple[Path, str]:
    """(checkpoint folder, the name of the space it was trained on), from its state.json alone:
    cheap, for checks before any model is loaded."""
    ckpt = find_checkpoint(path)
    config = read_state(ckpt).get("config") or {}
    return ckpt, str(config.get("space") or "bert")


def check_compatible(ckpt: str | Path, stored: Mapping, expected: Mapping) -> None:
    """Raise CheckpointError listing every field where the checkpoint's model / space
    signature differs from the run's."""
    diffs = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key), expected.get(key)
        if a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs this run {b!r}")
    if diffs:
        raise CheckpointError(
            f"checkpoint {ckpt} was written for another model / search space ({'; '.join(diffs)}); "
            "resume with the config it was trained with, or start a new run in a fresh --output-dir"
        )


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


write_json_atomic = _write_json  # for other run files (a few-shot split's record)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupt (invalid JSON: {err})") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_partial(run_dir: str | Path) -> None:
    """Remove temp folders left by a run killed while saving (main process only)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            if path.name.startswith(TMP_PREFIX) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def swap_folder(tmp: Path, final: Path, old: Path) -> None:
    """Put the complete folder `tmp` at `final` by renames; an existing `final` is moved to `old`
    first and deleted after, so `final` is never half-written."""
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    write_main: Callable[[Path], None],
    write_every_rank: Callable[[Path], None] | None = None,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    keep_last: int | None = None,
) -> Path:
    """Write `checkpoint-<step>` atomically and prune to the newest `keep_last`.

    Every rank must call this (it synchronises with `barrier`). `write_main(tmp)` runs on the
    main process only (model, optimizer, state.json); `write_every_rank(tmp)` on every rank
    (per-rank RNG states; collective DeepSpeed saves). Ranks share the file system."""
    run_dir = Path(run_dir)
    final = run_dir / checkpoint_name(step)
    tmp = run_dir / f"{TMP_PREFIX}{step:08d}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    if write_every_rank is not None:
        write_every_rank(tmp)
    if is_main:
        write_main(tmp)
    barrier()
    if is_main:
        write_manifest(tmp)
        _fsync_dir(tmp)
        # re-saving a step (e.g. after a resume) swaps out the old one
        swap_folder(tmp, final, run_dir / f"{TMP_PREFIX}{step:08d}.old")
        _fsync_dir(run_dir)
        if keep_last:
            for old in list_checkpoints(run_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


# ----------------------------------------------------------------------------------------
# The run folder: no mixing of runs, one run at a time, a clean stop on a signal
# ----------------------------------------------------------------------------------------

# What a training run writes into its --output-dir (all that --overwrite may delete).
RUN_FILE_RE = re.compile(r"^(checkpoint-\d+|\.tmp-checkpoint-\d+(\.old)?|log\.jsonl|config\.json|summary\.json|"
                         r"summary\.rank\d+\.json)$")


def run_files(run_dir: str | Path) -> list[Path]:
    """The files and folders of a training run in `run_dir` (checkpoints, log, config, summaries)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if RUN_FILE_RE.match(p.name))


def check_output_dir(path: str | Path, option: str = "--output-dir") -> Path:
    """An output folder bertnas can create: it is not a regular file and no folder above it is
    one (mkdir would fail with NotADirectoryError after the work). Checked before any work."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = f"{option} {path} is a file" if part == path else \
                    f"{option} {path} lies under {part}, which is a regular file"
                raise UserFileExistsError(what, f"give a folder path (not inside {part})")
            break
    return path


@contextlib.contextmanager
def output_lock(folder: str | Path, option: str = "--output-dir"):
    """A command's output folder for the block: checked, created, and locked (`RunLock`) so a
    second command writing the same folder is refused instead of mixing or replacing outputs.
    A folder created here and left empty is removed afterwards."""
    folder = check_output_dir(folder, option)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunLock(folder).acquire()
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    try:
        yield folder
    finally:
        lock.release()
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextlib.contextmanager
def sibling_lock(folder: str | Path, option: str = "--output-dir"):
    """A lock beside `folder` (`.<name>.bertnas.lock` in its parent) for commands that replace the
    folder as a whole (export writes a temporary folder and renames it into place): a second
    command on the same target is refused while the first holds it. Parents created here and
    left empty are removed afterwards."""
    folder = check_output_dir(folder, option)
    parent = folder.parent
    made = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(parent, f".{folder.name}{LOCK_FILE}")
    try:
        lock.acquire()
        yield folder
    finally:
        lock.release()
        for path in made:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()


def discard_after(run_dir: str | Path, step: int) -> list[Path]:
    """Delete `run_dir`'s checkpoints later than `step` (a run resumed from an older checkpoint
    is a new branch: its later checkpoints would be mixed with the new ones, `latest` could point
    to the old branch, and `keep_last` would prune the new checkpoints first). Returns them."""
    later = [p for p in list_checkpoints(run_dir) if checkpoint_step(p) > step]
    for path in later:
        shutil.rmtree(path)
    return later


def check_run_dir(run_dir: str | Path, resume: str | None, overwrite: bool) -> list[Path]:
    """Refuse to start a new run in a folder that holds another run (it would mix the two: old
    checkpoints kept, `latest` pointing to them, the log appended). Returns what --overwrite deletes."""
    run_dir = check_output_dir(run_dir)
    if overwrite and resume:
        raise UserError("--overwrite starts the run over and --resume-from-checkpoint continues it",
                        "pass only one of them")
    found = run_files(run_dir)
    if found and not resume and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserFileExistsError(
            f"{run_dir} already holds a training run ({names})",
            "pass --resume-from-checkpoint latest to continue it, --overwrite to start over (deletes only "
            "bertnas's files there), or another --output-dir")
    return found if overwrite else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`run_dir/.bertnas.lock` (pid, host, start time) held for a run's lifetime: a second run on
    the same folder is refused with the holder named; a lock left by a dead process on this host
    is taken over."""

    def __init__(self, run_dir: str | Path, name: str = LOCK_FILE):
        self.path = Path(run_dir) / name
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder.get("host") == me["host"] and not _pid_alive(int(holder["pid"])):
                    logger.warning("taking over the lock of a dead run (pid %s) in %s", holder["pid"], self.path.parent)
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                if holder is None:  # being written right now, or unreadable
                    time.sleep(0.2)
                    holder = self._holder() or {}
                raise self._in_use(holder)
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"cannot take the lock {self.path}", "delete it if no run uses the folder")

    def check(self) -> None:
        """Raise the error `acquire` would give if another live run holds the folder (takes nothing)."""
        holder = self._holder()
        if holder is None or (holder.get("host") == socket.gethostname() and not _pid_alive(int(holder["pid"]))):
            return
        raise self._in_use(holder)

    def _in_use(self, holder: dict) -> UserError:
        return UserError(
            f"{self.path.parent} is in use by another bertnas run (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, since {holder.get('started', '?')})",
            f"wait for it to finish or use another --output-dir (if that run is gone, delete {self.path})")

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            int(holder["pid"])
            return holder
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and int(holder["pid"]) == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False


@contextlib.contextmanager
def run_dir_guard(run_dir: str | Path, resume: str | None = None, overwrite: bool = False, is_main: bool = True):
    """For a training run's lifetime: the folder checked (`check_run_dir`), --overwrite's deletions
    done, the lock held. A run that fails before writing anything leaves no folder behind."""
    if not is_main:
        yield
        return
    run_dir = Path(run_dir)
    doomed = check_run_dir(run_dir, resume, overwrite)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    try:
        for path in doomed:  # only the run's own files; anything else in the folder stays
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        yield
    finally:
        lock.release()
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


class StopOnSignal:
    """SIGINT / SIGTERM during training set `signum` instead of killing the run: the loop
    finishes its step, saves a checkpoint and stops. A second signal stops at once (default
    action). Installed only in the main thread (elsewhere a no-op)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # the second one: give up at once
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        logger.warning("%s received: finishing this step, then saving a checkpoint (send it again to stop at once)",
                       signal.Signals(signum).name)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


# ----------------------------------------------------------------------------------------
# Pieces: model weights, RNG states, state.json
# ----------------------------------------------------------------------------------------


def save_model(model, processing_class, directory: Path) -> None:
    """`save_pretrained` of the model (safetensors) and of its processing class (a tokenizer or an
    image processor, transformers' name for either) into one folder. A plain `nn.Module` (a
    space written without transformers) is saved as `model.safetensors` alone."""
    from transformers.utils import logging as hf_logging

    if not hasattr(model, "save_pretrained"):
        from safetensors.torch import save_model as save_safetensors

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_safetensors(model, str(Path(directory) / "model.safetensors"))
        return
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar inside the training bar
    try:
        model.save_pretrained(directory)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if processing_class is not None:
        processing_class.save_pretrained(directory)


def load_model_weights(model: torch.nn.Module, directory: str | Path) -> None:
    """Load a `save_pretrained` folder's safetensors (one file or sharded) into `model` in
    place, so optimizer references to its parameters (and tied parameters) stay valid. Tied
    weights may be absent from the files."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        files = [directory / s for s in shards]
    else:
        files = [directory / "model.safetensors"]
    state = {}
    for path in files:
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the checkpoint's model weights are incomplete")
        _check_safetensors(path)
        try:
            state.update(load_file(str(path)))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{path} cannot be read: {err}") from None
    result = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"weights in {directory} do not fit this model: missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {result.unexpected_keys[:8]}; the checkpoint belongs to another model or space"
        )


def capture_rng(mask_generator: torch.Generator | None = None) -> dict:
    """This rank's RNG states: Python, torch's CPU generator, the rank's OWN accelerator (the
    current CUDA device, only when this process uses CUDA; the states of every visible GPU would
    not restore where fewer are visible) and the masking generator with its device type."""
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_device"] = torch.cuda.get_rng_state()  # the current device: accelerate sets it per rank
    if mask_generator is not None:
        state["mask_generator"] = mask_generator.get_state()
        state["mask_generator_device"] = mask_generator.device.type
    return state


def restore_rng(state: Mapping, mask_generator: torch.Generator | None = None) -> None:
    """Restore what `capture_rng` saved. Across device types (a CPU checkpoint resumed on a GPU or
    the reverse) a generator's state cannot carry over (a CPU Mersenne Twister and a CUDA Philox
    state are different things): the masking generator is then seeded from the saved state, the
    GPU's RNG left as it is, and a warning says the masks differ from an uninterrupted run's."""
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    own = state.get("cuda_device")
    if own is None and state.get("cuda"):  # written before: every visible GPU's state
        states = state["cuda"]
        index = torch.cuda.current_device() if torch.cuda.is_available() else None
        own = states[index] if index is not None and index < len(states) else None
    if own is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(own)
    elif own is not None or (torch.cuda.is_available() and torch.cuda.is_initialized()):
        logger.warning("the checkpoint was written %s a GPU: dropout draws continue from a fresh GPU / CPU "
                       "state, not the uninterrupted run's", "on" if own is not None else "without")
    if mask_generator is not None:
        if "mask_generator" not in state:
            raise CheckpointError("the checkpoint's RNG state has no masking generator")
        saved = state["mask_generator"]
        saved_type = state.get("mask_generator_device") or ("cpu" if saved.numel() > 64 else "cuda")
        if saved_type == mask_generator.device.type:
            mask_generator.set_state(saved)
        else:
            seed = int.from_bytes(hashlib.sha256(saved.numpy().tobytes()).digest()[:8], "little")
            mask_generator.manual_seed(seed)
            logger.warning("the checkpoint's masking generator ran on %s, this run masks on %s: its state cannot "
                           "move between device types, so masking continues from a seed derived from it (the "
                           "run goes on reproducibly, with other masks than an uninterrupted %s run)",
                           saved_type, mask_generator.device.type, saved_type)


def rng_file(rank: int) -> str:
    return f"rng_state_{rank}.pt"


def save_torch(obj: Any, path: Path) -> None:
    import torch

    torch.save(obj, path)


def load_torch(path: Path) -> Any:
    """Load a file our own code wrote (tensors, dicts, lists, numbers only)."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the checkpoint")
    try:
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt?): {err}") from None


def write_state(directory: Path, state: Mapping) -> None:
    _write_json(directory / STATE_FILE, dict(state))


__all__ = [
    "CheckpointError",
    "verified_checkpoint",
    "check_run_dir",
    "check_output_dir",
    "output_lock",
    "sibling_lock",
    "discard_after",
    "run_files",
    "run_dir_guard",
    "RunLock",
    "StopOnSignal",
    "checkpoint_name",
    "checkpoint_step",
    "list_checkpoints",
    "find_checkpoint",
    "verify_checkpoint",
    "read_state",
    "checkpoint_space",
    "check_compatible",
    "save_checkpoint",
    "swap_folder",
    "clean_partial",
    "save_model",
    "load_model_weights",
    "capture_rng",
    "restore_rng",
    "rng_file",
    "save_torch",
    "load_torch",
    "write_state",
    "write_manifest",
]
