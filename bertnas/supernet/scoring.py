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
import math
import time
import warnings
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
        return mlm_head(model, batch, model.bert(**model_inputs(batch), arch=ops).last_hidden_state)
    count = int((batch["labels"] != -100).sum())
    return model(**model_inputs(batch), labels=batch["labels"], arch=ops).loss * count, count


def mlm_head(model, batch: dict, hidden: torch.Tensor):
    """`mlm_loss` of a `BertNasForMaskedLM` from the path's last hidden state (what `mlm_loss`
    computes after the backbone; the evaluator's prefix cache scores from here)."""
    logits = model.cls(hidden[batch["mlm_positions"]])
    targets = batch["mlm_targets"]
    return F.cross_entropy(logits.float(), targets, reduction="sum"), targets.numel()


def electra_loss(model, batch: dict, ops: tuple):
    """ELECTRA discriminator loss (replaced-token detection), summed over the real tokens."""
    out = model(**model_inputs(batch), labels=batch["labels"], arch=ops)
    mask = batch.get("attention_mask")
    count = int(mask.sum()) if mask is not None else batch["labels"].numel()
    return out.loss * count, count


def electra_head(model, batch: dict, hidden: torch.Tensor):
    """`electra_loss` of a `BertNasForPreTraining` from the path's last hidden state: its loss
    computed as the model's forward computes it (same operations in the same order)."""
    logits = model.discriminator_predictions(hidden)
    labels = batch["labels"]
    per_token = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    mask = batch.get("attention_mask")
    if mask is None:
        return per_token.mean() * labels.numel(), labels.numel()
    weight = mask.to(logits.dtype)
    loss = (per_token * weight).sum() / weight.sum().clamp(min=1)
    count = int(mask.sum())
    return loss * count, count


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
        head_fn: `(model, batch, last hidden state) -> (sum, count)`, `loss_fn` from the path's
            last hidden state (`mlm_head`, `electra_head`). Given, on a chain supernet (a backbone
            with `chain_inputs` and `encoder.layers`: the BERT space), scoring reuses shared
            layer prefixes (see below). None: every arch runs whole, as before.
        prefix_cache_mb: memory for prefix hidden states kept between calls (0: none kept).

    Prefix reuse (chain spaces). `score_many(archs)` (and `evaluator(arch)`, a population of one)
    scores archs in the lexicographic order of their ops, a walk over the prefix trie of the chain:
    per held-out batch, the embeddings and masks are computed once, and an arch starts from the
    deepest hidden state already known for its prefix, either on the path of the arch scored
    just before (at most one path of states per batch is held while working) or kept from an
    earlier call. Kept states are limited to `prefix_cache_mb`; when full, the states whose best
    arch scored worst go first (search breeds from the best archs, whose prefixes come back).
    Eval mode and the same layers on the same inputs make every state, and so every score,
    identical (`==`) to scoring the arch whole; the first arch is checked against `loss_fn`
    (a mismatch, e.g. a `head_fn` that is not `loss_fn`'s head, turns reuse off with a warning).
    Kept states assume fixed weights: with `cache=False` they are dropped at every call;
    `clear()` drops scores and states after weights change. Models with BatchNorm (vision
    spaces) are scored as before.
    """

    def __init__(self, model: nn.Module, batches: Sequence[dict], loss_fn: LossFn = mlm_loss, metric: str = "mlm_loss",
                 higher_is_better: bool = False, space=None, calibration_batches: Sequence[dict] | None = None,
                 cache: bool = True, fast_gpu: bool = True, head_fn: Callable | None = None,
                 prefix_cache_mb: float = 256.0):
        if not batches:
            raise ValueError("The held-out set is empty: give at least one batch to score subnets on")
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {prefix_cache_mb}")
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
        self.head_fn = head_fn
        self.prefix_cache_bytes = int(prefix_cache_mb * 2**20)
        self._backbone = None if head_fn is None or self.uses_batchnorm else chain_backbone(model)
        self._checked = False  # the first prefix-reused score is compared with loss_fn's
        self._inputs: dict[int, tuple] = {}  # batch index -> (x, attn_mask, token_mask)
        self._states: dict[tuple, torch.Tensor] = {}  # (batch index, prefix ops) -> hidden state
        self._priority: dict[tuple, float] = {}  # kept prefix -> best sort_key of an arch through it
        self._held: dict[tuple, int] = {}  # kept prefix -> number of batches keeping its state
        self._state_bytes = 0
        self.layers_run = 0  # chain layers run by prefix reuse (statistics)

    def sort_key(self, score: float) -> float:
        """Lower is better after this transform (for ranking)."""
        return -score if self.higher_is_better else score

    @property
    def num_evaluated(self) -> int:
        return len(self.cache)

    @property
    def reuses_prefixes(self) -> bool:
        return self._backbone is not None

    def clear(self) -> None:
        """Forget every score and kept hidden state (after the weights changed)."""
        self.cache.clear()
        self._drop_states()

    def _drop_states(self) -> None:
        self._inputs.clear()
        self._states.clear()
        self._priority.clear()
        self._held.clear()
        self._state_bytes = 0

    def __call__(self, arch) -> float:
        return self.score_many([arch])[0]

    score = __call__

    def score_many(self, archs) -> list[float]:
        """The scores of `archs` (in their order); the ones not cached are scored together,
        sharing their layer prefixes on chain spaces (see the class doc)."""
        if self.space is not None:
            archs = [self.space.arch(a) for a in archs]
        keys = [_ops(a) for a in archs]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        fresh: dict[tuple, float] = {}
        if todo:
            start = time.perf_counter()
            if self._backbone is not None and all(len(k) == len(self._backbone.encoder.layers) for k in todo):
                fresh = self._score_prefixes(todo)
            else:
                fresh = {ops: self._score(ops) for ops in todo}
            self.seconds += time.perf_counter() - start
            if self.use_cache:
                self.cache.update(fresh)
        return [fresh[k] if k in fresh else self.cache[k] for k in keys]

    @torch.no_grad()
    def _batch_values(self, ops: tuple) -> tuple[list, int]:
        """([(sum, count) per held-out batch], total count) of the path `ops`."""
        if self.model.training:
            self.model.eval()
        with gpu_precision(self.device, self.fast_gpu):
            if self.uses_batchnorm:
                recalibrate(self.model, ops, self.calibration_batches)
            values = [self.loss_fn(self.model, batch, ops) for batch in self.batches]
        return values, _total_count(values)

    def _score(self, ops: tuple) -> float:
        values, count = self._batch_values(ops)
        return _reduce(values, count)

    # -- prefix reuse -------------------------------------------------------------------------
    @torch.no_grad()
    def _score_prefixes(self, todo: list) -> dict:
        if not self.use_cache:  # the weights may have moved since the last call
            self._drop_states()
        if self.model.training:
            self.model.eval()
        layers = self._backbone.encoder.layers
        depth = len(layers)
        paths: dict[int, tuple] = {}  # batch index -> (ops of the last path, {depth: state})
        scores = {}
        with gpu_precision(self.device, self.fast_gpu):
            for ops in sorted(todo):
                values = []
                for b, batch in enumerate(self.batches):
                    x0, attn_mask, token_mask = self._chain_inputs(b, batch)
                    last, states = paths.get(b, ((), {}))
                    shared = _common_prefix(last, ops)
                    states = {d: h for d, h in states.items() if d <= shared}
                    k, x = 0, x0
                    for d in range(depth - 1, 0, -1):  # the deepest known state of this prefix
                        if d in states:
                            k, x = d, states[d]
                            break
                        kept = self._states.get((b, ops[:d]))
                        if kept is not None:
                            k, x = d, kept
                            states[d] = kept
                            break
                    for i in range(k, depth):
                        x = layers[i](x, ops[i], attn_mask, token_mask)
                        if i + 1 < depth:
                            states[i + 1] = x
                    self.layers_run += depth - k
                    paths[b] = (ops, states)
                    values.append(self.head_fn(self.model, batch, x))
                    if not self._checked:
                        self._checked = True
                        if not _same_value(values[-1], self.loss_fn(self.model, batch, ops)):
                            warnings.warn(
                                "Evaluator: the score from reused layer prefixes differs from loss_fn's on the first "
                                "arch (head_fn is not loss_fn's head?): scoring every arch whole", stacklevel=3)
                            self._backbone = None
                            self._drop_states()
                            return {o: self._score(o) for o in todo}
                scores[ops] = _reduce(values, _total_count(values))
                self._keep(ops, self.sort_key(scores[ops]), {b: states for b, (_, states) in paths.items()})
        return scores

    def _chain_inputs(self, b: int, batch: dict) -> tuple:
        found = self._inputs.get(b)
        if found is None:
            found = self._backbone.chain_inputs(**model_inputs(batch))
            self._inputs[b] = found
        return found

    def _keep(self, ops: tuple, key: float, states_per_batch: dict) -> None:
        """Keep the prefix states of the arch just scored (priority: the best score through each
        prefix), then drop the worst-priority ones while over `prefix_cache_mb`."""
        if self.prefix_cache_bytes <= 0:
            return
        for d in range(1, len(ops)):
            prefix = ops[:d]
            for b, states in states_per_batch.items():
                state = states.get(d)
                if state is not None and (b, prefix) not in self._states:
                    self._states[(b, prefix)] = state
                    self._state_bytes += state.numel() * state.element_size()
                    self._held[prefix] = self._held.get(prefix, 0) + 1
            if prefix in self._held:
                self._priority[prefix] = min(self._priority.get(prefix, math.inf), key)
        if self._state_bytes <= self.prefix_cache_bytes:
            return
        # worst priority first; among equals the deeper (less shared) states, then the older
        order = sorted(self._states, key=lambda bp: (-self._priority[bp[1]], -len(bp[1])))
        for b, prefix in order:
            if self._state_bytes <= self.prefix_cache_bytes:
                break
            state = self._states.pop((b, prefix))
            self._state_bytes -= state.numel() * state.element_size()
            self._held[prefix] -= 1
            if not self._held[prefix]:  # no batch keeps it: forget its priority too
                del self._held[prefix], self._priority[prefix]

    def batch_scores(self, arch) -> list[float]:
        """Each held-out batch's share of the score, scaled so that their mean is the score
        (`len(batches) * batch sum / total count`); uncached. The batches are the same for every
        arch, so two archs' lists pair up batch by batch (MAGIC-A's base replacement tests the
        paired differences)."""
        if self.space is not None:
            arch = self.space.arch(arch)
        values, count = self._batch_values(_ops(arch))
        return [len(values) * float(value) / count for value, _ in values]


def chain_backbone(model: nn.Module):
    """The backbone whose chain can run layer by layer (`chain_inputs` + `encoder.layers`: the
    BERT models), or None."""
    for candidate in (getattr(model, getattr(model, "base_model_prefix", "") or "", None), model):
        if (candidate is not None and callable(getattr(candidate, "chain_inputs", None))
                and hasattr(getattr(candidate, "encoder", None), "layers")):
            return candidate
    return None


def _common_prefix(a: tuple, b: tuple) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _total_count(values) -> int:
    count = sum(int(n) for _, n in values)
    if count == 0:
        raise ValueError("The held-out batches hold no scored items (no masked tokens / labels)")
    return count


def _reduce(values, count: int) -> float:
    """The score from per-batch (sum, count): the sums added in batch order (the same order
    whichever way the values were computed, so the same float)."""
    total = 0
    for value, _ in values:
        total = total + value
    return float(total) / count


def _same_value(a: tuple, b: tuple) -> bool:
    return int(a[1]) == int(b[1]) and torch.equal(torch.as_tensor(a[0]), torch.as_tensor(b[0]))


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
    "mlm_head",
    "electra_loss",
    "electra_head",
    "chain_backbone",
    "classification_accuracy",
    "recalibrate",
    "has_batchnorm",
    "prepare_batch",
    "gpu_precision",
]
