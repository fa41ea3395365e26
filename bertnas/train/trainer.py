"""The supernet training loop: `SupernetTrainer(cfg, task, policy, aligner=None)`.

One optimizer step = one subnet from the arch policy (a sampler: uniform, MAGIC-T walk, fair,
a constant arch for stand-alone training; or a search strategy), trained on
`gradient_accumulation_steps` micro-batches of the task's objective, plus the MAGIC-A alignment
to the base subnet when an aligner is given. Every rank trains the same subnet in the same
step: policies are seeded identically on every rank and the arch hash is compared every step.

The trainer is given its parts and builds none of them: what is trained, on what data and how a
subnet is scored comes from the `Task` (set up before; `bertnas/tasks/`); which subnet trains
from the `ArchPolicy` (`bertnas/supernet/policy.py`), which sees the run through a narrow
`StepContext`, never the trainer. `bertnas/pipelines/pretrain.py` composes them from a config.
Multi-process gradients: `distributed.py`; checkpoints: `state.py` and
`bertnas/storage/checkpoint.py`; output dir: `log.jsonl` (one line per step),
`checkpoint-<step:08d>/`, `summary.json`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

from bertnas.core.errors import Interrupted, UserError
from bertnas.core.moved import moved_attributes
from bertnas.storage import checkpoint as ckpt_lib
from bertnas.storage import strict_json
from bertnas.supernet.align import step_seed
from bertnas.supernet.policy import StepContext, restore_train_mode
from bertnas.supernet.sampling import assert_same_arch
from bertnas.supernet.stream import BatchStream
from bertnas.train.config import PretrainConfig
from bertnas.train.distributed import all_reduce_active_grads, broadcast_parameters, params_sha256
from bertnas.train.launch import build_accelerator
from bertnas.storage.logs import SUMMARY_FILE, StepLog
from bertnas.train.optim import (build_optimizer, candidate_param_groups, gate_param_groups, lr_factor,
                                 param_groups)
from bertnas.train.state import TrainState, write_run_config
from bertnas.train.tracking import IntervalLog

logger = logging.getLogger("bertnas.pretrain")


class SupernetTrainer:
    """Runs / resumes the training loop of a set-up task under an arch policy (and an aligner)."""

    def __init__(self, cfg: PretrainConfig, task, policy, aligner=None, *, accelerator=None,
                 use_deepspeed: bool | None = None):
        if task.model is None:
            raise ValueError("the trainer is given a task that is set up (task.setup(cfg)); "
                             "bertnas.pipelines.pretrain.build_trainer(cfg) builds every part")
        self.cfg = cfg  # the flat config (config.json); read through its groups' views below
        run, optim, task_options = cfg.run, cfg.optim, cfg.task_options
        self.output_dir = Path(run.output_dir)
        if accelerator is None:
            accelerator, use_deepspeed = build_accelerator(cfg, self.output_dir)
        self.accelerator, self.use_deepspeed = accelerator, bool(use_deepspeed)
        acc = self.accelerator
        self.world_size = acc.num_processes
        self.rank = acc.process_index
        self.is_main = acc.is_main_process
        self.device = acc.device

        self.task = task
        self.state = TrainState(self)
        self.model = self.task.model
        self.space = self.task.space
        # One container, so DeepSpeed gets a single module and parameter groups see shared
        # (tied) parameters once.
        self.trainable = nn.ModuleDict(self.task.modules).to(self.device)
        self.trainable.train()
        self.stream = self.task.batch_stream(optim.batch_size, self.world_size, self.rank, run.seed,
                                             **self._loader_options())
        self.policy = policy
        self.aligner = aligner
        self._evaluator = None

        # -- optimizer, scheduler -----------------------------------------------------------------
        # DeepSpeed steps whole flat groups, zero gradients included: one group per candidate,
        # gated per step, keeps off-path candidates bit-identical (optim.py).
        groups = (candidate_param_groups(self.trainable, optim.weight_decay, self.task.choice_layers())
                  if self.use_deepspeed else param_groups(self.trainable, optim.weight_decay))
        self.optimizer = build_optimizer(groups, optim)  # AdamW, or SGD with momentum (optim.optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg))
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

        # Masking randomness: one generator per rank (ranks see different data, so different masks).
        self.mask_generator = torch.Generator(device=self.device)
        self.mask_generator.manual_seed(run.seed * 1_000_003 + 1 + self.rank)
        # Dropout differs across ranks too (the initial weights above were identical).
        torch.manual_seed(run.seed + 1 + self.rank)

        self.step = 0
        self.nonfinite_steps = 0  # steps skipped for a non-finite loss / gradient (max_nonfinite_steps)
        self._stop_all = False
        self.resumed_from = None
        self.context = StepContext(
            task=self.task, device=self.device, rank=self.rank, world_size=self.world_size, seed=run.seed,
            data_seed=task_options.data_seed, batch_size=optim.batch_size, max_steps=run.max_steps,
            eval_batches=task_options.eval_batches, progress=run.progress, autocast=self._autocast,
            all_reduce_mean=self._all_reduce_mean, set_weight_rows=self._set_weight_rows, modules=self.trainable)
        self.policy.setup(self.context)
        if run.resume_from_checkpoint:
            self.state.resume()

        # -- distribution -------------------------------------------------------------------------
        if self.use_deepspeed:
            # DeepSpeed needs the module; ZeRO-1/2 keep full weights on every rank, so the
            # objective may keep calling the sub-models directly.
            self.engine, self.optimizer = acc.prepare(self.trainable, self.optimizer)
            if self.resumed_from is not None:
                self.state.load_deepspeed(self.resumed_from)
        else:
            self.engine = self.trainable
            self.optimizer = acc.prepare(self.optimizer)
            if self.world_size > 1:
                broadcast_parameters(self.trainable)

    # -- what the policy's StepContext hands out ----------------------------------------------
    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def _loader_options(self) -> dict:
        """GPU runs build batches ahead in worker processes into pinned memory (the copies then
        overlap the step); CPU runs build them in the training thread, fastest there (workers would
        take the cores the step uses)."""
        if torch.device(self.device).type != "cuda":
            return {}
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return {"num_workers": max(1, min(4, cores // max(1, self.world_size) - 1)), "pin_memory": True}

    def _set_weight_rows(self, rows) -> None:
        self.stream = BatchStream(rows, self.cfg.batch_size, self.world_size, self.rank, self.cfg.seed,
                                  collate=self.task.collate, **self._loader_options())

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> Path:
        return self.state.save()

    # -- evaluation (MAGIC-A base replacement) ---------------------------------------------
    def evaluator(self):
        """The task's held-out scorer on the current weights: the same batches and code as
        `bertnas search` uses for this run, so the numbers agree."""
        if self._evaluator is None or self.task.heldout_moves_with_weights:
            batches, _ = self.task.heldout(eval_batches=self.cfg.eval_batches)
            self._evaluator = self.task.evaluator(batches, cache=False)
        return self._evaluator

    def evaluate(self, arch) -> float:
        """Held-out score of one subnet (lower is better for losses); leaves the modules in train mode."""
        with restore_train_mode(self.trainable):
            return self.evaluator()(arch)

    def _autocast(self):
        return contextlib.nullcontext() if self.use_deepspeed else self.accelerator.autocast()

    def _to_device(self, batch: dict) -> dict:
        # Pinned host memory (the GPU loader's) copies asynchronously; elsewhere this is .to().
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # -- the loop ---------------------------------------------------------------------------
    def train(self) -> dict:
        from tqdm.auto import tqdm

        cfg, run, acc = self.cfg, self.cfg.run, self.accelerator
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt_lib.clean_partial(self.output_dir)
            write_run_config(self)  # the config and its history: what changed on each resume
        acc.wait_for_everyone()
        if run.report_to != "none":
            acc.init_trackers("pretrain", config={k: v for k, v in cfg.to_dict().items()
                                                  if isinstance(v, (int, float, str, bool))})
        log = StepLog(self.output_dir, self.is_main)
        rows = IntervalLog(acc, run.logging_steps, tracking=run.report_to != "none",
                           console=self.is_main and not run.progress)  # one averaged row per interval
        bar = tqdm(total=run.max_steps, initial=self.step, disable=not (self.is_main and run.progress),
                   desc="pretrain", dynamic_ncols=True)
        last = {}
        saved_at = self.step if self.resumed_from is not None else None
        self._stop = ckpt_lib.StopOnSignal()  # SIGINT / SIGTERM: finish the step, save, stop
        self._stop.__enter__()
        try:
            while self.step < run.max_steps:
                t0 = time.perf_counter()
                arch = self.policy.choose(self.step)
                if self.world_size > 1:  # mha6/8/12 share shapes: a mismatch would mix gradients silently
                    assert_same_arch(getattr(arch, "discrete", arch), acc)
                record = self._train_step(arch)
                # the policy's own update (an architecture step), then its weights / entropy
                record.update(self.policy.after_weight_step(self.context, self.step, arch))
                record.update(self.policy.log_fields())
                _read_scalars(record)  # a policy's device scalars (arch loss, ...): one transfer
                self.step += 1
                record["step_time_s"] = time.perf_counter() - t0
                record["tokens_per_s"] = record["tokens"] / record["step_time_s"]
                if self.aligner is not None:
                    replaced = self._maybe_replace_base(arch)
                    record["base_arch"] = _json_arch(self.aligner.base_arch)
                    if self.aligner.base_score is not None:
                        record["base_score"] = self.aligner.base_score
                    decision = self.aligner.last_decision
                    if decision is not None and decision["step"] == self.step:
                        record["base_decision"] = decision  # step, rule, old / new arch, every score
                    if replaced:
                        record["base_replaced"] = True
                line = {"step": self.step, **record}
                log.write(line)
                rows.update(line)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}",
                                arch=" ".join(self.task.short_name(op) for op in arch.ops),
                                tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
                last = line
                if (run.save_steps and self.step % run.save_steps == 0) or self.step == run.max_steps:
                    self.save()
                    saved_at = self.step
                if self._stop_all and self.step < run.max_steps:
                    self._stop_on_signal(saved_at)
            if saved_at != self.step:
                self.save()
            rows.flush()
        finally:
            self._stop.__exit__(None, None, None)
            bar.close()
            log.close()
        return self._finish(last)

    def _train_step(self, arch) -> dict:
        """`gradient_accumulation_steps` micro-batches of one subnet, then one optimizer step.

        Every logged number stays on the device until one transfer at the end of the step (the
        loss, alignment loss, item count, signal flag, gradient norm and the objective's metrics
        in one vector): a GPU is never made to wait per micro-batch. The finiteness check reads
        that same vector, so it adds no synchronisation; it runs before the optimizer step, so a
        non-finite step never reaches the weights."""
        acc, optim = self.accelerator, self.cfg.optim
        if self.use_deepspeed:  # before the backward: DeepSpeed steps inside the last one
            gate_param_groups(self.optimizer.param_groups, arch, self.scheduler.get_last_lr())
        zero = torch.zeros((), dtype=torch.float32, device=self.device)
        loss_sum, align_sum = zero.clone(), zero.clone()
        metrics_sum: dict[str, torch.Tensor] = {}
        items = 0
        aligning = self.aligner is not None and self.aligner.active(self.step)
        # A MixedArch's weights are one graph (e.g. softmax(alpha)) shared by every micro-batch:
        # keep it for the next micro-batch's backward.
        mixed = getattr(arch, "discrete", None) is not None
        for micro in range(optim.gradient_accumulation_steps):
            host_batch = self.stream.next()
            items += self.task.count_items(host_batch)  # counted on the host copy: no device read
            batch = self._to_device(host_batch)
            with acc.accumulate(self.engine), self._shared_randomness(aligning, micro):
                with self._autocast():
                    out = self.task.compute(batch, arch, self.mask_generator)
                    loss = out.loss
                    if aligning:  # the base subnet sees what the sampled one saw
                        seen = out.inputs if getattr(out, "inputs", None) is not None else batch
                        align = self.aligner.align_loss(self.task.align_model(), seen, out.hidden_states, arch=arch)
                        loss = loss + self.aligner.weighted(align, out.loss, step=self.step)
                        align_sum += align.detach().float()
                acc.backward(loss, retain_graph=mixed and micro + 1 < optim.gradient_accumulation_steps)
            loss_sum += loss.detach().float()
            for k, v in (out.metrics or {}).items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = v.detach().float().reshape(())
                elif not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                metrics_sum[k] = metrics_sum[k] + v if k in metrics_sum else v

        n = optim.gradient_accumulation_steps
        stop = getattr(getattr(self, "_stop", None), "signum", None) or 0  # summed over ranks: all stop together
        stats = torch.stack([loss_sum, align_sum, zero + float(items), zero + float(stop)])
        if self.world_size > 1:
            if self.use_deepspeed:
                import torch.distributed as dist

                dist.all_reduce(stats)
            else:
                stats = all_reduce_active_grads(self.params, self.world_size, extra=stats,
                                                bucket_bytes=int(optim.grad_bucket_mb * 2**20))
        clipping = bool(optim.max_grad_norm and optim.max_grad_norm > 0)
        grad_norm = acc.clip_grad_norm_(self.params, optim.max_grad_norm) if clipping else None
        # The one host transfer of the step: everything the log and the checks need.
        names = list(metrics_sum)
        tail = [grad_norm.detach().float().reshape(()).to(self.device) if isinstance(grad_norm, torch.Tensor)
                else zero + float(grad_norm if grad_norm is not None else 0.0)]
        tail += [v if isinstance(v, torch.Tensor) else zero + float(v) for v in metrics_sum.values()]
        values = torch.cat([stats.float(), torch.stack(tail)]).tolist()
        loss_total, align_total, tokens, stop_total, norm = values[:5]
        metrics = dict(zip(names, values[5:]))
        self._stop_all = stop_total > 0
        lr = self.scheduler.get_last_lr()[0]
        finite = math.isfinite(loss_total) and math.isfinite(norm)
        if not finite and math.isfinite(loss_total) and getattr(acc, "scaler", None) is not None:
            # fp16's loss scaler overflowed: its own step skips the update and lowers the scale
            # (routine in fp16, not a divergence)
            finite = True
        if finite or self.use_deepspeed:  # DeepSpeed stepped inside its backward already
            self.optimizer.step()
            if not getattr(self.optimizer, "step_was_skipped", False):
                self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self._nonfinite_step(loss_total / (n * self.world_size), norm if clipping else None, lr)

        w = self.world_size
        record = {
            "loss": loss_total / (n * w),
            "lr": lr,
            "world_size": w,
            "arch": _json_arch(arch),
            "tokens": int(tokens),
        }
        if not finite:
            record["skipped_nonfinite"] = True
        if self.aligner is not None:
            record["align_loss"] = align_total / (n * w)
        if clipping:
            record["grad_norm"] = norm
        for k, v in metrics.items():  # this rank's metrics, averaged over micro-batches
            record[k] = v / n
        return record

    def _nonfinite_step(self, loss: float, grad_norm: float | None, lr: float) -> None:
        """A step whose loss or gradient norm is not finite was not applied: stop the run (the
        checkpoints written so far hold finite weights), unless `max_nonfinite_steps` allows
        skipping it (mixed precision overflows now and then)."""
        self.nonfinite_steps += 1
        step = self.step + 1
        allowed = int(getattr(self.cfg, "max_nonfinite_steps", 0) or 0)
        bad = [f"the loss is {loss:g}"] if not math.isfinite(loss) else []
        if grad_norm is not None and not math.isfinite(grad_norm):
            bad.append(f"the gradient norm is {grad_norm:g}")
        what = " and ".join(bad) or f"the loss is {loss:g}"
        if self.nonfinite_steps <= allowed and not self.use_deepspeed:
            logger.warning("step %d: %s; the step was skipped (%d of %d allowed)",
                           step, what, self.nonfinite_steps, allowed)
            return
        saved = (ckpt_lib.list_checkpoints(self.output_dir) or [None])[-1]
        kept = f"the last checkpoint ({saved}) holds finite weights" if saved else "no checkpoint was written"
        raise UserError(
            f"training diverged at step {step}: {what}; {kept}",
            f"lower --lr (now {self.cfg.lr:g}), e.g. to {self.cfg.lr / 10:g}, or allow skipped steps with "
            "max_nonfinite_steps in the config")

    def _shared_randomness(self, aligning: bool, micro: int):
        """MAGIC-A's common random numbers: the student and the base draw the same dropout masks
        layer by layer (seeded by run seed, step, micro-batch and rank, so a resume redraws them)."""
        if not aligning:
            return contextlib.nullcontext()
        seed = step_seed(self.cfg.seed, self.step, micro, self.rank)
        return self.aligner.shared_randomness(self.task.randomness_modules(), seed)

    def _maybe_replace_base(self, arch) -> bool:
        if not self.aligner.due(self.step):
            return False
        if self.aligner.replacement == "beat":
            candidates = [arch]
        else:  # a population drawn independently of the training sampler, the same on every rank
            rng = random.Random(self.cfg.seed * 7919 + self.step)
            candidates = [self.space.sample(rng) for _ in range(self.aligner.population)]

        def evaluate(candidate):  # per-batch scores: the aligner tests paired differences
            with restore_train_mode(self.trainable):
                return self.evaluator().batch_scores(candidate)

        self.aligner.maybe_replace(self.step, evaluate, candidates)
        if self.world_size > 1:  # every rank takes rank 0's decision: the path can never diverge
            import torch.distributed as dist

            state = [self.aligner.state_dict()]
            dist.broadcast_object_list(state, src=0)
            self.aligner.load_state_dict(state[0])
        decision = self.aligner.last_decision
        return bool(decision and decision["step"] == self.step and decision["replaced"])

    def _stop_on_signal(self, saved_at) -> None:
        """A signal reached a rank during this step: save (unless just saved) and stop."""
        import signal

        path = self.save() if saved_at != self.step else self.output_dir / ckpt_lib.checkpoint_name(self.step)
        signum = self._stop.signum or signal.SIGTERM
        raise Interrupted(f"stopped by {signal.Signals(signum).name} after step {self.step} of {self.cfg.max_steps}: "
                          f"checkpoint {path} written; continue with --resume-from-checkpoint latest "
                          f"--output-dir {self.output_dir}", signum)

    def _finish(self, last: dict) -> dict:
        acc = self.accelerator
        summary = {
            "step": self.step,
            "loss": last.get("loss"),
            "output_dir": str(self.output_dir),
            "world_size": self.world_size,
            "arch": last.get("arch"),
            "checkpoint": str(self.output_dir / ckpt_lib.checkpoint_name(self.step)),
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }
        if self.aligner is not None:
            summary["base_arch"] = _json_arch(self.aligner.base_arch)
        if self.cfg.verify_ranks:
            digest = params_sha256(self.trainable)
            summary["param_sha256"] = digest
            digests = acc.gather_for_metrics([digest], use_gather_object=True) if self.world_size > 1 else [digest]
            summary["rank_param_sha256"] = list(digests)
            summary["ranks_in_sync"] = len(set(digests)) == 1
            (self.output_dir / f"summary.rank{self.rank}.json").write_text(strict_json.dumps(summary, indent=2) + "\n")
            if not summary["ranks_in_sync"]:
                raise RuntimeError(f"ranks ended with different weights: {digests}")
        if self.is_main:
            (self.output_dir / SUMMARY_FILE).write_text(strict_json.dumps(summary, indent=2) + "\n")
        return summary

    def close(self):
        """Clean shutdown (avoids the sporadic gloo abort at exit of 2-rank CPU runs)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        for name in ("engine", "optimizer", "trainable", "model", "task", "_evaluator"):
            if hasattr(self, name):
                delattr(self, name)
        acc.free_memory()
        acc.end_training()


def _read_scalars(record: dict) -> None:
    """Replace the 0-d / one-element tensors among `record`'s values by floats, read from the
    device together."""
    keys = [k for k, v in record.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
    if keys:
        tensors = [record[k].detach().float().reshape(()) for k in keys]
        device = next((t.device for t in tensors if t.device.type != "cpu"), torch.device("cpu"))
        values = torch.stack([t.to(device) for t in tensors]).tolist()
        record.update(zip(keys, values))


def _json_arch(arch) -> list:
    """An arch as the JSON list of log.jsonl / results.json (input choices as lists)."""
    return [list(op) if isinstance(op, tuple) else op for op in arch.ops]


__all__ = ["SupernetTrainer"]

# `pretrain` is composed from the parts now; the old import path keeps working for one release.
__getattr__ = moved_attributes(__name__, {"pretrain": "bertnas.pipelines.pretrain:pretrain"})
