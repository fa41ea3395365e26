"""The accelerate set-up of a training run: one process, N processes (gloo on CPU, NCCL on
GPU) or DeepSpeed ZeRO-1/2, from `accelerate launch`, torchrun, the deepspeed launcher or a
plain `python` call."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from bertnas.train.config import PretrainConfig, read_deepspeed_config, resolved_mixed_precision
from bertnas.train.tracking import accelerator_kwargs

logger = logging.getLogger("bertnas.pretrain")


def fill_deepspeed_config(ds: dict, cfg: PretrainConfig, world_size: int) -> dict:
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
    precision = resolved_mixed_precision(cfg)
    for name, on in (("bf16", precision == "bf16"), ("fp16", precision == "fp16")):
        section = ds.setdefault(name, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = on
    return ds


def single_process_env() -> None:
    """Launcher variables for a plain `python script.py` run (a no-op under a launcher)."""
    if "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def deepspeed_from_launcher() -> bool:
    """`accelerate launch` with a DeepSpeed config sets this; the plugin comes from the env."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def build_accelerator(cfg: PretrainConfig, project_dir: Path):
    """An `Accelerator` for `cfg`; DeepSpeed "auto" values filled from the run config."""
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin

    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    kwargs = {}
    if cfg.deepspeed is not None:
        single_process_env()  # DeepSpeed wants a process group even for one process
        ds = read_deepspeed_config(cfg.deepspeed)
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=fill_deepspeed_config(ds, cfg, world_env))
    kwargs.update(accelerator_kwargs(cfg.report_to, project_dir))  # trackers; a missing package is one line
    # Without a GPU, ask for CPU explicitly: then `accelerate launch --multi_gpu` (or a
    # MULTI_GPU config with use_cpu) and torchrun give N gloo ranks instead of N world-1 runs.
    # (Not with DeepSpeed: accelerate drops the DeepSpeed plugin on `cpu=True`.)
    cpu = not torch.cuda.is_available() and cfg.deepspeed is None and not deepspeed_from_launcher()
    if not torch.cuda.is_available() and not cpu:
        # DeepSpeed without a GPU: name the gloo backend, or accelerate counts one process
        # per rank under torchrun / the deepspeed launcher.
        from accelerate.utils import InitProcessGroupKwargs

        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    # An unset --mixed-precision defers to accelerate (`accelerate launch --mixed_precision`,
    # ACCELERATE_MIXED_PRECISION, `accelerate config`) instead of overriding it with "no".
    precision = resolved_mixed_precision(cfg)
    acc = Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        **kwargs,
    )
    use_deepspeed = acc.distributed_type.value == "DEEPSPEED"
    if cfg.deepspeed is not None and not use_deepspeed:
        raise RuntimeError(
            f"--deepspeed {cfg.deepspeed} was given but accelerate did not enable DeepSpeed "
            f"(distributed type {acc.distributed_type.value}); do not combine it with ACCELERATE_USE_CPU=1 / --cpu"
        )
    if use_deepspeed:
        fill_deepspeed_config(acc.state.deepspeed_plugin.deepspeed_config, cfg, acc.num_processes)
    if acc.is_main_process:
        source = "--mixed-precision" if cfg.mixed_precision is not None else "accelerate's setting"
        logger.info("mixed precision: %s (%s)", acc.mixed_precision, source)
    return acc, use_deepspeed


def reset_accelerate_state() -> None:
    """Let a later run in this process build a fresh Accelerator (tests, the demo)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


__all__ = ["build_accelerator", "fill_deepspeed_config", "single_process_env", "deepspeed_from_launcher",
           "reset_accelerate_state"]
