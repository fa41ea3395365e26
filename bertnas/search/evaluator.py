"""Scoring subnets with inherited supernet weights on a fixed held-out set.

The supernet is called with `arch=` for every subnet: nothing is rebuilt or copied per arch,
so scoring an arch costs one forward pass over the held-out batches. The batches are built
once (tokens masked with a seeded generator, moved to the device), the model runs in eval mode
under `no_grad`, and scores are cached per arch: the same arch always gets the same score.

Spaces whose ops hold BatchNorm (CNN spaces) need the running statistics of each subnet
before it is scored; `recalibrate(model, arch, batches)` does that and the `Evaluator` calls
it automatically when the model has BatchNorm modules (the BERT space has none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# A loss function returns (sum over the batch, number of items summed), so scores average
# over tokens / examples exactly, whatever the batch sizes.
LossFn = Callable[[nn.Module, dict, tuple], tuple]

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


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
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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
    """

    def __init__(self, model: nn.Module, batches: Sequence[dict], loss_fn: LossFn = mlm_loss, metric: str = "mlm_loss",
                 higher_is_better: bool = False, space=None, calibration_batches: Sequence[dict] | None = None):
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
        self.seconds = 0.0  # time spent scoring archs not in the cache

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
        self.cache[ops] = score
        return score

    score = __call__

    @torch.no_grad()
    def _score(self, ops: tuple) -> float:
        if self.model.training:
            self.model.eval()
        if self.uses_batchnorm:
            recalibrate(self.model, ops, self.calibration_batches)
        total = count = 0
        for batch in self.batches:
            value, n = self.loss_fn(self.model, batch, ops)
            total = total + value
            count += int(n)
        if count == 0:
            raise ValueError("The held-out batches hold no scored items (no masked tokens / labels)")
        return float(total) / count


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


# ----------------------------------------------------------------------------------------
# Held-out sets
# ----------------------------------------------------------------------------------------


def _rows(dataset, start: int, stop: int) -> dict:
    rows = dataset[start:stop]
    batch = {}
    for key in INPUT_KEYS:
        if key in rows:
            value = rows[key]
            batch[key] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return batch


def mlm_heldout(rows, tokenizer, batch_size: int, num_batches: int, seed: int,
                mlm_probability: float = 0.15) -> list[dict]:
    """The first `num_batches * batch_size` rows of `rows` (packed LM rows with input_ids),
    masked once with a generator seeded `seed`: the same tokens are masked for every arch."""
    from ..train.objectives import mask_tokens

    if batch_size < 1 or num_batches < 1:
        raise ValueError(f"batch_size and eval batches must be >= 1, got {batch_size} and {num_batches}")
    generator = torch.Generator().manual_seed(seed)
    n = min(len(rows), batch_size * num_batches)
    batches = []
    for start in range(0, n, batch_size):
        batch = _rows(rows, start, min(start + batch_size, n))
        masked, labels = mask_tokens(batch["input_ids"], tokenizer, generator, mlm_probability)
        batches.append({**batch, "input_ids": masked, "labels": labels})
    return batches


@torch.no_grad()
def electra_heldout(discriminator, generator_model, rows, tokenizer, batch_size: int, num_batches: int, seed: int,
                    mlm_probability: float = 0.15, base_arch=None) -> list[dict]:
    """Held-out rows corrupted once by the ELECTRA generator (seeded), with `labels` = 1 where a
    token was replaced: every arch of the discriminator is scored on the same corruption."""
    from ..train.objectives import ElectraObjective

    objective = ElectraObjective(discriminator, generator_model, tokenizer, mlm_probability=mlm_probability)
    discriminator.eval()
    generator_model.eval()
    arch = base_arch or discriminator.config.candidates[:1] * discriminator.config.num_hidden_layers
    g = torch.Generator().manual_seed(seed)
    n = min(len(rows), batch_size * num_batches)
    batches = []
    for start in range(0, n, batch_size):
        batch = _rows(rows, start, min(start + batch_size, n))
        out = objective.compute(batch, arch, g)  # one extra discriminator pass, once per batch
        replaced = (out.inputs["input_ids"] != batch["input_ids"]).long()
        batches.append({**batch, "input_ids": out.inputs["input_ids"], "labels": replaced})
    return batches


# ----------------------------------------------------------------------------------------
# Supernets from pre-training checkpoints
# ----------------------------------------------------------------------------------------


def load_supernet(checkpoint, device: str | torch.device = "cpu"):
    """(model, checkpoint folder, state) of a pre-training run folder (its latest checkpoint) or
    one checkpoint folder. The model class is the one saved (`BertNasForMaskedLM` for MLM runs,
    `BertNasForPreTraining` for ELECTRA), in eval mode."""
    from .. import models
    from ..train.checkpoint import MODEL_DIR, find_checkpoint, read_state

    ckpt = find_checkpoint(checkpoint)
    state = read_state(ckpt)
    folder = ckpt / MODEL_DIR
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: the checkpoint's model is missing")
    names = json.loads(config_path.read_text()).get("architectures") or ["BertNasForMaskedLM"]
    cls = getattr(models, names[0], None)
    if cls is None:
        raise ValueError(f"{config_path} names the model class {names[0]!r}, which is not a bertnas model")
    model = cls.from_pretrained(folder).to(device).eval()
    if not model.is_supernet:
        raise ValueError(f"{folder} holds a fixed-arch model ({model.config.arch}), not a supernet to search")
    return model, ckpt, state


def load_tokenizer(ckpt: Path):
    from transformers import AutoTokenizer

    from ..train.checkpoint import MODEL_DIR

    try:
        return AutoTokenizer.from_pretrained(ckpt / MODEL_DIR)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"No tokenizer in {ckpt / MODEL_DIR} (pre-training saves it next to the model): "
                                f"{err}") from err


def heldout_from_checkpoint(model, ckpt: Path, state: dict, *, data: str | None = None, seq_len: int | None = None,
                            batch_size: int | None = None, eval_batches: int = 8, mlm_probability: float | None = None,
                            device: str | torch.device = "cpu") -> tuple[list[dict], dict]:
    """Rebuild the run's held-out split from `state["data"]` (or from `data`, which overrides
    the source) and mask / corrupt it once. Returns (batches, description of the held-out set).

    The masking generator is seeded `data seed + 12345` and batches are cut in order, like the
    training loop's own evaluation: same options, same masked tokens."""
    from ..train.data import build_lm_splits, load_texts

    options = dict(state.get("data") or {})
    run_config = state.get("config") or {}
    if data is not None:
        options["source"] = data
    elif "source" not in options:
        raise ValueError(f"{ckpt}/state.json records no training data; pass --data SOURCE for the held-out set")
    seq_len = seq_len or options.get("seq_len") or run_config.get("seq_len") or 128
    if seq_len > model.config.max_position_embeddings:
        raise ValueError(f"seq_len {seq_len} exceeds the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}")
    val_fraction = options.get("val_fraction", 0.05)
    seed = int(options.get("seed", 0))
    batch_size = batch_size or run_config.get("batch_size") or 8
    mlm_probability = mlm_probability or run_config.get("mlm_probability", 0.15)
    tokenizer = load_tokenizer(ckpt)
    texts = load_texts(options["source"])
    _, val = build_lm_splits(texts, tokenizer, seq_len, val_fraction=val_fraction, seed=seed)
    mask_seed = seed + 12345
    if type(model).__name__ == "BertNasForPreTraining":
        from ..models import BertNasForMaskedLM
        from ..train.checkpoint import GENERATOR_DIR

        gen_dir = ckpt / GENERATOR_DIR
        if not gen_dir.is_dir():
            raise FileNotFoundError(f"{ckpt} is an ELECTRA checkpoint without {GENERATOR_DIR}/: the generator is "
                                    "needed to corrupt the held-out set")
        generator_model = BertNasForMaskedLM.from_pretrained(gen_dir).to(device)
        base = (state.get("aligner") or {}).get("base_arch")
        batches = electra_heldout(model, generator_model, val, tokenizer, batch_size, eval_batches, mask_seed,
                                  mlm_probability, base_arch=base)
        metric = "electra_disc_loss"
    else:
        batches = mlm_heldout(val, tokenizer, batch_size, eval_batches, mask_seed, mlm_probability)
        metric = "mlm_loss"
    info = {"source": options["source"], "seq_len": seq_len, "val_fraction": val_fraction, "split_seed": seed,
            "mask_seed": mask_seed, "batch_size": batch_size, "batches": len(batches),
            "rows": sum(int(b["input_ids"].shape[0]) for b in batches), "val_rows": len(val),
            "mlm_probability": mlm_probability, "metric": metric}
    return batches, info


__all__ = [
    "Evaluator",
    "mlm_loss",
    "electra_loss",
    "classification_accuracy",
    "recalibrate",
    "has_batchnorm",
    "mlm_heldout",
    "electra_heldout",
    "load_supernet",
    "load_tokenizer",
    "heldout_from_checkpoint",
    "prepare_batch",
]
