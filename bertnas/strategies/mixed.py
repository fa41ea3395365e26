"""What every differentiable strategy shares: per-choice architecture parameters, the mixed
forward, the architecture step (bilevel on a held-out split of the training rows, or single-level
ERM on the weight step's own loss), discretisation, logging and exact-resume state.

Parameterisations:
- softmax (DARTS, GDAS, SNAS, PC-DARTS): logits `alpha` per choice, `theta = softmax(alpha)`,
  updated by their own Adam (never in the weight optimizer, so never weight-decayed by it);
- simplex (GAEA): `theta` itself on each simplex, updated by exponentiated gradient
  `theta <- theta * exp(-eta * grad_theta)`, then each simplex renormalised to sum 1.

What the supernet runs (`forward_weights`): `theta` (DARTS), a Gumbel-softmax sample (SNAS), a
hard straight-through sample (GDAS). On a DARTS cell the node input choices get parameters only
with edge normalisation (PC-DARTS); otherwise a node sums all its incoming edges (DARTS).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bertnas.core.serialization import tensor_from_json, tensor_to_json
from bertnas.spaces.base import Arch, SearchSpace
from bertnas.spaces.darts import DartsSpace, derive_arch
from bertnas.strategies.base import MixedArch, Strategy, discretise, weights_log
from bertnas.supernet.stream import BatchStream


class Rows:
    """The rows `indices` of a map-style dataset, itself map-style (`rows[list]`)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, picks):
        if isinstance(picks, int):
            return self.dataset[self.indices[picks]]
        return self.dataset[[self.indices[i] for i in picks]]


def split_rows(dataset, arch_fraction: float, seed: int) -> tuple[Rows, Rows]:
    """(weight rows, architecture rows): a seeded split of the training rows (DARTS: halves)."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + 13)).tolist()
    n_arch = int(round(n * arch_fraction))
    if not 0 < n_arch < n:
        raise ValueError(f"arch_fraction={arch_fraction} of {n} training rows leaves one side empty; "
                         "use a value in (0, 1) or more data")
    return Rows(dataset, sorted(order[n_arch:])), Rows(dataset, sorted(order[:n_arch]))


def is_darts_cell_space(space) -> bool:
    return isinstance(space, DartsSpace)


def linear_schedule(start: float, end: float, step: int, total: int) -> float:
    """`start` at step 0 to `end` at the last step (GDAS' temperature)."""
    if total <= 1:
        return end
    return start + (end - start) * min(step, total - 1) / (total - 1)


def to_host(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached float32 CPU copies of a dict of 1-D weight tensors, in one device-to-host transfer
    (one per choice would stall a GPU once per choice)."""
    if not weights:
        return {}
    flat = torch.cat([w.detach().float().reshape(-1) for w in weights.values()]).cpu()
    sizes = [w.numel() for w in weights.values()]
    return dict(zip(weights, flat.split(sizes)))


def gumbel_like(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gumbel(0, 1) noise of `logits`' shape, drawn from `generator` (CPU) then moved."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(dtype=logits.dtype, device=logits.device)


class DifferentiableStrategy(Strategy):
    """Base of DARTS, GDAS, SNAS, PC-DARTS and their GAEA versions."""

    simplex = False  # True: GAEA (theta on the simplex, exponentiated-gradient step)
    edge_normalisation = False  # True: PC-DARTS (a learned weight per DARTS node input)
    defaults = {
        "arch_lr": 3e-4,  # Adam step on alpha (softmax); eta of the exponentiated step (simplex)
        "arch_betas": [0.5, 0.999],
        "arch_weight_decay": 1e-3,  # Adam's decay on alpha (DARTS); not used by the simplex step
        "bilevel": True,  # False: single-level ERM (the weight step's loss also updates the arch)
        "arch_fraction": 0.5,  # bilevel: the share of training rows held out for architecture steps
        "arch_start": 0,  # weight-only warm-up steps before the first architecture step
        "init_std": 1e-3,  # softmax: alpha ~ init_std * N(0, 1) (DARTS); simplex: uniform + this noise
    }

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        opts = self.options
        if opts["arch_lr"] <= 0:
            raise ValueError(f"strategy option arch_lr must be > 0, got {opts['arch_lr']}")
        if not 0 < opts["arch_fraction"] < 1:
            raise ValueError(f"strategy option arch_fraction must be in (0, 1), got {opts['arch_fraction']}")
        self.darts_cells = is_darts_cell_space(space)
        self.labels = [label for label in space.choices if self._learns(label)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 17)
        self.params: dict[str, torch.Tensor] = {}
        for label in self.labels:
            n = len(space.choices[label])
            noise = float(opts["init_std"]) * torch.randn(n, generator=g)
            if self.simplex:
                init = (torch.full((n,), 1.0 / n) + noise.abs() / n)
                init = init / init.sum()
            else:
                init = noise
            self.params[label] = init.requires_grad_(True)
        self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 29)  # Gumbel noise
        self.optimizer = None if self.simplex else torch.optim.Adam(
            list(self.params.values()), lr=opts["arch_lr"], betas=tuple(opts["arch_betas"]),
            weight_decay=opts["arch_weight_decay"])
        self.stream = None  # bilevel: batches of the architecture rows
        self.max_steps = 1
        self.arch_steps = 0

    def _learns(self, label: str) -> bool:
        """Input choices of DARTS cells carry parameters only with edge normalisation."""
        if label in self.space.input_choices and self.darts_cells:
            return self.edge_normalisation
        return True

    # -- parameterisation -------------------------------------------------------------------
    def probs(self, label: str) -> torch.Tensor:
        """theta of one choice (on its simplex), differentiable in the parameters."""
        p = self.params[label]
        return p if self.simplex else F.softmax(p, dim=-1)

    def logits(self, label: str) -> torch.Tensor:
        """log theta up to a constant (Gumbel sampling)."""
        p = self.params[label]
        return torch.log(p.clamp_min(1e-30)) if self.simplex else p

    def forward_weights(self, step: int) -> dict[str, torch.Tensor]:
        """The weights the supernet mixes with (DARTS: theta). GDAS / SNAS sample here."""
        return {label: self.probs(label) for label in self.labels}

    def temperature(self, step: int) -> float | None:
        return None

    # -- the trainer's hooks ---------------------------------------------------------------
    def setup(self, ctx) -> None:
        self.device = ctx.device
        self.max_steps = ctx.max_steps
        for label in self.labels:  # in place: the optimizer keeps its references
            self.params[label].data = self.params[label].data.to(self.device)
        if self.options["bilevel"]:
            weight_rows, arch_rows = split_rows(ctx.task.train_data, self.options["arch_fraction"], ctx.data_seed)
            ctx.set_weight_rows(weight_rows)
            self.stream = BatchStream(arch_rows, ctx.batch_size, ctx.world_size, ctx.rank, ctx.seed + 1,
                                      collate=ctx.task.collate)
        # masking / augmentation of the architecture batches: a generator of the strategy's own
        self.data_generator = torch.Generator(device=self.device)
        self.data_generator.manual_seed(self.seed * 1_000_003 + 41 + ctx.rank)

    def mixed(self, weights: dict[str, torch.Tensor], constant: bool = False) -> MixedArch:
        """The weights with their rounding (for GDAS: the sampled path) as `.discrete`. The
        weights come to the host in one transfer; `constant` (no gradient wanted) mixes with that
        host copy, so the model reads which candidates weigh 0 without a device read per choice."""
        with torch.no_grad():
            host = to_host(weights)
            return MixedArch(host if constant else weights, self.round(host))

    def choose(self, step: int) -> MixedArch:
        for p in self.params.values():
            p.grad = None
        weights = self.forward_weights(step)
        if self.options["bilevel"]:  # the weight step treats the architecture as constant
            return self.mixed({label: w.detach() for label, w in weights.items()}, constant=True)
        return self.mixed(weights)

    def after_weight_step(self, ctx, step: int, arch) -> dict:
        fields = {}
        tau = self.temperature(step)
        if tau is not None:
            fields["temperature"] = tau
        if step < self.options["arch_start"]:
            return fields
        params = [self.params[label] for label in self.labels]
        if self.options["bilevel"]:
            batch = {k: v.to(self.device) for k, v in self.stream.next().items()}
            with ctx.autocast():
                loss = ctx.task.compute(batch, self.mixed(self.forward_weights(step)), self.data_generator).loss
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = g
            # a device scalar: the trainer reads it with the step's other log values
            fields["arch_loss"] = ctx.all_reduce_mean(loss.detach().float().reshape(1).clone()).reshape(())
        for p in params:  # unused choices (a module outside the forward) get a zero gradient
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if ctx.world_size > 1:
            flat = ctx.all_reduce_mean(torch.cat([p.grad.flatten() for p in params]))
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        self.arch_step()
        self.arch_steps += 1
        return fields

    def arch_step(self) -> None:
        if not self.simplex:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return
        eta = float(self.options["arch_lr"])
        with torch.no_grad():
            for p in self.params.values():
                # exponentiated gradient, then back onto the simplex (in log space: no overflow)
                logp = torch.log(p.clamp_min(1e-30)) - eta * p.grad
                p.copy_(F.softmax(logp, dim=-1))
                p.grad = None

    def log_fields(self) -> dict:
        with torch.no_grad():  # one transfer for every choice's weights
            return weights_log_subset(self.space, self.labels, to_host({label: self.probs(label) for label in self.labels}))

    # -- results ---------------------------------------------------------------------------
    def theta(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {label: self.probs(label).detach().float().cpu().clone() for label in self.labels}

    def derive(self) -> Arch:
        return self.round(self.theta())

    def round(self, theta: dict[str, torch.Tensor]) -> Arch:
        """argmax per choice; DARTS cells: per node the 2 inputs whose strongest non-`none` op
        weighs most (with edge normalisation, op weights scaled by the node's input weights)."""
        if not self.darts_cells:
            return discretise(self.space, theta)

        weights = dict(theta)
        if self.edge_normalisation:
            for cell, j in self.space.nodes():
                beta = theta[f"{cell}_node_{j}"]
                for i in range(j):
                    weights[f"{cell}_edge_{i}_{j}"] = weights[f"{cell}_edge_{i}_{j}"] * beta[i]
        first_edge = next(label for label in self.space.choices if label not in self.space.input_choices)
        return self.space.arch(derive_arch(weights, self.space.choices[first_edge], self.space.steps))

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update({
            "params": {label: tensor_to_json(p) for label, p in self.params.items()},
            "optimizer": _optimizer_to_json(self.optimizer) if self.optimizer is not None else None,
            "generator": self.generator.get_state().tolist(),
            "data_generator": self.data_generator.get_state().tolist() if hasattr(self, "data_generator") else None,
            "stream": self.stream.state_dict() if self.stream is not None else None,
            "arch_steps": self.arch_steps,
        })
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if sorted(state["params"]) != sorted(self.params):
            raise ValueError(f"the checkpoint's architecture parameters are for choices {sorted(state['params'])}, "
                             f"this run's are {sorted(self.params)}: resume with the same space and strategy")
        with torch.no_grad():
            for label, p in self.params.items():
                p.copy_(tensor_from_json(state["params"][label]).to(p.device))
        if self.optimizer is not None:
            _optimizer_from_json(self.optimizer, state["optimizer"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        if state.get("data_generator") is not None and hasattr(self, "data_generator"):
            self.data_generator.set_state(torch.tensor(state["data_generator"], dtype=torch.uint8))
        if self.stream is not None:
            self.stream.load_state_dict(state["stream"])
        self.arch_steps = int(state.get("arch_steps", 0))


def weights_log_subset(space, labels, probs) -> dict:
    """`weights_log` over the choices that carry weights (DARTS node inputs may not)."""
    if len(labels) == len(space.choices):
        return weights_log(space, probs)
    sub = SearchSpace({label: space.choices[label] for label in labels})
    return weights_log(sub, probs)


def _optimizer_to_json(optimizer: torch.optim.Optimizer) -> dict:
    sd = optimizer.state_dict()
    return {
        "state": {str(k): {name: tensor_to_json(v) if isinstance(v, torch.Tensor) else v for name, v in s.items()}
                  for k, s in sd["state"].items()},
        "param_groups": [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]],
    }


def _optimizer_from_json(optimizer: torch.optim.Optimizer, data: dict) -> None:
    state = {int(k): {name: tensor_from_json(v) if isinstance(v, dict) and "dtype" in v else v for name, v in s.items()}
             for k, s in data["state"].items()}
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in data["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


__all__ = ["DifferentiableStrategy", "Rows", "gumbel_like", "linear_schedule", "split_rows"]
