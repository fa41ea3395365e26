"""The core is not BERT-only: a space written here, as an ordinary torch module with
`LayerChoice`s, trains through the same trainer (sampler, MAGIC-A aligner, checkpoints, exact
resume), is scored by the same evaluator, searched by the same random search, and runs a
mixed-op (differentiable) step; no BERT class is involved."""

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from bertnas.spaces.choices import LayerChoice, space_from_model
from bertnas.spaces.base import SearchSpace
from bertnas.tasks import Task, load_task, register_task
from bertnas.storage.logs import read_log
from bertnas.tasks.objectives import ObjectiveOutput
from bertnas.pipelines.pretrain import pretrain

WIDTH, LAYERS, CLASSES, FEATURES = 8, 3, 3, 4


class ChainNet(nn.Module):
    """Features -> width, LAYERS choices of {linear, mlp, skip}, a classifier."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEATURES, WIDTH)
        self.layers = nn.ModuleList(
            LayerChoice({"linear": nn.Linear(WIDTH, WIDTH),
                         "mlp": nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.ReLU(), nn.Linear(2 * WIDTH, WIDTH)),
                         "skip": nn.Identity()}, label=f"layer_{i}")
            for i in range(LAYERS)
        )
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x, labels=None, arch=None, arch_weights=None, output_hidden_states=False):
        h = self.embed(x)
        hidden = [h]
        ops = None if arch is None else (arch.ops if hasattr(arch, "ops") else tuple(arch))
        for i, layer in enumerate(self.layers):
            h = layer.forward_mixed(h, weights=arch_weights[i]) if arch_weights is not None else layer(h, op=ops[i])
            hidden.append(h)
        logits = self.head(h)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits, hidden_states=tuple(hidden) if output_hidden_states else None)


class ChainSpace(SearchSpace):
    """The model's choices with an exact parameter count (FLOPs are not modelled: 0)."""

    def __init__(self, model: ChainNet):
        super().__init__(space_from_model(model).choices)
        self.fixed = sum(p.numel() for m in (model.embed, model.head) for p in m.parameters())
        self.per_op = {op: sum(p.numel() for p in model.layers[0].ops[op].parameters())
                       for op in model.layers[0].candidates}

    def params(self, arch) -> int:
        return self.fixed + sum(self.per_op[op] for op in self.arch(arch).ops)

    def flops(self, arch, seq_len: int = 0) -> int:
        return 0


class Rows:
    """A map-style dataset: `rows[list_of_indices]` -> dict of tensors."""

    def __init__(self, x, labels):
        self.x, self.labels = x, labels

    def __len__(self):
        return len(self.x)

    def __getitem__(self, indices):
        return {"x": self.x[indices], "labels": self.labels[indices]}


def make_rows(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    teacher = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    return Rows(x, (x @ teacher).argmax(-1))


@register_task("toy-chain")
class ChainTask(Task):
    metric = "cross_entropy"

    def _build(self):
        self.model = ChainNet()
        self.modules = {"model": self.model}
        self.space = ChainSpace(self.model)

    def setup(self, cfg, resume_from=None):
        self.train_data = make_rows(96, cfg.data_seed)
        self.val_rows = make_rows(32, cfg.data_seed + 1)
        self.batch_size = cfg.batch_size
        self._build()

    @classmethod
    def from_checkpoint(cls, ckpt, state, device="cpu"):
        task = cls()
        task.val_rows = make_rows(32, state["config"]["data_seed"] + 1)
        task.batch_size = state["config"]["batch_size"]
        task._build()
        task.load(ckpt)
        task.model.to(device).eval()
        return task

    def signature(self):
        return {"task": self.name, "width": WIDTH, "layers": LAYERS}

    def compute(self, batch, arch, generator):
        out = self.model(batch["x"], labels=batch["labels"], arch=arch, output_hidden_states=True)
        return ObjectiveOutput(out.loss, out.hidden_states, {"ce": float(out.loss.detach())}, inputs=batch)

    def heldout(self, eval_batches=None, **_):
        b = self.batch_size
        batches = [self.val_rows[list(range(i, min(i + b, len(self.val_rows))))]
                   for i in range(0, len(self.val_rows), b)][:eval_batches or None]
        return batches, {"metric": self.metric, "batches": len(batches)}

    def loss_fn(self, model, batch, ops):
        logits = model(batch["x"], arch=ops).logits
        return F.cross_entropy(logits, batch["labels"], reduction="sum"), batch["labels"].numel()

    def hidden_states(self, batch, arch):
        return self.model(batch["x"], arch=arch, output_hidden_states=True).hidden_states

    def choice_layers(self):
        return list(self.model.layers)


def options(tmp_path, name, **overrides):
    o = dict(task="toy-chain", output_dir=str(tmp_path / name), max_steps=6, save_steps=3, keep_last=3,
             batch_size=8, eval_batches=2, lr=1e-2, warmup_steps=1, sampler="walk", align=True, align_block_size=1,
             base_replacement="beat", base_every=2, progress=False, seed=3)
    o.update(overrides)
    return o


def test_a_space_written_here_trains_resumes_and_is_searched(tmp_path):
    summary = pretrain(options(tmp_path, "full"))
    full = read_log(tmp_path / "full" / "log.jsonl")
    assert summary["step"] == 6 and [r["step"] for r in full] == list(range(1, 7))
    assert all(r["arch"][0] in ("linear", "mlp", "skip") and r["align_loss"] >= 0 for r in full)
    for a, b in zip(full, full[1:]):  # MAGIC-T walk: one layer changes per step
        assert sum(x != y for x, y in zip(a["arch"], b["arch"])) == 1
    assert "base_score" in full[1]  # base replacement scored subnets with the task's evaluator

    # exact resume from the step-3 checkpoint
    part = tmp_path / "part"
    part.mkdir()
    import shutil

    shutil.copytree(tmp_path / "full" / "checkpoint-00000003", part / "checkpoint-00000003")
    pretrain(options(tmp_path, "part", resume_from_checkpoint="latest"))
    resumed = read_log(part / "log.jsonl")
    assert [r["step"] for r in resumed] == [4, 5, 6]
    for a, b in zip(full[3:], resumed):
        assert (a["loss"], a["arch"], a["align_loss"], a["base_arch"]) == (b["loss"], b["arch"], b["align_loss"],
                                                                            b["base_arch"])

    # the same evaluator scores it; random search ranks its archs; training and search agree
    from bertnas.search import search

    entries = search(tmp_path / "full", "random", tmp_path / "search", num_samples=6, eval_batches=2,
                     progress=False)
    assert len(entries) == 6 and [e["score"] for e in entries] == sorted(e["score"] for e in entries)
    assert all(e["metric"] == "cross_entropy" and e["params"] > 0 for e in entries)
    meta = json.loads((Path(tmp_path / "search") / "search.json").read_text())
    assert meta["space"]["size"] == 27
    task = load_task(tmp_path / "full")
    batches, _ = task.heldout(eval_batches=2)
    assert sum(len(b["labels"]) for b in batches) == 16  # eval_batches x batch_size
    with torch.no_grad():
        manual = sum(float(task.loss_fn(task.model, b, tuple(entries[0]["arch"]))[0]) for b in batches) / 16
    assert abs(manual - entries[0]["score"]) < 1e-6


def test_mixed_op_step_on_the_same_supernet(tmp_path):
    pretrain(options(tmp_path, "run", max_steps=2, save_steps=2, align=False))
    task = load_task(tmp_path / "run")
    model = task.model.train()
    batch = make_rows(16, 0)[list(range(16))]
    # a one-hot mix is the path, exactly
    arch = task.space.sample(0)
    one_hot = [F.one_hot(torch.tensor(task.space.choices[name].index(op)), 3).float()
               for name, op in arch.items()]
    assert torch.equal(model(batch["x"], arch_weights=one_hot).logits, model(batch["x"], arch=arch).logits)
    # DARTS-style step: architecture logits and weights both move
    alpha = torch.zeros(LAYERS, 3, requires_grad=True)
    weights_before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD([{"params": model.parameters()}, {"params": [alpha]}], lr=0.1)
    loss = model(batch["x"], labels=batch["labels"], arch_weights=list(F.softmax(alpha, dim=-1))).loss
    loss.backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(weights_before, model.parameters()) if a.numel())
    # every candidate of every layer took part (skip has no parameters)
    for layer in model.layers:
        for op, params in layer.candidate_parameters().items():
            assert all(p.grad is not None for _, p in params), op
