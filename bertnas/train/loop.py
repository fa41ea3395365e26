"""Supernet pre-training: `bertnas pretrain`, `recipes/pretrain_supernet.py` and `pretrain(config)`.

One optimizer step = one sampled subnet (uniform or MAGIC-T walk), trained on
`gradient_accumulation_steps` micro-batches of MLM or ELECTRA loss, plus the MAGIC-A alignment
to the base subnet when enabled. Every rank trains the same subnet in the same step: the
sampler is seeded identically on every rank (checked with `assert_same_arch`).

Multi-process without DeepSpeed, the model is NOT wrapped in DistributedDataParallel: DDP
with `find_unused_parameters` would all-reduce the (zero) gradients of every candidate op that
the step did not use. Instead, after the last micro-batch, the gradients that exist (those of
the active path, the embeddings and the heads) are flattened into buckets, all-reduced once
and averaged. Parameters outside the path keep `grad=None`, so AdamW leaves them (and their
moments) untouched. With DeepSpeed (ZeRO-1/2), the engine reduces gradients itself.

Output dir: `log.jsonl` (one line per optimizer step, appended and flushed),
`checkpoint-<step:08d>/` (see `checkpoint.py`), `summary.json` at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt_lib
from .config import (
    BASE_REPLACEMENT,
    MIXED_PRECISION,
    OBJECTIVES,
    REPORT_TO,
    SAMPLERS,
    PretrainConfig,
    load_config,
)

logger = logging.getLogger("bertnas.pretrain")

LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"
_SHORT_OPS = {"ffn": "f", "ffn_wide": "F", "identity": "-"}


def short_arch(ops) -> str:
    """Compact arch for the progress bar: mha12 -> a12, ffn -> f, ffn_wide -> F, conv3 -> c3."""
    out = []
    for op in ops:
        if op in _SHORT_OPS:
            out.append(_SHORT_OPS[op])
        elif op.startswith("mha"):
            out.append("a" + op[3:])
        elif op.startswith("conv"):
            out.append("c" + op[4:])
        else:
            out.append(op)
    return " ".join(out)


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


# ----------------------------------------------------------------------------------------
# Data: a deterministic, resumable stream of batches
# ----------------------------------------------------------------------------------------


class BatchStream:
    """Micro-batches over a map-style dataset of fixed-length rows.

    Each epoch visits the rows in a permutation seeded by (seed, epoch). Global micro-batch i
    of an epoch is rows [i*B*W, (i+1)*B*W) of that permutation and rank r takes its r-th
    slice of B rows, so the stream is the same for any run with the same seed and world size,
    and resuming needs only (epoch, position)."""

    def __init__(self, dataset, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = len(dataset) // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training split has {len(dataset)} rows, fewer than one global batch of "
                f"{batch_size} x {world_size} processes; use more data, a smaller --batch-size or --seq-len"
            )
        self.epoch = 0
        self.position = 0
        self._order = None

    def _permutation(self) -> list[int]:
        if self._order is None or self._order[0] != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._order = (self.epoch, torch.randperm(len(self.dataset), generator=g).tolist())
        return self._order[1]

    def next(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        start = self.position * self.global_batch + self.rank * self.batch_size
        indices = self._permutation()[start:start + self.batch_size]
        self.position += 1
        return _rows(self.dataset, indices)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "world_size": self.world_size, "rows": len(self.dataset)}

    def load_state_dict(self, state: Mapping) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "world_size", "rows"):
            if key in state and state[key] != mine[key]:
                raise ckpt_lib.CheckpointError(
                    f"the checkpoint's data stream had {key}={state[key]}, this run has {mine[key]}; resume with the "
                    "same data, --batch-size, --seed and number of processes to continue exactly"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


# ----------------------------------------------------------------------------------------
# Optimisation helpers
# ----------------------------------------------------------------------------------------


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights. Shared (tied) parameters
    appear once."""
    norm_params = {id(p) for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in norm_params or name.endswith("bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_linear_decay(warmup_steps: int, total_steps: int):
    """LR factor of optimizer step `step` (0-based): rises linearly to 1 at the last warmup step,
    then falls linearly, reaching 0 just after `total_steps` (no step runs at LR 0)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / (total_steps - warmup_steps + 1))

    return factor


def all_reduce_active_grads(params, world_size: int, extra: torch.Tensor | None = None,
                            bucket_bytes: int = 256 * 2**20) -> torch.Tensor | None:
    """Average over ranks the gradients that exist, in flat buckets (one all-reduce per bucket;
    one in total for a path below `bucket_bytes`). `extra` (a small float vector of step
    statistics) rides along in the last bucket and is returned summed over ranks.

    Every rank ran the same subnet, so the same parameters hold gradients, in the same order."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    buckets: list[list[torch.Tensor]] = []
    size = 0
    for g in grads:
        if not buckets or size + g.numel() * g.element_size() > bucket_bytes or buckets[-1][0].dtype != g.dtype:
            buckets.append([])
            size = 0
        buckets[-1].append(g)
        size += g.numel() * g.element_size()
    summed_extra = None
    if extra is not None:
        if buckets and buckets[-1][0].dtype == extra.dtype and buckets[-1][0].device == extra.device:
            buckets[-1].append(extra)
        else:
            buckets.append([extra])
    for bucket in buckets:
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat)
        carries_extra = extra is not None and bucket[-1] is extra
        for tensor, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            if carries_extra and tensor is extra:
                summed_extra = reduced.clone()
            else:
                tensor.copy_(reduced.div_(world_size))
    return summed_extra


def params_sha256(module: nn.Module) -> str:
    """Hash of every parameter's bytes, in name order (equal weights on every rank check)."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------


def _space_signature(model_config, objective: str, generator_config=None) -> dict:
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "candidates", "intermediate_size", "ffn_wide_size",
            "max_position_embeddings", "type_vocab_size")
    sig = {k: getattr(model_config, k) for k in keys}
    sig["candidates"] = list(sig["candidates"])
    sig["objective"] = objective
    if generator_config is not None:
        sig["generator"] = {k: getattr(generator_config, k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size")}
    return sig


def _fill_deepspeed_config(ds: dict, cfg: PretrainConfig, world_size: int) -> dict:
    """Resolve the "auto" entries of a DeepSpeed config from the run config."""
    values = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in values.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for name, on in (("bf16", cfg.mixed_precision == "bf16"), ("fp16", cfg.mixed_precision == "fp16")):
        section = ds.setdefault(name, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = on
    return ds


class SupernetTrainer:
    """Builds everything from a `PretrainConfig` and runs / resumes the training loop."""

    def __init__(self, cfg: PretrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import DeepSpeedPlugin, set_seed

        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)

        # -- accelerator ------------------------------------------------------------------
        world_env = int(os.environ.get("WORLD_SIZE", "1"))
        kwargs = {}
        if cfg.deepspeed is not None:
            _single_process_env()  # DeepSpeed wants a process group even for one process
            ds = json.loads(Path(cfg.deepspeed).read_text())
            kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=_fill_deepspeed_config(ds, cfg, world_env))
        if cfg.report_to == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ImportError("--report-to tensorboard needs the tensorboard package: pip install tensorboard") from None
            kwargs.update(log_with="tensorboard", project_dir=str(self.output_dir))
        # Without a GPU, ask for CPU explicitly: then `accelerate launch --multi_gpu` (or a
        # MULTI_GPU config with use_cpu) and torchrun give N gloo ranks instead of N world-1 runs.
        # (Not with DeepSpeed: accelerate drops the DeepSpeed plugin on `cpu=True`.)
        cpu = not torch.cuda.is_available() and cfg.deepspeed is None and not _deepspeed_from_launcher()
        if not torch.cuda.is_available() and not cpu:
            # DeepSpeed without a GPU: name the gloo backend, or accelerate counts one process
            # per rank under torchrun / the deepspeed launcher.
            from accelerate.utils import InitProcessGroupKwargs

            kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
        self.accelerator = Accelerator(
            cpu=cpu,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            step_scheduler_with_optimizer=False,
            **kwargs,
        )
        acc = self.accelerator
        self.world_size = acc.num_processes
        self.rank = acc.process_index
        self.is_main = acc.is_main_process
        self.device = acc.device
        self.use_deepspeed = acc.distributed_type.value == "DEEPSPEED"
        if cfg.deepspeed is not None and not self.use_deepspeed:
            raise RuntimeError(
                f"--deepspeed {cfg.deepspeed} was given but accelerate did not enable DeepSpeed "
                f"(distributed type {acc.distributed_type.value}); do not combine it with ACCELERATE_USE_CPU=1 / --cpu"
            )
        if self.use_deepspeed:
            _fill_deepspeed_config(acc.state.deepspeed_plugin.deepspeed_config, cfg, self.world_size)
        set_seed(cfg.seed)  # identical on every rank: identical initial weights and samplers

        # -- tokenizer, data --------------------------------------------------------------
        with acc.main_process_first():
            self.tokenizer, self.train_data, self.val_data = _load_data(cfg, self._resume_tokenizer())
        self.stream = BatchStream(self.train_data, cfg.batch_size, self.world_size, self.rank, cfg.seed)

        # -- models, objective ------------------------------------------------------------
        self._build_models()

        # -- sampler, aligner -------------------------------------------------------------
        from ..sampling import build_sampler

        self.sampler = build_sampler(cfg.sampler, self.space, cfg.seed, k=cfg.walk_k)
        self.aligner = None
        if cfg.align:
            from ..align import Aligner

            if cfg.base_arch is not None:
                base = self.space.arch(cfg.base_arch)
            else:  # a random subnet, from a generator of its own (the sampler's stream is untouched)
                base = self.space.sample(random.Random(cfg.seed + 7))
            self.aligner = Aligner(
                self.space, base, block_size=cfg.align_block_size, weight=cfg.align_weight,
                replacement=cfg.base_replacement, every=cfg.base_every, top_p=cfg.base_top_p,
                tolerance=cfg.base_tolerance, population=cfg.base_population,
            )

        # -- optimizer, scheduler ---------------------------------------------------------
        self.optimizer = torch.optim.AdamW(
            param_groups(self.trainable, cfg.weight_decay), lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_linear_decay(cfg.warmup_steps, cfg.max_steps)
        )
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

        # Masking randomness: one generator per rank (ranks see different data, so different masks).
        self.mask_generator = torch.Generator(device=self.device)
        self.mask_generator.manual_seed(cfg.seed * 1_000_003 + 1 + self.rank)
        # Dropout differs across ranks too (the initial weights above were identical).
        torch.manual_seed(cfg.seed + 1 + self.rank)

        self.step = 0
        self.resumed_from = None
        if cfg.resume_from_checkpoint:
            self._resume(cfg.resume_from_checkpoint)

        # -- distribution -----------------------------------------------------------------
        if self.use_deepspeed:
            # DeepSpeed needs the module; ZeRO-1/2 keep full weights on every rank, so the
            # objective may keep calling the sub-models directly.
            self.engine, self.optimizer = acc.prepare(self.trainable, self.optimizer)
            if self.resumed_from is not None:
                self._load_deepspeed(self.resumed_from)
        else:
            self.engine = self.trainable
            self.optimizer = acc.prepare(self.optimizer)
            if self.world_size > 1:
                self._broadcast_parameters()

    # -- building -------------------------------------------------------------------------
    def _build_models(self):
        from ..models import BertNasConfig, BertNasForMaskedLM, BertNasForPreTraining
        from ..spaces import BertSpace
        from .objectives import ElectraObjective, MLMObjective

        cfg = self.cfg
        tok = self.tokenizer
        common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
        if cfg.init_from_bert:
            if cfg.objective != "mlm":
                raise ValueError("--init-from-bert works with --objective mlm (a BERT checkpoint has no ELECTRA discriminator)")
            # Sizes come from the BERT; only the search space and dropout come from the config.
            kept = ("candidates", "hidden_dropout_prob", "attention_probs_dropout_prob")
            model_kwargs = {k: v for k, v in cfg.model.items() if k in kept}
            self.model = BertNasForMaskedLM.from_bert(cfg.init_from_bert, **model_kwargs)
            if self.model.config.vocab_size != len(tok):
                raise ValueError(
                    f"the BERT at {cfg.init_from_bert} has vocab {self.model.config.vocab_size} but the tokenizer has "
                    f"{len(tok)}; use that BERT's tokenizer (--tokenizer {cfg.init_from_bert})"
                )
            model_config = self.model.config
        else:
            model_config = BertNasConfig(**{**cfg.model, **common})
        self.generator_model = None
        if cfg.objective == "mlm":
            if not cfg.init_from_bert:
                self.model = BertNasForMaskedLM(model_config)
            self.objective = MLMObjective(self.model, tok, cfg.mlm_probability)
            modules = {"model": self.model}
        else:
            self.model = BertNasForPreTraining(model_config)
            # ELECTRA generator: a fixed BERT-like path [mha, ffn] x L/2 that shares the
            # discriminator's token embeddings (so the same hidden size; make it shallower).
            gen_kwargs = {**cfg.generator, **common}
            gen_kwargs.setdefault("hidden_size", model_config.hidden_size)
            gen_layers = gen_kwargs.setdefault("num_hidden_layers", 2)
            mha = f"mha{_heads(gen_kwargs['hidden_size'])}"
            gen_kwargs.setdefault("arch", ([mha, "ffn"] * gen_layers)[:gen_layers])
            gen_kwargs.setdefault("candidates", sorted(set(gen_kwargs["arch"])))
            for key in ("max_position_embeddings", "type_vocab_size", "hidden_dropout_prob",
                        "attention_probs_dropout_prob"):
                gen_kwargs.setdefault(key, getattr(model_config, key))
            self.generator_model = BertNasForMaskedLM(BertNasConfig(**gen_kwargs))
            self.objective = ElectraObjective(self.model, self.generator_model, tok, disc_weight=cfg.disc_weight)
            modules = {"model": self.model, "generator": self.generator_model}
        # One container, so DeepSpeed gets a single module and parameter groups see shared
        # (tied) parameters once.
        self.trainable = nn.ModuleDict(modules).to(self.device)
        self.trainable.train()
        self.space = BertSpace(self.model.config)
        self.signature = _space_signature(
            self.model.config, cfg.objective, self.generator_model.config if self.generator_model is not None else None
        )

    def _broadcast_parameters(self):
        """Start every rank from rank 0's weights (they are equal by seeding; this makes sure)."""
        import torch.distributed as dist

        for tensor in list(self.trainable.parameters()) + list(self.trainable.buffers()):
            dist.broadcast(tensor.data, src=0)

    # -- checkpoints ----------------------------------------------------------------------
    def _state(self) -> dict:
        cfg = self.cfg
        aligner_state = self.aligner.state_dict() if self.aligner is not None else None
        return {
            "step": self.step,
            "world_size": self.world_size,
            "sampler": self.sampler.state_dict(),
            "aligner": aligner_state,
            "data": {"source": _absolute_if_local(cfg.data), "seq_len": cfg.seq_len, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                     "tokenizer": cfg.tokenizer},
            "stream": self.stream.state_dict(),
            "config": cfg.to_dict(),
            "signature": self.signature,
            "deepspeed": self.use_deepspeed,
            "bertnas_version": _version(),
        }

    def save(self):
        acc = self.accelerator
        optimizer = self.optimizer

        def write_main(tmp: Path):
            ckpt_lib.save_model(self.model, self.tokenizer, tmp / ckpt_lib.MODEL_DIR)
            if self.generator_model is not None:
                ckpt_lib.save_model(self.generator_model, self.tokenizer, tmp / ckpt_lib.GENERATOR_DIR)
            if not self.use_deepspeed:
                ckpt_lib.save_torch(optimizer.state_dict(), tmp / ckpt_lib.OPTIMIZER_FILE)
            ckpt_lib.save_torch(self.scheduler.state_dict(), tmp / ckpt_lib.SCHEDULER_FILE)
            ckpt_lib.write_state(tmp, self._state())

        def write_every_rank(tmp: Path):
            ckpt_lib.save_torch(ckpt_lib.capture_rng(self.mask_generator), tmp / ckpt_lib.rng_file(self.rank))
            if self.use_deepspeed:  # collective: optimizer partitions of every rank
                self.engine.save_checkpoint(str(tmp / ckpt_lib.DEEPSPEED_DIR), tag="state")

        return ckpt_lib.save_checkpoint(
            self.output_dir, self.step, write_main=write_main, write_every_rank=write_every_rank,
            is_main=self.is_main, barrier=acc.wait_for_everyone, keep_last=self.cfg.keep_last,
        )

    def _resume_tokenizer(self) -> str | None:
        """A resumed run reads the tokenizer its checkpoint saved: a WordPiece trained again on the
        same text is not guaranteed to give the same vocabulary (tokenizers trains in parallel)."""
        spec = self.cfg.resume_from_checkpoint
        if not spec or self.cfg.tokenizer or self.cfg.init_from_bert:
            return None
        if spec == "latest":
            if not ckpt_lib.list_checkpoints(self.output_dir):
                return None
            spec = self.output_dir
        return str(ckpt_lib.find_checkpoint(spec) / ckpt_lib.MODEL_DIR)

    def _resume(self, spec: str):
        if spec == "latest":
            if not ckpt_lib.list_checkpoints(self.output_dir):
                if self.is_main:
                    logger.warning("--resume-from-checkpoint latest: no checkpoint in %s yet, starting from step 0",
                                   self.output_dir)
                return
            path = ckpt_lib.find_checkpoint(self.output_dir)
        else:
            path = ckpt_lib.find_checkpoint(spec)
        state = ckpt_lib.verify_checkpoint(path)
        ckpt_lib.check_compatible(path, state.get("signature", {}), self.signature)
        if state.get("deepspeed", False) != self.use_deepspeed:
            raise ckpt_lib.CheckpointError(
                f"checkpoint {path} was written {'with' if state.get('deepspeed') else 'without'} DeepSpeed; "
                f"resume it {'with' if state.get('deepspeed') else 'without'} --deepspeed"
            )
        ckpt_lib.load_model_weights(self.model, path / ckpt_lib.MODEL_DIR)
        if self.generator_model is not None:
            ckpt_lib.load_model_weights(self.generator_model, path / ckpt_lib.GENERATOR_DIR)
        if not self.use_deepspeed:
            self.optimizer.load_state_dict(ckpt_lib.load_torch(path / ckpt_lib.OPTIMIZER_FILE))
        self.scheduler.load_state_dict(ckpt_lib.load_torch(path / ckpt_lib.SCHEDULER_FILE))
        self.sampler.load_state_dict(state["sampler"])
        if self.aligner is not None:
            if state.get("aligner") is None:
                raise ckpt_lib.CheckpointError(f"checkpoint {path} was trained without --align; resume with --no-align")
            self.aligner.load_state_dict(state["aligner"])
        self.stream.load_state_dict(state["stream"])
        rng_path = path / ckpt_lib.rng_file(self.rank)
        if not rng_path.is_file():
            raise ckpt_lib.CheckpointError(
                f"checkpoint {path} has no RNG state for rank {self.rank}: it was written by "
                f"{state.get('world_size')} process(es); resume with the same number of processes"
            )
        ckpt_lib.restore_rng(ckpt_lib.load_torch(rng_path), self.mask_generator)
        self.step = int(state["step"])
        self.resumed_from = path
        if self.is_main:
            logger.info("resumed from %s at step %d", path, self.step)

    def _load_deepspeed(self, path: Path):
        load_path, _ = self.engine.load_checkpoint(
            str(path / ckpt_lib.DEEPSPEED_DIR), tag="state", load_module_strict=False,
            load_optimizer_states=True, load_lr_scheduler_states=False,
        )
        if load_path is None:
            raise ckpt_lib.CheckpointError(f"DeepSpeed could not load the optimizer state in {path / ckpt_lib.DEEPSPEED_DIR}")

    # -- evaluation (MAGIC-A base replacement) ---------------------------------------------
    @torch.no_grad()
    def evaluate(self, arch) -> float:
        """Held-out loss of one subnet: the same rows and masks for every arch and every call."""
        g = torch.Generator(device=self.device)
        g.manual_seed(self.cfg.seed + 12345)
        rows = len(self.val_data)
        n = min(self.cfg.eval_batches * self.cfg.batch_size, rows)
        was_training = self.trainable.training
        self.trainable.eval()
        total, count = 0.0, 0
        for start in range(0, n, self.cfg.batch_size):
            batch = self._to_device(_rows(self.val_data, range(start, min(start + self.cfg.batch_size, n))))
            with self._autocast():
                out = self.objective.compute(batch, arch, g)
            total += float(out.loss)
            count += 1
        self.trainable.train(was_training)
        return total / max(1, count)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self):
        return contextlib.nullcontext() if self.use_deepspeed else self.accelerator.autocast()

    # -- the loop ---------------------------------------------------------------------------
    def train(self) -> dict:
        from tqdm.auto import tqdm

        from ..sampling import assert_same_arch

        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt_lib.clean_partial(self.output_dir)
            (self.output_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        acc.wait_for_everyone()
        if cfg.report_to != "none":
            acc.init_trackers("pretrain", config={k: v for k, v in cfg.to_dict().items()
                                                  if isinstance(v, (int, float, str, bool))})
        log_file = (self.output_dir / LOG_FILE).open("a") if self.is_main else None
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (self.is_main and cfg.progress),
                   desc="pretrain", dynamic_ncols=True)
        last = {}
        saved_at = self.step if self.resumed_from is not None else None
        check_every = 100
        first = True
        try:
            while self.step < cfg.max_steps:
                t0 = time.perf_counter()
                arch = self.sampler.next()
                if self.world_size > 1 and (first or self.step % check_every == 0):
                    assert_same_arch(arch, acc)
                first = False
                record = self._train_step(arch)
                self.step += 1
                record["step_time_s"] = time.perf_counter() - t0
                record["tokens_per_s"] = record["tokens"] / record["step_time_s"]
                replaced = False
                if self.aligner is not None:
                    replaced = self._maybe_replace_base(arch)
                    record["base_arch"] = list(self.aligner.base_arch.ops)
                    if self.aligner.base_score is not None:
                        record["base_score"] = self.aligner.base_score
                    if replaced:
                        record["base_replaced"] = True
                line = {"step": self.step, **record}
                if log_file is not None:
                    log_file.write(json.dumps(line) + "\n")
                    log_file.flush()
                if cfg.report_to != "none":
                    acc.log({k: v for k, v in line.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                            step=self.step)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", arch=short_arch(record["arch"]),
                                tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
                last = line
                if (cfg.save_steps and self.step % cfg.save_steps == 0) or self.step == cfg.max_steps:
                    self.save()
                    saved_at = self.step
            if saved_at != self.step:
                self.save()
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        return self._finish(last)

    def _train_step(self, arch) -> dict:
        """`gradient_accumulation_steps` micro-batches of one subnet, then one optimizer step."""
        acc, cfg = self.accelerator, self.cfg
        loss_sum = align_sum = 0.0
        metrics_sum: dict[str, float] = {}
        tokens = 0
        for _ in range(cfg.gradient_accumulation_steps):
            batch = self._to_device(self.stream.next())
            with acc.accumulate(self.engine):
                with self._autocast():
                    out = self.objective.compute(batch, arch, self.mask_generator)
                    loss = out.loss
                    if self.aligner is not None:  # the base subnet sees what the sampled one saw
                        seen = out.inputs if getattr(out, "inputs", None) is not None else batch
                        align = self.aligner.align_loss(self._align_model(), seen, out.hidden_states, arch=arch)
                        loss = loss + self.aligner.weight * align
                        align_sum += float(align.detach())
                acc.backward(loss)
            loss_sum += float(loss.detach())
            for k, v in (out.metrics or {}).items():
                if isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1):
                    metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v)
            mask = batch.get("attention_mask")
            tokens += int(mask.sum()) if mask is not None else batch["input_ids"].numel()

        n = cfg.gradient_accumulation_steps
        stats = torch.tensor([loss_sum, align_sum, float(tokens)], dtype=torch.float32, device=self.device)
        if self.world_size > 1:
            if self.use_deepspeed:
                import torch.distributed as dist

                dist.all_reduce(stats)
            else:
                stats = all_reduce_active_grads(self.params, self.world_size, extra=stats,
                                                bucket_bytes=int(cfg.grad_bucket_mb * 2**20))
        grad_norm = None
        if cfg.max_grad_norm and cfg.max_grad_norm > 0:
            grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        if not getattr(self.optimizer, "step_was_skipped", False):
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        w = self.world_size
        record = {
            "loss": float(stats[0]) / (n * w),
            "lr": lr,
            "world_size": w,
            "arch": list(arch.ops),
            "tokens": int(stats[2]),
        }
        if self.aligner is not None:
            record["align_loss"] = float(stats[1]) / (n * w)
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        for k, v in metrics_sum.items():  # this rank's metrics, averaged over micro-batches
            record[k] = v / n
        return record

    def _align_model(self):
        # The backbone: the base subnet's hidden states are all MAGIC-A needs, so its no-grad
        # forward skips the MLM / discriminator head.
        return self.model.bert

    def _maybe_replace_base(self, arch) -> bool:
        cfg = self.cfg
        if cfg.base_replacement == "none":
            return False
        if cfg.base_replacement == "beat":
            candidates = [arch]
        else:  # a population drawn independently of the training sampler, the same on every rank
            rng = random.Random(cfg.seed * 7919 + self.step)
            candidates = [self.space.sample(rng) for _ in range(cfg.base_population)]
        return bool(self.aligner.maybe_replace(self.step, self.evaluate, candidates))

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
            summary["base_arch"] = list(self.aligner.base_arch.ops)
        if self.cfg.verify_ranks:
            digest = params_sha256(self.trainable)
            summary["param_sha256"] = digest
            digests = acc.gather_for_metrics([digest], use_gather_object=True) if self.world_size > 1 else [digest]
            summary["rank_param_sha256"] = list(digests)
            summary["ranks_in_sync"] = len(set(digests)) == 1
            (self.output_dir / f"summary.rank{self.rank}.json").write_text(json.dumps(summary, indent=2) + "\n")
            if not summary["ranks_in_sync"]:
                raise RuntimeError(f"ranks ended with different weights: {digests}")
        if self.is_main:
            (self.output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def close(self):
        """Clean shutdown (avoids the sporadic gloo abort at exit of 2-rank CPU runs)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        for name in ("engine", "optimizer", "trainable", "model", "generator_model", "objective"):
            if hasattr(self, name):
                delattr(self, name)
        acc.free_memory()
        acc.end_training()


_DATA_CACHE: dict = {}


def _absolute_if_local(source: str | None) -> str | None:
    """A local corpus path as an absolute path, so a search run from another folder finds it."""
    if source is not None and Path(source).expanduser().exists():
        return str(Path(source).expanduser().resolve())
    return source


def _load_data(cfg: PretrainConfig, tokenizer_source: str | None = None):
    """(tokenizer, train rows, held-out rows). Kept for the life of the process, so repeated
    `pretrain()` calls on the same data (a demo, tests) tokenise and pack it once."""
    from . import data as data_lib

    tokenizer_source = tokenizer_source or cfg.tokenizer or cfg.init_from_bert
    key = (cfg.data, tokenizer_source, cfg.tokenizer_vocab_size, cfg.seq_len, cfg.val_fraction, cfg.seed)
    if key not in _DATA_CACHE:
        texts = data_lib.load_texts(cfg.data)
        tokenizer = data_lib.build_tokenizer(tokenizer_source, texts, vocab_size=cfg.tokenizer_vocab_size)
        train, val = data_lib.build_lm_splits(texts, tokenizer, cfg.seq_len, val_fraction=cfg.val_fraction,
                                              seed=cfg.seed)
        _DATA_CACHE.clear()  # one corpus at a time: memory stays bounded
        _DATA_CACHE[key] = (tokenizer, train, val)
    return _DATA_CACHE[key]


def _single_process_env() -> None:
    """Launcher variables for a plain `python script.py` run (a no-op under a launcher)."""
    if "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _deepspeed_from_launcher() -> bool:
    """`accelerate launch` with a DeepSpeed config sets this; the plugin comes from the env."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def _heads(hidden: int) -> int:
    """Heads for the generator's attention: 64-wide heads when they fit, else the most of 12/8/6/4/2/1."""
    if hidden >= 64 and hidden % 64 == 0:
        return hidden // 64
    return next(h for h in (12, 8, 6, 4, 2, 1) if hidden % h == 0)


def _version() -> str:
    try:
        from .. import __version__

        return __version__
    except ImportError:
        return "unknown"


def _rows(dataset, indices) -> dict:
    rows = dataset[list(indices)]
    batch = {}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in rows:
            value = rows[key]
            batch[key] = value if isinstance(value, torch.Tensor) else torch.stack([torch.as_tensor(v) for v in value])
    return batch


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


def pretrain(config: Mapping | argparse.Namespace | PretrainConfig | str | None = None, **overrides) -> dict:
    """Train a supernet; returns a summary (final `step`, last `loss`, `output_dir`, ...).

    `config`: a dict / namespace of options (may name a YAML file under "config"), a YAML path,
    or a PretrainConfig; keyword overrides win. Works in one process and under
    `accelerate launch` / torchrun / the deepspeed launcher."""
    from accelerate.state import AcceleratorState, GradientState

    cfg = load_config(config, **overrides)
    trainer = SupernetTrainer(cfg)
    distributed = trainer.world_size > 1
    try:
        summary = trainer.train()
    finally:
        trainer.close()
        if not distributed:  # let a later pretrain() in this process build a fresh Accelerator
            AcceleratorState._reset_state(True)
            GradientState._reset_state()
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bertnas pretrain` and `recipes/pretrain_supernet.py`. Unset options keep the
    YAML's value (or the built-in toy default)."""
    a = parser.add_argument
    a("--config", help="YAML config (recipes/configs/toy.yaml, recipes/configs/bert_base_magic.yaml)")
    a("--output-dir", help="run folder: log.jsonl, checkpoint-<step>/, summary.json")
    a("--objective", choices=OBJECTIVES)
    a("--sampler", choices=SAMPLERS, help="uniform (SPOS) or walk (MAGIC-T)")
    a("--walk-k", type=int, help="layers changed per walk step")
    a("--align", action=argparse.BooleanOptionalAction, default=None, help="MAGIC-A alignment to a base subnet")
    a("--align-weight", type=float)
    a("--align-block-size", type=int, help="chain layers per aligned block")
    a("--base-arch", type=lambda s: s.split(","), help="comma-separated op names of the initial base subnet")
    a("--base-replacement", choices=BASE_REPLACEMENT)
    a("--base-every", type=int)
    a("--max-steps", type=int)
    a("--save-steps", type=int, help="checkpoint every N optimizer steps (and at the end)")
    a("--keep-last", type=int, help="checkpoints kept")
    a("--seed", type=int)
    a("--resume-from-checkpoint", help="'latest' (the output dir's newest checkpoint) or a checkpoint folder")
    a("--data", help="corpus: a .txt/.jsonl file, a folder, or a datasets name[:config] (default: embedded)")
    a("--tokenizer", help="tokenizer folder or Hub id (default: train a WordPiece on the corpus)")
    a("--init-from-bert", help="start the supernet from a BERT checkpoint (folder or Hub id)")
    a("--batch-size", type=int, help="per process, per micro-batch")
    a("--seq-len", type=int)
    a("--lr", type=float)
    a("--weight-decay", type=float)
    a("--warmup-steps", type=int)
    a("--max-grad-norm", type=float)
    a("--mlm-probability", type=float)
    a("--disc-weight", type=float, help="ELECTRA discriminator loss weight")
    a("--mixed-precision", choices=MIXED_PRECISION)
    a("--gradient-accumulation-steps", type=int)
    a("--deepspeed", help="DeepSpeed JSON config (recipes/configs/deepspeed_zero1.json / deepspeed_zero2.json)")
    a("--report-to", choices=REPORT_TO)
    a("--verify-ranks", action="store_true", default=None, help="check every rank ends with the same weights")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    # The deepspeed launcher passes --local_rank to the script; the rank is also in the env.
    a("--local_rank", "--local-rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS)
    a("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
      help="any other config key, value in YAML syntax; model.X / generator.X for model fields "
           "(e.g. --set model.hidden_size=64 --set eval_batches=8)")


def args_to_config(args: argparse.Namespace) -> dict:
    import yaml

    values = {k: v for k, v in vars(args).items() if k not in ("command", "set_items", "local_rank")}
    for item in getattr(args, "set_items", []) or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        if "." in key:
            section, field_name = key.split(".", 1)
            if section not in ("model", "generator"):
                raise ValueError(f"--set {key}: only model.X and generator.X take a dotted key")
            values.setdefault(section, {})
            values[section] = {**(values[section] or {}), field_name: value}
        else:
            values[key.replace("-", "_")] = value
    return values


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    summary = pretrain(args_to_config(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pretrain_supernet", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
