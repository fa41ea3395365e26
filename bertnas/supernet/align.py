"""MAGIC-A: align the sampled subnet to a best-so-far base subnet, block by block (MAGIC, Xu et al. ICML 2022; docs/training.md).

Each step the base subnet runs on the same batch without gradient; the loss adds
`weight * sum_b D_b(sampled, base)` over the hidden states at block ends (a block =
`block_size` consecutive chain layers; aligning every layer over-regularises), where D_b is the
MSE divided by the base's per-feature variance at that block end (`normalize=True`), and the
weighted term is capped at `max_ratio` times the task loss (`weighted`). See
`docs/training.md` ("MAGIC-A") for why and what was measured.

Dropout. The student runs in train mode; if the base ran in eval mode, a student identical to
the base would still differ from it by its dropout noise (block MSE ~0.1 at dropout 0.1), so
the loss would mostly measure dropout. `shared_randomness(modules, seed)` gives both forwards
the same random numbers per chain layer (common random numbers): wrap the student forward,
`align_loss` and the backward in it, and the base runs in train mode with the same dropout
masks wherever the two paths run the same op on the same input. A student equal to the base
then gets exactly 0, and a student differing in one layer gets 0 on every block before it.
So on a chain (BERT) the base's forward starts at the first layer where its path differs from
the student's, from the student's hidden state there, and stops at the last block end: the
same states bit for bit, without recomputing the embeddings and the shared prefix.

Base replacement (`maybe_replace`, every `every` steps), lower scores are better:
- "beat": the base is replaced by the best candidate that is *significantly* better than it.
- "population": a population is scored with the base; the base is kept while it ranks inside
  the top `top_p + tolerance` of the population (counting only candidates significantly better
  than it), else it is replaced by the best one, which must itself rank inside the top
  `top_p - tolerance` (hysteresis: a new base starts at least 2 * tolerance away from the edge
  at which it would be dropped).
"Significantly better": the mean score is lower by more than `margin` and, when `evaluate`
returns per-batch losses (the same held-out batches for every arch), the paired z statistic of
the per-batch differences exceeds `z`. Each check is recorded in `last_decision` (JSON-ready).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from bertnas.spaces.base import Arch, SearchSpace
from bertnas.supernet.options import AlignOptions
from bertnas.supernet.scoring import chain_backbone

REPLACEMENTS = ("none", "beat", "population")
_TARGET_KEYS = ("labels", "mlm_positions", "mlm_targets", "start_positions", "end_positions")
_MASK64 = (1 << 64) - 1


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix64 finaliser over the folded values)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 29
    return x & ((1 << 63) - 1)


def step_seed(seed: int, step: int, micro: int = 0, rank: int = 0) -> int:
    """The seed `shared_randomness` should get for one micro-batch: deterministic in (run seed,
    optimizer step, micro-batch, rank), so a resumed run draws the same dropout masks."""
    return _mix(seed, step, micro, rank)


def t_critical(z: float, dof: int) -> float:
    """The one-sided Student-t critical value with `dof` degrees of freedom at the tail
    probability of the standard normal's `z` (Cornish-Fisher expansion; within 1 % of the exact
    value for dof >= 7, e.g. z = 3, dof = 7: 4.51 vs 4.53)."""
    if dof < 1:
        return math.inf
    z3, z5, z7 = z**3, z**5, z**7
    return (z + (z3 + z) / (4 * dof) + (5 * z5 + 16 * z3 + 3 * z) / (96 * dof**2)
            + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * dof**3))


def _device_of(module: torch.nn.Module, args) -> torch.device:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _has_dropout(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    if config is not None and (getattr(config, "hidden_dropout_prob", 0) or getattr(config, "attention_probs_dropout_prob", 0)):
        return True
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())



def reads_are_free(tensor: torch.Tensor) -> bool:
    """Whether reading `tensor`'s values on the host costs no device synchronisation (CPU tensors)."""
    return tensor.device.type == "cpu"

class Aligner:
    def __init__(self, space: SearchSpace, base_arch, block_size: int = 2, weight: float = 0.1,
                 replacement: str = "population", every: int = 100, top_p: float = 0.3, tolerance: float = 0.1,
                 population: int = 8, *, normalize: bool = True, max_ratio: float | None = 0.5,
                 margin: float = 0.0, z: float = 3.0, start: int = 0, ramp: int = 0, reuse_prefix: bool = True):
        if replacement not in REPLACEMENTS:
            raise ValueError(f"Unknown base replacement {replacement!r}; choose one of {REPLACEMENTS}")
        if block_size < 1 or every < 1:
            raise ValueError(f"block_size ({block_size}) and every ({every}) must be >= 1")
        if not 0 < top_p <= 1 or tolerance < 0:
            raise ValueError(f"top_p must be in (0, 1] and tolerance >= 0, got {top_p}, {tolerance}")
        if population < 1:
            raise ValueError(f"population must be >= 1 subnets, got {population}")
        if weight < 0 or (max_ratio is not None and max_ratio < 0) or margin < 0 or z < 0 or start < 0 or ramp < 0:
            raise ValueError(f"weight, max_ratio, margin, z, start and ramp must be >= 0, got {weight}, {max_ratio}, "
                             f"{margin}, {z}, {start}, {ramp}")
        self.space = space
        self.base_arch: Arch = space.arch(base_arch)
        self.base_score: float | None = None
        self.block_size = block_size
        self.weight = weight
        self.replacement = replacement
        self.every = every
        self.top_p = top_p
        self.tolerance = tolerance
        self.population = population
        self.normalize = normalize
        self.max_ratio = max_ratio
        self.margin = margin
        self.z = z
        self.start = start
        self.ramp = ramp
        self.reuse_prefix = reuse_prefix  # start the base where it first differs from the student
        self.replacements = 0
        self.checks = 0
        self.last_decision: dict | None = None
        self.last_block_losses: torch.Tensor | None = None  # detached, one entry per block
        self._shared = 0  # active shared_randomness contexts
        self._fired = 0  # hook calls inside them
        self._warned = False

    @classmethod
    def from_options(cls, space: SearchSpace, base_arch, options: AlignOptions) -> Aligner:
        """The aligner of an options object (a run's `PretrainConfig.alignment`)."""
        return cls(space, base_arch, **options.to_dict())

    # -- common random numbers -------------------------------------------------------------
    @contextlib.contextmanager
    def shared_randomness(self, modules: Sequence[torch.nn.Module], seed: int):
        """Run every module of `modules` (the chain's layers, plus the embeddings if they have
        dropout) on a private RNG state derived from (`seed`, its index), CPU and the device of
        its input, so the student's and the base's forwards inside this context draw the same
        dropout masks layer by layer. The global RNG streams are left exactly as they were before
        each hooked call (other random work in the step, e.g. an ELECTRA generator, draws from
        them as usual). With gradient checkpointing, keep the backward inside the context too
        (recomputation then re-derives the same states)."""
        seed = int(seed)
        forks: list = []

        def pre(index):
            def hook(module, args):
                device = _device_of(module, args)
                accel = device.type not in ("cpu", "meta")
                fork = torch.random.fork_rng(devices=[device] if accel else [],
                                             device_type=device.type if accel else "cuda")
                fork.__enter__()
                forks.append(fork)
                s = _mix(seed, index)
                torch.default_generator.manual_seed(s)
                if accel:
                    mod = torch.get_device_module(device.type)
                    with mod.device(device):
                        mod.manual_seed(s)
                self._fired += 1
            return hook

        def post(module, args, output):
            if forks:
                forks.pop().__exit__(None, None, None)

        handles = []
        for i, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(pre(i)))
            handles.append(module.register_forward_hook(post, always_call=True))
        self._shared += 1
        try:
            yield self
        finally:
            self._shared -= 1
            for h in handles:
                h.remove()
            while forks:
                forks.pop().__exit__(None, None, None)

    @staticmethod
    def randomness_modules(model: torch.nn.Module) -> list:
        """The modules `shared_randomness` should hook for a bertnas model (any head class or
        the backbone): the embeddings (their dropout) followed by the chain layers."""
        backbone = getattr(model, "bert", model)
        modules = []
        if hasattr(backbone, "embeddings"):
            modules.append(backbone.embeddings)
        modules.extend(backbone.encoder.layers)
        return modules

    # -- the loss ---------------------------------------------------------------------------
    def block_ends(self, num_layers: int) -> list[int]:
        """Indices into `hidden_states` (0 = embeddings) of the block boundaries; the last layer
        always ends a block."""
        ends = list(range(self.block_size, num_layers + 1, self.block_size))
        if not ends or ends[-1] != num_layers:
            ends.append(num_layers)
        return ends

    def align_loss(self, model, batch: dict, student_hidden_states, arch=None, return_blocks: bool = False):
        """Block-wise alignment loss between the sampled subnet's hidden states and the base's on
        `batch` (sum over blocks; each block's MSE divided by the base's mean per-feature variance
        there when `normalize`). `model` is the module the student ran on (for BERT the backbone),
        called with the batch's inputs, `arch=` and `output_hidden_states=True`; the base runs
        without gradient. Inside `shared_randomness` the base runs in the
        model's current mode with the student's dropout masks; outside it, in eval mode (clean
        targets, but a training student is then also penalised for its own dropout noise).
        `arch` (the student's path) lets the base start where the two paths first differ, from
        the student's hidden state there (chain models, `reuse_prefix`; the same values and
        gradients as the whole base forward); without it the base runs whole. With
        `return_blocks`, returns (loss, per-block losses)."""
        shared = self._shared > 0
        was_training = model.training
        if not shared:
            if was_training and not self._warned and _has_dropout(model):
                warnings.warn("MAGIC-A outside Aligner.shared_randomness with dropout on: the alignment loss also "
                              "measures the student's dropout noise", stacklevel=2)
                self._warned = True
            model.eval()
        fired = self._fired
        ran = True
        try:
            with torch.no_grad():
                # The batch's inputs (targets dropped) as keyword arguments: any space's model
                # that takes `arch=` and `output_hidden_states=` can be aligned.
                inputs = {k: v for k, v in batch.items() if k not in _TARGET_KEYS}
                # the student's states are the base's where the paths agree, if both ran in the
                # same mode with the same dropout masks (shared, or both in eval mode)
                reused = (self._base_from_student(model, inputs, student_hidden_states, arch)
                          if self.reuse_prefix and (shared or not was_training) else None)
                if reused is not None:
                    base, ran = reused
                else:
                    base = model(**inputs, arch=self.base_arch, output_hidden_states=True).hidden_states
        finally:
            model.train(was_training)
        if shared and ran and self._fired == fired:
            raise RuntimeError("Aligner.shared_randomness is active but none of its modules ran in the base forward: "
                               "hook the modules of the model passed to align_loss (Aligner.randomness_modules(model))")
        mask = batch.get("attention_mask")
        # Padding positions carry no signal. On the CPU they are dropped by indexing (reading the
        # mask is free there); on a GPU that indexing (and asking whether anything is padded) would
        # wait for the device every step, so the same means are taken with the mask as weights.
        weights = None
        if mask is not None and not reads_are_free(mask):
            weights = mask.to(student_hidden_states[-1].dtype)[..., None]  # (B, T, 1)
        keep = None if mask is None or weights is not None or bool(mask.all()) else mask.bool()
        blocks = []
        for end in self.block_ends(len(student_hidden_states) - 1):
            student, target = student_hidden_states[end], base[end].to(student_hidden_states[end].dtype)
            if keep is not None:
                student, target = student[keep], target[keep]
            if weights is None:
                loss = F.mse_loss(student, target)
            else:
                count = weights.sum() * student.shape[-1]
                loss = (((student - target) ** 2) * weights).sum() / count.clamp(min=1)
            if self.normalize and weights is None:  # scale-free: shrinking every hidden state cannot lower it
                flat = target.reshape(-1, target.shape[-1]).float()
                var = flat.var(dim=0, unbiased=False).mean() if flat.shape[0] > 1 else flat.new_ones(())
                loss = loss / (var.to(loss.dtype) + 1e-6)
            elif self.normalize:
                w = weights.float()
                rows = w.sum()
                mean = (target.float() * w).sum(dim=(0, 1)) / rows.clamp(min=1)
                var = (((target.float() - mean) ** 2) * w).sum(dim=(0, 1)) / rows.clamp(min=1)
                var = torch.where(rows > 1, var.mean(), torch.ones_like(rows))
                loss = loss / (var.to(loss.dtype) + 1e-6)
            blocks.append(loss)
        blocks = torch.stack(blocks)
        self.last_block_losses = blocks.detach()
        total = blocks.sum()
        return (total, blocks) if return_blocks else total

    def _base_from_student(self, model, inputs: dict, student_hidden_states, arch):
        """(the base's hidden states, whether any layer ran), or None where the chain cannot be
        entered layer by layer (not a chain model, a mixed-op or unknown student arch).

        Chain layers 0..k-1 run the same ops in the base as in the student (k: the first layer
        where they differ), on the same inputs with the same dropout masks
        (`shared_randomness` seeds each layer's draws by its index, so skipping a module changes
        no other draw), so the student's states 0..k are the base's, bit for bit: the base
        starts at layer k from the student's state k and stops at the last block end. Every
        alignment value and gradient is the one the whole base forward gives."""
        if arch is None or getattr(arch, "discrete", None) is not None:
            return None
        backbone = chain_backbone(model)
        if backbone is None or not hasattr(backbone, "attention_mask_for"):
            return None
        ops = tuple(arch.ops) if hasattr(arch, "ops") else tuple(arch)
        base_ops = self.base_arch.ops
        layers = backbone.encoder.layers
        n = len(layers)
        if (len(ops) != n or len(base_ops) != n or len(student_hidden_states) != n + 1
                or not all(isinstance(op, str) for op in ops)):
            return None
        k = 0
        while k < n and ops[k] == base_ops[k]:
            k += 1
        stop = self.block_ends(n)[-1]
        states = [h.detach() for h in student_hidden_states[:k + 1]]
        if k >= stop:
            return states, False
        attn_mask, token_mask = backbone.attention_mask_for(inputs.get("attention_mask"), student_hidden_states[0])
        x = states[k]
        for i in range(k, stop):
            x = layers[i](x, base_ops[i], attn_mask, token_mask)
            states.append(x)
        return states, True

    def current_weight(self, step: int | None = None) -> float:
        """`weight` after the schedule: 0 before step `start`, then a linear ramp over `ramp`
        steps (`step` None: the full weight)."""
        if step is None or step >= self.start + self.ramp:
            return self.weight
        if step < self.start:
            return 0.0
        return self.weight * (step - self.start + 1) / (self.ramp + 1)

    def active(self, step: int | None = None) -> bool:
        """Whether the alignment counts at `step` (else the trainer can skip the base forward)."""
        return self.current_weight(step) > 0

    def weighted(self, align_loss: torch.Tensor, task_loss: torch.Tensor | float | None = None,
                 step: int | None = None) -> torch.Tensor:
        """The term to add to the task loss: `current_weight(step) * align_loss`, scaled down (by
        a detached factor) so that it never exceeds `max_ratio * task_loss` in value."""
        term = self.current_weight(step) * align_loss
        if self.max_ratio is None or task_loss is None:
            return term
        if isinstance(term, torch.Tensor) and not reads_are_free(term):
            # on a GPU: the same cap as tensor ops, without reading the losses back every step
            cap = self.max_ratio * (task_loss.detach() if isinstance(task_loss, torch.Tensor) else task_loss)
            cap = torch.as_tensor(cap, dtype=term.dtype, device=term.device)
            value = term.detach()
            capped = (value > cap) & (cap >= 0) & (value > 0)
            return term * torch.where(capped, cap / torch.where(capped, value, torch.ones_like(value)),
                                      torch.ones_like(value))
        cap = self.max_ratio * float(task_loss.detach() if isinstance(task_loss, torch.Tensor) else task_loss)
        value = float(term.detach())
        if value > cap >= 0 and value > 0:
            term = term * (cap / value)
        return term

    # -- base replacement ---------------------------------------------------------------------
    def due(self, step: int) -> bool:
        return self.replacement != "none" and step > 0 and step % self.every == 0

    @staticmethod
    def _scores(value) -> torch.Tensor:
        t = torch.as_tensor(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=torch.float64)
        return t.reshape(-1)

    def _compare(self, a: torch.Tensor, b: torch.Tensor) -> tuple[bool, float, float | None]:
        """Is score set `a` significantly better (lower) than `b`? Returns (better, mean
        difference a - b, paired t statistic of b - a or None when per-batch scores are not
        available). The t statistic must exceed the Student-t critical value at the normal tail
        of `z` (z = 3: one-sided 0.135 %), with n - 1 degrees of freedom."""
        diff = float(a.mean() - b.mean())
        z = None
        if a.numel() == b.numel() and a.numel() >= 2:
            d = b - a
            se = float(d.std(unbiased=True)) / math.sqrt(d.numel())
            mean = float(d.mean())
            z = mean / se if se > 0 else (math.inf if mean > 0 else (0.0 if mean == 0 else -math.inf))
        better = -diff > self.margin and (z is None or z > t_critical(self.z, a.numel() - 1))
        return better, diff, z

    def maybe_replace(self, step: int, evaluate: Callable[[Arch], object], candidates) -> bool:
        """Score the base and `candidates` with `evaluate` (lower is better) when a check is due;
        returns True when the base changed. `evaluate(arch)` returns a float, or better the
        per-batch held-out losses (a sequence or 1-D tensor, the same batches in the same order
        for every arch), which enables the paired test. The check is recorded in
        `last_decision`."""
        if not self.due(step):
            return False
        self.checks += 1
        candidates = [self.space.arch(c) for c in candidates]
        base = self._scores(evaluate(self.base_arch))  # weights moved since the last check
        scores: dict[Arch, torch.Tensor] = {}
        for arch in candidates:
            if arch not in scores and arch != self.base_arch:
                scores[arch] = self._scores(evaluate(arch))
        old = self.base_arch
        self.base_score = float(base.mean())
        compared = {arch: self._compare(s, base) for arch, s in scores.items()}
        n = len(scores)
        better = [arch for arch, (b, _, _) in compared.items() if b]
        by_mean = sorted(better, key=lambda a: float(scores[a].mean()))
        new = None
        if self.replacement == "beat":
            new = by_mean[0] if by_mean else None
            reason = "a candidate is significantly better" if new is not None else "no candidate is significantly better"
        else:
            keep_edge, enter_edge = self.top_p + self.tolerance, max(self.top_p - self.tolerance, 0.0)
            if n == 0 or len(better) <= keep_edge * n:
                reason = f"base inside the top {keep_edge:.0%} ({len(better)} of {n} significantly better)"
            else:
                for arch in by_mean:  # the best one that itself ranks inside the top p - r
                    rank = sum(self._compare(scores[c], scores[arch])[0] for c in scores if c != arch)
                    if rank <= enter_edge * n:
                        new = arch
                        break
                reason = (f"base outside the top {keep_edge:.0%} ({len(better)} of {n} significantly better)"
                          + ("" if new is not None else f"; no candidate inside the top {enter_edge:.0%}: kept"))
        if new is not None:
            self.base_arch, self.base_score = new, float(scores[new].mean())
            self.replacements += 1
        self.last_decision = {
            "step": int(step),
            "rule": self.replacement,
            "replaced": new is not None,
            "old_arch": old.to_list(),
            "new_arch": new.to_list() if new is not None else None,
            "base_score": float(base.mean()),
            "candidates": [
                {"arch": arch.to_list(), "score": float(scores[arch].mean()), "diff": diff,
                 "z": None if z is None else max(min(z, 1e9), -1e9), "better": b}
                for arch, (b, diff, z) in compared.items()
            ],
            "significant": len(better),
            "population": n,
            "reason": reason,
        }
        return new is not None

    # -- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "base_arch": self.base_arch.to_list(),
            "base_score": self.base_score,
            "replacements": self.replacements,
            "checks": self.checks,
            "replacement": self.replacement,
            "block_size": self.block_size,
            "last_decision": self.last_decision,
        }

    def load_state_dict(self, state: dict) -> None:
        self.base_arch = self.space.arch(state["base_arch"])
        self.base_score = state.get("base_score")
        self.replacements = state.get("replacements", 0)
        self.checks = state.get("checks", 0)
        self.last_decision = state.get("last_decision")
