"""Scoring subnets with inherited supernet weights on a fixed held-out set.

The supernet is called with `arch=` for every subnet: nothing is rebuilt or copied per arch,
so scoring an arch costs one forward pass over the held-out batches. The task
(`bertnas/tasks/`) builds the batches once (tokens masked with a seeded generator); they move
to the device once, the model runs in eval mode under `no_grad`, and scores are cached per
arch: the same arch always gets the same score. Training's base-replacement checks use this
same class (uncached), so a run's scores and `bertnas search`'s agree.

Spaces whose ops hold BatchNorm (CNN spaces) need the running statistics of each subnet
before it is scored; `recalibrate(model, arch, batches)` does that and the `Evaluator` calls
it automatically when the model has BatchNorm modules (the BERT space has none).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# A loss function returns (sum over the batch, number of items summed), so scores average
# over tokens / examples exactly, whatever the batch sizes.
LossFn = Callable[[nn.Module, dict, tuple], tuple]


def _ops(arch) -> tuple:
    return tuple(arch.ops) if hasattr(arch, "ops") else tuple(arch)


def model_inputs(batch: dict) -> dict:
    """The entries of a held-out batch that the model takes (everything but the targets)."""
    return {k: v for k, v in batch.items() if k not in ("labels", "mlm_positions", "mlm_targets")}


# ----------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------


def mlm_loss(model, batch: dict, ops: tuple):
    """Masked-LM cross-entropy summed over the masked tokens. On a `BertNasForMaskedLM` the
    head runs on the masked positions only (the loss is the same as `model(labels=...)`'s;
    the vocabulary projection of the other positions is never needed)."""
    if hasattr(model, "bert") and hasattr(model, "cls"):
        hidden = model.bert(**model_inputs(batch), arch=ops).last_hidden_state
        logits = model.cls(hidden[batch["mlm_positions"]])
        targets = batch["mlm_targets"]
        return F.cross_entropy(logits.float(), targets, reduction="sum"), targets.numel()
    count = int((batch["labels"] != -100).sum())
    return model(**model_inputs(batch), labels=batch["labels"], arch=ops).loss * count, count


def electra_loss(model, batch: dict, ops: tuple):
    """ELECTRA discriminator loss (replaced-token detection), summed over the real tokens."""
    out = model(**model_inputs(batch), labels=batch["labels"], arch=ops)
    mask = batch.get("attention_mask")
    count = int(mask.sum()) if mask is not None else batch["labels"].numel()
    return out.loss * count, count


def classification_accuracy(model, batch: dict, ops: tuple):
    """Correct predictions of a sequence-classification head (use with higher_is_better=True)."""
    logits = model(**model_inputs(batch), arch=ops).logits
    return (logits.argmax(-1) == batch["labels"]).sum(), batch["labels"].numel()


# ----------------------------------------------------------------------------------------
# BatchNorm recalibration
# ----------------------------------------------------------------------------------------


def batchnorm_modules(model: nn.Module) -> list:
    """The BatchNorm layers that keep running statistics. Those without (NB201's search cells:
    `track_running_stats=False`) normalise with each batch's own statistics in eval mode too, so
    there is nothing to recalibrate."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(batchnorm_modules(model))


@torch.no_grad()
def recalibrate(model: nn.Module, arch, batches: Iterable[dict]) -> None:
    """Recompute BatchNorm running statistics for the subnet `arch`: reset them, run the
    subnet over `batches` with BatchNorm in training mode (cumulative average, momentum=None),
    and leave the model in eval mode. Running the supernet with one arch's path trained
    stats of another arch in its shared BN layers would score it wrongly (OFA, SPOS)."""
    norms = batchnorm_modules(model)
    if not norms:
        return
    ops = _ops(arch)
    momenta = [bn.momentum for bn in norms]
    model.eval()  # dropout off; only BatchNorm collects statistics
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in batches:
            model(**model_inputs(batch), arch=ops)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
            bn.eval()


# ----------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------


class Evaluator:
    """`evaluator(arch) -> float`: the subnet's score on the held-out batches, cached per arch.

    Args:
        model: the supernet (any module taking `arch=`).
        batches: held-out batches (dicts of tensors, with targets under "labels"); moved to the
            model's device once.
        loss_fn: `(model, batch, ops) -> (sum, count)`; default masked-LM loss.
        metric: name recorded with the scores ("mlm_loss", "accuracy", ...).
        higher_is_better: False for losses (the default), True for accuracies.
        space: when given, archs are validated against it (clear errors for bad archs).
        calibration_batches: batches for BatchNorm recalibration (default: `batches`); used only
            when the model has BatchNorm modules.
        cache: keep each arch's score (search); False while the weights still move (training's
            base-replacement checks score with this same class).
        fast_gpu: on a CUDA device, score under bf16 autocast (fp16 where bf16 is missing) with
            TF32 matmuls, as the model trained; False: full fp32. Nothing changes on the CPU.
    """

    def __init__(self, model: nn.Module, batches: Sequence[dict], loss_fn: LossFn = mlm_loss, metric: str = "mlm_loss",
                 higher_is_better: bool = False, space=None, calibration_batches: Sequence[dict] | None = None,
                 cache: bool = True, fast_gpu: bool = True):
        if not batches:
            raise ValueError("The held-out set is empty: give at least one batch to score subnets on")
        self.model = model.eval()
        device = next(model.parameters()).device
        self.batches = [prepare_batch(b, device) for b in batches]
        self.calibration_batches = (self.batches if calibration_batches is None
                                    else [prepare_batch(b, device) for b in calibration_batches])
        self.loss_fn = loss_fn
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.space = space
        self.uses_batchnorm = has_batchnorm(model)
        self.cache: dict[tuple, float] = {}
        self.use_cache = cache
        self.seconds = 0.0  # time spent scoring archs not in the cache
        self.device = device
        self.fast_gpu = fast_gpu

    def sort_key(self, score: float) -> float:
        """Lower is better after this transform (for ranking)."""
        return -score if self.higher_is_better else score

    @property
    def num_evaluated(self) -> int:
        return len(self.cache)

    def __call__(self, arch) -> float:
        if self.space is not None:
            arch = self.space.arch(arch)
        ops = _ops(arch)
        if ops in self.cache:
            return self.cache[ops]
        start = time.perf_counter()
        score = self._score(ops)
        self.seconds += time.perf_counter() - start
        if self.use_cache:
            self.cache[ops] = score
        return score

    score = __call__

    @torch.no_grad()
    def _batch_values(self, ops: tuple) -> tuple[list, int]:
        """([(sum, count) per held-out batch], total count) of the path `ops`."""
        if self.model.training:
            self.model.eval()
        with gpu_precision(self.device, self.fast_gpu):
            if self.uses_batchnorm:
                recalibrate(self.model, ops, self.calibration_batches)
            values = [self.loss_fn(self.model, batch, ops) for batch in self.batches]
        count = sum(int(n) for _, n in values)
        if count == 0:
            raise ValueError("The held-out batches hold no scored items (no masked tokens / labels)")
        return values, count

    def _score(self, ops: tuple) -> float:
        values, count = self._batch_values(ops)
        total = 0
        for value, _ in values:
            total = total + value
        return float(total) / count

    def batch_scores(self, arch) -> list[float]:
        """Each held-out batch's share of the score, scaled so that their mean is the score
        (`len(batches) * batch sum / total count`); uncached. The batches are the same for every
        arch, so two archs' lists pair up batch by batch (MAGIC-A's base replacement tests the
        paired differences)."""
        if self.space is not None:
            arch = self.space.arch(arch)
        values, count = self._batch_values(_ops(arch))
        return [len(values) * float(value) / count for value, _ in values]


@contextlib.contextmanager
def gpu_precision(device, enabled: bool = True):
    """On a CUDA device: bf16 autocast (fp16 without bf16 support) and TF32 matmuls / convolutions
    for the fp32 parts, the flags restored afterwards. Anywhere else: nothing (CPU scores stay
    bit-identical)."""
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        yield
        return
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        with torch.autocast("cuda", dtype=dtype):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def prepare_batch(batch: dict, device) -> dict:
    """Move a batch to `device` and precompute what `mlm_loss` needs (masked positions and
    their targets), so scoring does no indexing work that is the same for every arch."""
    out = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    labels = out.get("labels")
    if isinstance(labels, torch.Tensor) and labels.dim() == 2 and "mlm_positions" not in out:
        positions = labels != -100
        out["mlm_positions"] = positions
        out["mlm_targets"] = labels[positions]
    return out


__all__ = [
    "Evaluator",
    "mlm_loss",
    "electra_loss",
    "classification_accuracy",
    "recalibrate",
    "has_batchnorm",
    "prepare_batch",
    "gpu_precision",
]
