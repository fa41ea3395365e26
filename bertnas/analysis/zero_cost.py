"""Zero-cost proxies: a score per arch from one batch at initialisation, for every space.

Every proxy is computed on the arch's path of a freshly initialised, seeded supernet, taken out
with `model.extract(arch)` (a fixed-arch model holding copies of the path's weights: the path at
initialisation, and a private copy that synflow / zen may re-weight without touching the
supernet). Inputs are the task's own batches (`task.heldout(...)`).

Definitions (sums run over the weights of every Conv / Linear layer of the path, as in
Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, and NASLib):

  params     parameters of the path (the space's exact count)
  flops      FLOPs of the path (the space's exact count; BERT at the batch's sequence length)
  grad_norm  sum over layers of ||dL/dW||_2, L the task loss on the batch
  snip       sum |W * dL/dW|                                       (Lee et al. 2019)
  grasp      sum -W * (H g), g = dL/dW, H the Hessian of L          (Wang et al. 2020)
  synflow    sum |W * dR/dW| with W -> |W|, BatchNorm removed, double precision, R the sum
             of the outputs for an all-ones input                  (Tanaka et al. 2020)
  jacob_cov  -sum_i log(l_i + k) + 1 / (l_i + k), k = 1e-5, l the eigenvalues of the
             correlation matrix of per-item input Jacobians of the summed output (Mellor et al.)
  nwot       log |det K|, K_ij = number of activation units on which items i and j share their
             on/off code (NASWOT, Mellor et al. 2021)
  zen        log E||f(x) - f(x + 0.01 e)|| + sum over BatchNorms of log sqrt(mean running var),
             f the last hidden state, weights N(0, 1), Gaussian inputs  (Lin et al., Zen-NAS 2021)

Vision tasks: L is cross-entropy, the input is `pixel_values`. The BERT chain: L is the task's
own objective on a masked batch (MLM cross-entropy on the masked tokens; ELECTRA: the
discriminator's loss), the "input" of jacob_cov / synflow / zen is the word-embedding output
(`inputs_embeds`: token ids are not differentiable), the activation codes of nwot are GELU
inputs > 0 on the non-padding tokens, synflow's all-ones input is one sequence of ones
embeddings (LayerNorm stays: it normalises per token, not per batch).

Higher is better for every proxy (NASLib's convention).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PROXIES = ("params", "flops", "synflow", "snip", "grasp", "jacob_cov", "nwot", "zen", "grad_norm")
COST_PROXIES = ("params", "flops")
JACOB_K = 1e-5


# ----------------------------------------------------------------------------------------
# What a proxy needs of a model: its continuous input, a forward from it, a loss
# ----------------------------------------------------------------------------------------


class ProxyModel:
    """A fixed-arch model seen by the proxies. Vision models take `pixel_values`; models with
    `input_ids` are fed their word embeddings so that the input is a differentiable tensor."""

    def __init__(self, model: nn.Module, batch: Mapping):
        self.model = model
        self.batch = dict(batch)
        self.text = "input_ids" in batch

    def input(self) -> torch.Tensor:
        if self.text:
            with torch.no_grad():
                return self.model.get_input_embeddings()(self.batch["input_ids"]).detach()
        return self.batch["pixel_values"].float()

    def _extra(self) -> dict:
        keep = ("attention_mask", "token_type_ids") if self.text else ()
        return {k: self.batch[k] for k in keep if k in self.batch}

    def forward(self, x: torch.Tensor, hidden: bool = False, extra: dict | None = None):
        extra = self._extra() if extra is None else extra
        if self.text:
            out = self.model(inputs_embeds=x, output_hidden_states=hidden, return_dict=True, **extra)
        else:
            out = self.model(pixel_values=x, output_hidden_states=hidden, return_dict=True)
        return out

    def outputs(self, out) -> torch.Tensor:
        logits = out.logits
        return logits

    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The task loss on the batch (classification: cross-entropy; MLM: cross-entropy of the
        masked tokens, labels -100 elsewhere; ELECTRA discriminator: its binary loss)."""
        x = self.input() if x is None else x
        labels = self.batch["labels"]
        logits = self.forward(x).logits
        if logits.dim() == 3 and logits.shape[-1] == 1 or (logits.dim() == 2 and labels.dim() == 2):
            logits = logits.reshape(labels.shape)
            mask = self.batch.get("attention_mask")
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
            return (loss * mask).sum() / mask.sum() if mask is not None else loss.mean()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)

    def loss_gradients(self) -> list:
        """[(W, dL/dW)] of every weight layer, one backward pass shared by snip and grad_norm."""
        if getattr(self, "_gradients", None) is None:
            _zero_grads(self.model)
            self.loss().backward()
            self._gradients = [(layer.weight.detach().clone(), layer.weight.grad.detach().clone())
                               for layer in weight_layers(self.model) if layer.weight.grad is not None]
            _zero_grads(self.model)
        return self._gradients

    def token_mask(self) -> torch.Tensor | None:
        mask = self.batch.get("attention_mask") if self.text else None
        return mask.bool() if mask is not None else None


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Conv / Linear layers whose weights the per-weight proxies sum over (the path's own:
    a fixed-arch model holds nothing else). Tied weights (an MLM decoder tied to the word
    embeddings) count once."""
    seen, layers = set(), []
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and module.weight.requires_grad:
            if id(module.weight) not in seen:
                seen.add(id(module.weight))
                layers.append(module)
    return layers


def _zero_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


# ----------------------------------------------------------------------------------------
# The proxies
# ----------------------------------------------------------------------------------------


def grad_norm(pm: ProxyModel) -> float:
    return float(sum(g.norm() for _, g in pm.loss_gradients()))


def snip(pm: ProxyModel) -> float:
    return float(sum((w * g).abs().sum() for w, g in pm.loss_gradients()))


def grasp(pm: ProxyModel) -> float:
    """-sum W * (H g): g the gradient (a constant), then the gradient of g . grad L."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    layers = weight_layers(pm.model)
    weights = [layer.weight for layer in layers]
    _zero_grads(pm.model)
    # the fused attention kernels have no second derivative: the math kernel has
    with sdpa_kernel(SDPBackend.MATH):
        g = torch.autograd.grad(pm.loss(), weights, allow_unused=True)
        grads = torch.autograd.grad(pm.loss(), weights, create_graph=True, allow_unused=True)
        z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, grads) if gi is not None and fi is not None)
        if not torch.is_tensor(z) or not z.requires_grad:
            return 0.0
        hg = torch.autograd.grad(z, weights, allow_unused=True)
    return float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg) if h is not None))


def _without_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return module


def synflow(pm: ProxyModel) -> float:
    """On a private copy: BatchNorm removed (its batch statistics of a constant input are 0),
    |W| for every parameter, double precision, one all-ones input item."""
    model = _without_batchnorm(copy.deepcopy(pm.model)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    x = torch.ones_like(pm.input()[:1], dtype=torch.float64)
    extra = {k: v[:1] for k, v in pm._extra().items()}
    pm2 = ProxyModel(model, pm.batch)
    out = pm2.forward(x, extra=extra)
    out.logits.sum().backward()
    return float(sum((layer.weight.detach() * layer.weight.grad).abs().sum()
                     for layer in weight_layers(model) if layer.weight.grad is not None))


def jacob_cov(pm: ProxyModel) -> float:
    _zero_grads(pm.model)
    x = pm.input().clone().requires_grad_(True)
    out = pm.forward(x).logits
    out.backward(torch.ones_like(out))
    jac = x.grad.detach().reshape(x.shape[0], -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant Jacobian row: no score (NaN)
        corr = np.corrcoef(jac)
    if not np.all(np.isfinite(corr)):
        return float("nan")
    eig = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(eig + JACOB_K) + 1.0 / (eig + JACOB_K)))


# The activations whose on/off codes NASWOT reads. The remote-code models call functional forms
# (F.relu inside ReLUConvBN; nn.ReLU / nn.ReLU6 / nn.GELU call F.relu / F.hardtanh / F.gelu when
# they run), so those are wrapped; transformers' activation modules hold a reference to the
# function taken when they were built, so they get a forward pre-hook instead.
_ACTIVATIONS = ("relu", "hardtanh", "gelu", "silu")


def _code(x: torch.Tensor) -> torch.Tensor:
    return (x.detach() > 0).reshape(x.shape[0], -1) if x.dim() > 1 else (x.detach() > 0)[None]


@contextlib.contextmanager
def recorded_activations(codes: list, model: nn.Module | None = None):
    """Inside the block, each activation appends its input's code (x > 0, one row per item)."""
    originals = {name: getattr(F, name) for name in _ACTIVATIONS}

    def wrap(fn):
        def recorder(x, *args, **kwargs):
            codes.append(_code(x))
            return fn(x, *args, **kwargs)
        return recorder

    hooks = []
    if model is not None:
        for module in model.modules():
            if type(module).__module__.startswith("transformers.activations"):
                hooks.append(module.register_forward_pre_hook(lambda m, args: codes.append(_code(args[0]))))
    try:
        for name, fn in originals.items():
            setattr(F, name, wrap(fn))
        yield codes
    finally:
        for name, fn in originals.items():
            setattr(F, name, fn)
        for hook in hooks:
            hook.remove()


def nwot(pm: ProxyModel) -> float:
    codes: list = []
    x = pm.input()
    with torch.no_grad(), recorded_activations(codes, pm.model):
        pm.forward(x)
    n = x.shape[0]
    mask = pm.token_mask()
    k = torch.zeros(n, n, dtype=torch.float64)
    for code in codes:
        if code.shape[0] != n:
            continue
        if mask is not None and code.shape[1] % mask.shape[1] == 0:
            # BERT: (items, tokens * width): padding tokens carry no code
            width = code.shape[1] // mask.shape[1]
            code = code.reshape(n, mask.shape[1], width) & mask[:, :, None]
            on = code.reshape(n, -1).double()
            valid = mask[:, :, None].expand(-1, -1, width).reshape(n, -1).double()
            off = valid - on
        else:
            on = code.double()
            off = 1.0 - on
        k += on @ on.T + off @ off.T
    if not codes:
        return float("nan")
    sign, logdet = np.linalg.slogdet(k.numpy())
    return float(logdet) if sign != 0 else float("-inf")


def _gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                if module.weight is not None:
                    module.weight.fill_(1.0)
                    module.bias.zero_()


def zen(pm: ProxyModel, generator: torch.Generator, mixup: float = 0.01) -> float:
    """Zen-score on a private copy: weights N(0, 1), BatchNorm in training mode, Gaussian inputs."""
    model = copy.deepcopy(pm.model)
    _gaussian_init(model, generator)
    model.train()
    for module in model.modules():  # BN running variance = this batch's (momentum 1)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
            module.reset_running_stats()
    shape = pm.input().shape
    x = torch.randn(shape, generator=generator)
    e = torch.randn(shape, generator=generator)
    view = ProxyModel(model, pm.batch)
    with torch.no_grad():
        a = view.forward(x, hidden=True).hidden_states[-1]
        b = view.forward(x + mixup * e, hidden=True).hidden_states[-1]
        if a.dim() == 4:  # N C H W feature maps: mean over the pixels, then the channels
            delta = (a - b).abs().mean(dim=(2, 3)).norm(dim=1).mean()
        else:
            delta = (a - b).abs().mean(dim=1).norm(dim=-1).mean()
    bn = 0.0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
            bn += float(torch.log(torch.sqrt(module.running_var.mean())))
    return float(torch.log(delta.double() + 1e-12)) + bn


# ----------------------------------------------------------------------------------------
# Scoring archs
# ----------------------------------------------------------------------------------------


def _cost(space, arch, name: str, seq_len: int | None) -> float:
    try:
        if name == "params":
            return float(space.params(arch))
        return float(space.flops(arch, seq_len) if seq_len is not None else space.flops(arch))
    except (NotImplementedError, TypeError):
        return float("nan")


def _param_count(model: nn.Module) -> float:
    return float(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))


class ZeroCostScorer:
    """Proxies of archs of `supernet` (freshly initialised, seeded by the caller) on `batches`.

    `score(arch)` -> {proxy: value}; every proxy runs on `supernet.extract(arch)` in training mode
    (BatchNorm uses the batch's statistics, as at initialisation); `seed` fixes zen's Gaussian
    weights and inputs, the same for every arch."""

    def __init__(self, supernet: nn.Module, space, batches: Sequence[Mapping], proxies: Iterable[str] = PROXIES,
                 seed: int = 0):
        unknown = [p for p in proxies if p not in PROXIES]
        if unknown:
            raise ValueError(f"unknown zero-cost proxies {unknown}; known: {', '.join(PROXIES)}")
        if not batches:
            raise ValueError("zero-cost proxies need at least one batch of the task's data")
        self.supernet, self.space, self.seed = supernet, space, int(seed)
        self.proxies = tuple(proxies)
        self.batch = dict(batches[0])
        ids = self.batch.get("input_ids")
        self.seq_len = int(ids.shape[1]) if ids is not None else None

    def score(self, arch) -> dict:
        arch = self.space.arch(arch)
        torch.manual_seed(self.seed)  # dropout masks of text models: the same for every arch
        model = self.supernet.extract(arch)
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        pm = ProxyModel(model, self.batch)
        out = {}
        for name in self.proxies:
            if name in COST_PROXIES:
                value = _cost(self.space, arch, name, self.seq_len)
                if name == "params" and math.isnan(value):
                    value = _param_count(model)
            elif name == "zen":
                value = zen(pm, torch.Generator().manual_seed(self.seed))
            else:
                value = PROXY_FNS[name](pm)
            _zero_grads(model)
            out[name] = value
        return out

    def score_all(self, archs: Iterable, progress=None) -> dict:
        """{arch: {proxy: value}} (keys as given: arch strings stay strings)."""
        results = {}
        for i, arch in enumerate(archs):
            results[arch if isinstance(arch, str) else self.space.arch(arch).to_json()] = self.score(arch)
            if progress is not None:
                progress(i + 1)
        return results


PROXY_FNS = {"grad_norm": grad_norm, "snip": snip, "grasp": grasp, "synflow": synflow, "jacob_cov": jacob_cov,
             "nwot": nwot}

__all__ = ["PROXIES", "ProxyModel", "ZeroCostScorer", "grad_norm", "snip", "grasp", "synflow", "jacob_cov", "nwot",
           "zen", "recorded_activations", "weight_layers"]
