"""`pretrain(config)`: one supernet training run, composed from its parts.

The trainer (`bertnas/train/trainer.py`) is given a task, an arch policy and an aligner; this
module is where they are chosen from a `PretrainConfig`:

- the task: `tasks.task_for(space, task)` (a registered `Task`), set up on the run's data;
- the policy: the run's search strategy (`strategy:`), else its sampler (`sampler:`), or the
  constant sampler of a fixed arch (`--arch`);
- the aligner: MAGIC-A (`align: true`) for a sampled supernet, else none.

`training_run(cfg)` is the lifecycle every training command shares (pretraining, strategies,
compression): source checks, the run folder's guard and lock, the parts, the trainer, a clean
close. Works in one process and under `accelerate launch` / torchrun / the deepspeed launcher.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Mapping

from bertnas.core.errors import UserError
from bertnas.storage import checkpoint as ckpt_lib
from bertnas.pipelines.checks import check_names, preflight
from bertnas.strategies import STRATEGIES, Strategy
from bertnas.supernet.align import Aligner
from bertnas.supernet.policy import ArchPolicy
from bertnas.supernet.sampling import build_sampler
from bertnas.tasks import Task, task_for
from bertnas.train.config import PretrainConfig, load_config
from bertnas.train.launch import build_accelerator, reset_accelerate_state
from bertnas.train.state import check_resume, resume_checkpoint
from bertnas.train.trainer import SupernetTrainer

logger = logging.getLogger("bertnas.pretrain")


def build_task(cfg: PretrainConfig) -> Task:
    """The registered task that trains `cfg.space` (the BERT chain: the one `cfg.task` names), not set up."""
    return task_for(cfg.space, cfg.task)()


def build_policy(cfg: PretrainConfig, task: Task, strategy: Strategy | None = None) -> ArchPolicy:
    """What picks each step's subnet: the strategy (given, or `cfg.strategy`), the constant
    sampler of a fixed-arch model, or the sampler `cfg.sampler`."""
    fixed, options, seed = task.fixed_arch, cfg.policy, cfg.run.seed
    if strategy is None and options.strategy:
        strategy = STRATEGIES.build(options.strategy, task.space, seed, **options.strategy_options)
    if strategy is not None:
        if fixed is not None:
            raise ValueError(f"strategy {strategy.name!r} searches a supernet; this run trains one fixed arch "
                             "(--arch / model.arch): drop the arch")
        if strategy.chooses_archs and cfg.align:
            raise ValueError(f"strategy {strategy.name!r} chooses every step's arch itself; MAGIC-A alignment "
                             "is for sampled subnets: pass --no-align (align: false)")
        if strategy.chooses_archs and cfg.deepspeed:
            raise ValueError(f"strategy {strategy.name!r} is not supported with DeepSpeed; drop --deepspeed")
        return strategy
    if fixed is not None:  # stand-alone training of one arch: the same loop, a constant sampler
        if cfg.align and int(os.environ.get("RANK", "0")) == 0:
            logger.info("fixed arch %s: training it alone (MAGIC-A alignment off)", list(fixed.ops))
        return build_sampler("constant", task.space, seed, arch=fixed)
    if options.sampler == "constant":
        raise ValueError("sampler 'constant' trains one arch: give it with --arch op,op,... (or model.arch)")
    return build_sampler(options.sampler, sampled_space(cfg, task), seed, k=options.walk_k)


def sampled_space(cfg: PretrainConfig, task: Task):
    """The space the run's subnets are drawn from: the task's, with `cfg.fixed_choices` held (a
    few-shot child supernet)."""
    fixed = cfg.policy.fixed_choices
    if not fixed:
        return task.space
    try:
        return task.space.restrict(fixed)
    except ValueError as err:
        raise UserError(f"fixed_choices {fixed}: {err}", "name choices and candidates of this space") from None


def build_aligner(cfg: PretrainConfig, task: Task, policy: ArchPolicy) -> Aligner | None:
    """MAGIC-A's aligner for a sampled supernet (`cfg.align`), else None."""
    if not cfg.align or task.fixed_arch is not None or getattr(policy, "chooses_archs", False):
        return None
    space = sampled_space(cfg, task)
    if cfg.base_arch is not None:
        base = space.arch(cfg.base_arch)
    else:  # a random subnet, from a generator of its own (the sampler's stream is untouched)
        base = space.sample(random.Random(cfg.seed + 7))
    return Aligner.from_options(space, base, cfg.alignment)


def build_trainer(cfg: PretrainConfig, task: Task | None = None, strategy: Strategy | None = None) -> SupernetTrainer:
    """The trainer of `cfg` with every part built (no folder guard: `training_run` adds it)."""
    from accelerate.utils import set_seed

    check_names(cfg)
    accelerator, use_deepspeed = build_accelerator(cfg, cfg.output_dir)
    set_seed(cfg.seed)  # identical on every rank: identical initial weights and samplers
    task = task if task is not None else build_task(cfg)
    resume = resume_checkpoint(cfg)
    with accelerator.main_process_first():
        task.setup(cfg, resume)
    if cfg.init_from_supernet and resume is None:  # a resumed child keeps its own weights
        init_from_supernet(cfg, task)
    policy = build_policy(cfg, task, strategy)
    aligner = build_aligner(cfg, task, policy)
    return SupernetTrainer(cfg, task, policy, aligner, accelerator=accelerator, use_deepspeed=use_deepspeed)


def init_from_supernet(cfg: PretrainConfig, task: Task) -> None:
    """Start `task`'s modules from the weights of the supernet at `cfg.init_from_supernet` (a run
    folder's latest checkpoint or one checkpoint), which must be the same model and space."""
    parent = ckpt_lib.verified_checkpoint(cfg.init_from_supernet, option="--init-from-supernet")
    stored = dict(ckpt_lib.read_state(parent).get("config") or {})
    if "objective" in stored:  # a parent written before the key was named task
        stored.setdefault("task", stored.pop("objective"))
    mine = cfg.to_dict()
    differ = [f"{name}: {stored.get(name)!r} in the parent, {mine[name]!r} here"
              for name in ("space", "task", "model", "generator", "space_options")
              if name in stored and stored[name] != mine[name]]
    if differ:
        raise UserError(f"--init-from-supernet {cfg.init_from_supernet} is another model ({'; '.join(differ)})",
                        "give this run the parent's model and space options (few-shot children copy its config)")
    task.load(parent)
    logger.info("weights from the supernet at %s", parent)


@contextlib.contextmanager
def training_run(cfg: PretrainConfig, task: Task | None = None,
                 strategy: Strategy | None = None) -> Iterator[SupernetTrainer]:
    """A training run's lifecycle: sources checked, the run folder guarded and locked (main
    process), the trainer built from its parts, closed cleanly however the block ends."""
    preflight(cfg)
    check_resume(cfg)  # intact, and the same fixed options, before anything is built
    task_cls = type(task) if task is not None else task_for(cfg.space, cfg.task)
    task_cls.check_sources(cfg)
    if cfg.streaming:  # a stream has no rows to index: tasks that split or sample rows cannot take one
        if not task_cls.supports_streaming:
            raise UserError(f"--streaming reads a text corpus for the mlm / electra tasks; the {task_cls.name} task "
                            "needs its rows", "drop --streaming")
        if cfg.strategy is not None:
            raise UserError(f"--streaming is not supported in a strategy run ({cfg.strategy}: strategies take "
                            "training rows by index)",
                            "drop --streaming, or pre-train with --streaming and search the checkpoint")
    is_main = int(os.environ.get("RANK", "0")) == 0  # the folder check and lock: the main process
    with ckpt_lib.run_dir_guard(cfg.output_dir, cfg.resume_from_checkpoint, cfg.overwrite, is_main):
        trainer = build_trainer(cfg, task, strategy)
        distributed = trainer.world_size > 1
        try:
            yield trainer
        finally:
            trainer.close()
            if not distributed:  # let a later run in this process build a fresh Accelerator
                reset_accelerate_state()


def pretrain(config: Mapping | PretrainConfig | str | None = None, task: Task | None = None, **overrides) -> dict:
    """Train a supernet; returns a summary (final `step`, last `loss`, `output_dir`, ...).

    `config`: a dict / namespace of options (may name a YAML file under "config"), a YAML path,
    or a PretrainConfig; keyword overrides win. `task`: a `Task` instance (default: the task
    registered for the config's space / task)."""
    cfg = load_config(config, **overrides)
    with training_run(cfg, task) as trainer:
        return trainer.train()


__all__ = ["build_aligner", "build_policy", "build_task", "build_trainer", "init_from_supernet", "pretrain",
           "sampled_space", "training_run"]
