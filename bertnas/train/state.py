"""A training run's state: what a checkpoint holds besides weights, and how a run resumes.

`state.json` records the step, the arch policy's entries (`sampler`, `strategy`: architecture
parameters, their optimizer, its own data stream and generators), the aligner, data-stream
position, data options, the run config and the task's signature; model weights come from the task (`task.save` / `task.load`),
optimizer and scheduler states from torch, RNG states per rank. Written atomically by
`checkpoint.save_checkpoint`; verified (manifest, safetensors headers, signature) on resume.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bertnas.core.errors import UserError
from bertnas.storage import checkpoint as ckpt_lib
from bertnas.storage import strict_json
from bertnas.storage.logs import truncate_log
from bertnas.train.config import resume_changes

CONFIG_FILE = "config.json"
HISTORY_KEY = "history"  # config.json: the run's config now, plus one entry per start / resume
# Checkpoints `check_resume` verified just before the trainer loads them, with the size and mtime
# of every file then: the load skips a second SHA-256 pass only when nothing changed since.
_VERIFIED: dict = {}

logger = logging.getLogger("bertnas.pretrain")


def _version() -> str:
    try:
        from bertnas import __version__

        return __version__
    except ImportError:
        return "unknown"


def resume_checkpoint(cfg) -> Path | None:
    """The checkpoint a run of `cfg` will resume from, or None (no resume, or 'latest' of an empty run)."""
    spec = cfg.resume_from_checkpoint
    if not spec:
        return None
    if spec == "latest":
        if not ckpt_lib.list_checkpoints(cfg.output_dir):
            return None
        return ckpt_lib.find_checkpoint(cfg.output_dir)
    return ckpt_lib.find_checkpoint(spec)


def check_resume(cfg) -> Path | None:
    """Before anything is built: the checkpoint a resume reads is intact and was written by a run
    of the same fixed options (`config.resume_changes`; e.g. an NB201 run resumed with a BERT
    config is named as such, not as a tokenizer error), and `max_steps` is not behind it."""
    path = resume_checkpoint(cfg)
    if path is None:
        return None
    ckpt_lib.verified_checkpoint(path, None, "--resume-from-checkpoint")  # sizes, SHA-256; names intact ones
    _VERIFIED[Path(path).resolve()] = _file_stats(path)
    state = ckpt_lib.read_state(path)
    resume_changes(state.get("config") or {}, cfg, path)
    step = int(state["step"])
    if cfg.max_steps < step:
        raise UserError(f"--max-steps {cfg.max_steps} is behind the checkpoint {path} (step {step})",
                        f"pass --max-steps {step} or more to continue the run")
    return path


def _file_stats(path: Path) -> tuple:
    return tuple(sorted((p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in Path(path).rglob("*") if p.is_file()))


def _verify(path: Path) -> None:
    """Verify a checkpoint before loading it, unless `check_resume` just did and no file changed."""
    if _VERIFIED.pop(Path(path).resolve(), None) != _file_stats(path):
        ckpt_lib.verified_checkpoint(path, None, "--resume-from-checkpoint")  # sizes, SHA-256; names intact ones


def write_run_config(trainer) -> None:
    """`config.json`: the config this run uses now, and `history`: one entry per start and resume
    (step, checkpoint, the options changed on resume with their old and new values, the mixed
    precision accelerate used), so a changed setting is never silent."""
    t = trainer
    path = t.output_dir / CONFIG_FILE
    history = []
    if t.resumed_from is not None and path.is_file():
        try:
            history = list(json.loads(path.read_text()).get(HISTORY_KEY) or [])
        except (ValueError, AttributeError):
            history = []
    entry = {
        "event": "resume" if t.resumed_from is not None else "start",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "step": t.step,
        "checkpoint": str(t.resumed_from) if t.resumed_from is not None else None,
        "changed": {name: {"checkpoint": old, "now": new} for name, (old, new) in getattr(t, "resume_changes", {}).items()},
        "mixed_precision": str(getattr(t.accelerator, "mixed_precision", "no")),
        "world_size": t.world_size,
    }
    data = {**t.cfg.to_dict(), HISTORY_KEY: [*history, entry]}
    path.write_text(strict_json.dumps(data, indent=2, sort_keys=True) + "\n")


class TrainState:
    """Saves and restores a `SupernetTrainer`. The parts with state, each saved explicitly: the
    step, the task (weights, data options), the policy, the aligner, the data stream, the
    optimizer, the scheduler and the per-rank generators."""

    def __init__(self, trainer):
        self.trainer = trainer

    def resume_path(self) -> Path | None:
        return resume_checkpoint(self.trainer.cfg)

    def to_dict(self) -> dict:
        t = self.trainer
        policy = t.policy.checkpoint_state()
        return {
            "step": t.step,
            "world_size": t.world_size,
            "task": t.task.name,
            "sampler": policy["sampler"],
            "aligner": t.aligner.state_dict() if t.aligner is not None else None,
            "strategy": policy["strategy"],
            "data": t.task.data_state(),
            "stream": t.stream.state_dict(),
            "config": t.cfg.to_dict(),
            "signature": t.task.signature(),
            "deepspeed": t.use_deepspeed,
            "mixed_precision": str(getattr(t.accelerator, "mixed_precision", "no")),
            "bertnas_version": _version(),
        }

    def save(self) -> Path:
        t = self.trainer
        optimizer = t.optimizer

        def write_main(tmp: Path):
            t.task.save(tmp)
            if not t.use_deepspeed:
                ckpt_lib.save_torch(optimizer.state_dict(), tmp / ckpt_lib.OPTIMIZER_FILE)
            ckpt_lib.save_torch(t.scheduler.state_dict(), tmp / ckpt_lib.SCHEDULER_FILE)
            ckpt_lib.write_state(tmp, self.to_dict())

        def write_every_rank(tmp: Path):
            ckpt_lib.save_torch(ckpt_lib.capture_rng(t.mask_generator), tmp / ckpt_lib.rng_file(t.rank))
            if t.use_deepspeed:  # collective: optimizer partitions of every rank
                t.engine.save_checkpoint(str(tmp / ckpt_lib.DEEPSPEED_DIR), tag="state")

        return ckpt_lib.save_checkpoint(
            t.output_dir, t.step, write_main=write_main, write_every_rank=write_every_rank,
            is_main=t.is_main, barrier=t.accelerator.wait_for_everyone, keep_last=t.cfg.keep_last,
        )

    def resume(self) -> None:
        t = self.trainer
        path = self.resume_path()
        if path is None:
            if t.is_main:
                logger.warning("--resume-from-checkpoint latest: no checkpoint in %s yet, starting from step 0",
                               t.output_dir)
            return
        _verify(path)
        state = ckpt_lib.read_state(path)
        ckpt_lib.check_compatible(path, state.get("signature", {}), t.task.signature())
        changes = resume_changes(state.get("config") or {}, t.cfg, path)  # fixed options: refused, named
        if state.get("deepspeed", False) != t.use_deepspeed:
            raise ckpt_lib.CheckpointError(
                f"checkpoint {path} was written {'with' if state.get('deepspeed') else 'without'} DeepSpeed; "
                f"resume it {'with' if state.get('deepspeed') else 'without'} --deepspeed"
            )
        t.task.load(path)
        if not t.use_deepspeed:
            t.optimizer.load_state_dict(ckpt_lib.load_torch(path / ckpt_lib.OPTIMIZER_FILE))
        t.scheduler.load_state_dict(ckpt_lib.load_torch(path / ckpt_lib.SCHEDULER_FILE))
        try:
            t.policy.load_checkpoint_state(state, str(path))
        except ValueError as err:  # a run resumed with another strategy / sampler than it was trained with
            raise ckpt_lib.CheckpointError(str(err)) from None
        if t.aligner is not None:
            if state.get("aligner") is None:
                raise ckpt_lib.CheckpointError(f"checkpoint {path} was trained without --align; resume with --no-align")
            t.aligner.load_state_dict(state["aligner"])
        t.stream.load_state_dict(state["stream"])
        rng_path = path / ckpt_lib.rng_file(t.rank)
        if not rng_path.is_file():
            raise ckpt_lib.CheckpointError(
                f"checkpoint {path} has no RNG state for rank {t.rank}: it was written by "
                f"{state.get('world_size')} process(es); resume with the same number of processes"
            )
        ckpt_lib.restore_rng(ckpt_lib.load_torch(rng_path), t.mask_generator)
        t.step = int(state["step"])
        t.resumed_from = path
        self._apply_schedule(state.get("config") or {})
        t.resume_changes = changes
        if t.is_main:
            logger.info("resumed from %s at step %d", path, t.step)
            for name, (old, new) in changes.items():
                logger.warning("resume: %s changed from %r to %r (applied from step %d on; recorded in config.json)",
                               name, old, new, t.step)
            # The steps after the checkpoint are trained again: their log lines and any later
            # checkpoints belong to the abandoned continuation.
            later = ckpt_lib.discard_after(t.output_dir, t.step)
            if later:
                logger.warning("resume from step %d: deleted the later checkpoints %s (they continue the run "
                               "differently from this resume)", t.step, ", ".join(p.name for p in later))
            dropped = truncate_log(t.output_dir, t.step)
            if dropped:
                logger.info("resume from step %d: dropped %d log line(s) after it from log.jsonl", t.step, dropped)

    def _apply_schedule(self, stored: dict) -> None:
        """The learning rates of the resumed run, from this run's `lr` and `max_steps` (both may
        change on resume): the loaded scheduler keeps the checkpoint's base rates and the optimizer
        its last rate, so without this a changed --lr would be recorded but not used."""
        t = self.trainer
        scheduler = t.scheduler
        old_lr = stored.get("lr")
        if old_lr and old_lr != t.cfg.lr:
            ratio = t.cfg.lr / float(old_lr)
            scheduler.base_lrs = [base * ratio for base in scheduler.base_lrs]
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas is None:
            return
        rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas)]
        for group, base, rate in zip(t.optimizer.param_groups, scheduler.base_lrs, rates):
            group["initial_lr"] = base
            group["lr"] = rate
        scheduler._last_lr = list(rates)

    def load_deepspeed(self, path: Path) -> None:
        if self.trainer.is_main:
            logger.warning("DeepSpeed reads %s with pickle (torch.load(weights_only=False)), which can run code "
                           "stored in the file: resume only from checkpoints you trust", path / ckpt_lib.DEEPSPEED_DIR)
        load_path, _ = self.trainer.engine.load_checkpoint(
            str(path / ckpt_lib.DEEPSPEED_DIR), tag="state", load_module_strict=False,
            load_optimizer_states=True, load_lr_scheduler_states=False,
        )
        if load_path is None:
            raise ckpt_lib.CheckpointError(f"DeepSpeed could not load the optimizer state in {path / ckpt_lib.DEEPSPEED_DIR}")


__all__ = ["TrainState", "resume_checkpoint", "check_resume", "write_run_config", "CONFIG_FILE", "HISTORY_KEY"]
