"""Search strategies (bertnas/strategies/) inside the supernet trainer: each gradient strategy
finds the clearly better op of a tiny 2-choice space, GAEA stays on the simplex and ends
sparser than DARTS, strategy state resumes exactly, DARTS cells derive their top-2 inputs, and
a strategy step runs on every space (bert, nb201, darts, cnn)."""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bertnas.spaces.choices import LayerChoice, space_from_model
from bertnas.strategies import MixedArch, build_strategy
from bertnas.tasks import Task, register_task
from bertnas.tasks.vision import ImageRows
from bertnas.storage.logs import read_log
from bertnas.tasks.objectives import ObjectiveOutput
from bertnas.pipelines.pretrain import pretrain

FEATURES, CLASSES, LAYERS = 6, 3, 2


class Zero(nn.Module):
    """The clearly worse op: it forgets its input."""

    def forward(self, x):
        return torch.zeros_like(x)


class TwoChoiceNet(nn.Module):
    """LAYERS residual choices of {linear, zero} between a narrow embedding and a classifier:
    `zero` adds nothing, every `linear` adds capacity, so `linear` is the better op everywhere."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEATURES, 16)
        self.layers = nn.ModuleList(
            LayerChoice({"zero": Zero(), "linear": nn.Sequential(nn.Linear(16, 16), nn.Tanh())}, label=f"layer_{i}")
            for i in range(LAYERS))
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x, labels=None, arch=None, arch_weights=None, output_hidden_states=False):
        h = torch.tanh(self.embed(x))
        for layer in self.layers:
            if arch_weights is not None:
                h = h + layer.forward_mixed(h, weights=arch_weights[layer.label])
            else:
                h = h + layer(h, op=arch[layer.label])
        logits = self.head(h)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits, hidden_states=(h,))


def make_rows(n, seed):
    """Rows of features (under the vision task's key) labelled by a fixed linear teacher."""
    x = torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))
    teacher = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    return ImageRows(x, (x @ teacher).argmax(-1))


@register_task("toy-two-choice")
class TwoChoiceTask(Task):
    metric = "cross_entropy"

    def setup(self, cfg, resume_from=None):
        self.train_data = make_rows(256, cfg.data_seed)
        self.val_rows = make_rows(64, cfg.data_seed + 1)
        self.batch_size = cfg.batch_size
        torch.manual_seed(cfg.seed)
        self.model = TwoChoiceNet()
        self.modules = {"model": self.model}
        self.space = space_from_model(self.model)

    def compute(self, batch, arch, generator):
        path = {"arch_weights": dict(arch)} if isinstance(arch, MixedArch) else {"arch": arch}
        out = self.model(batch["pixel_values"], labels=batch["labels"], **path)
        return ObjectiveOutput(out.loss, out.hidden_states, {}, inputs=batch)

    def heldout(self, eval_batches=None, **_):
        rows = self.val_rows[list(range(len(self.val_rows)))]
        return [rows], {"metric": self.metric, "batches": 1}

    def loss_fn(self, model, batch, ops):
        logits = model(batch["pixel_values"], arch=dict(zip(self.space.choices, ops))).logits
        return F.cross_entropy(logits, batch["labels"], reduction="sum"), batch["labels"].numel()

    def choice_layers(self):
        return list(self.model.layers)


def toy_options(tmp_path, name, strategy, **overrides):
    o = dict(task="toy-two-choice", output_dir=str(tmp_path / name), max_steps=40, save_steps=0, batch_size=16,
             lr=3e-2, warmup_steps=0, align=False, sampler="uniform", progress=False, seed=1, eval_batches=1,
             strategy=strategy)
    o.update(overrides)
    return o


def run_toy(tmp_path, name, strategy, **overrides):
    summary = pretrain(toy_options(tmp_path, name, strategy, **overrides))
    return summary, read_log(tmp_path / name / "log.jsonl")


def rounded(line):
    """The argmax arch of a log line's architecture weights (its "arch" is the path the step ran:
    for GDAS / SNAS a sample)."""
    return [max(w, key=w.get) for w in line["arch_weights"].values()]


def linear_weight(line):
    return min(line["arch_weights"][f"layer_{i}"]["linear"] for i in range(LAYERS))


SOFTMAX_FAST = {"arch_lr": 0.03}  # Adam on alpha: fast enough for 30 steps
STRATEGY_OPTIONS = {
    "darts": SOFTMAX_FAST, "gdas": SOFTMAX_FAST, "snas": SOFTMAX_FAST,
    "pcdarts": {**SOFTMAX_FAST, "partial_channels": 1},
    "gaea-darts": {"arch_lr": 0.5}, "gaea-gdas": {"arch_lr": 0.5},
    "gaea-pcdarts": {"arch_lr": 0.5, "partial_channels": 1},
}


@pytest.mark.parametrize("strategy", sorted(STRATEGY_OPTIONS))
def test_each_gradient_strategy_picks_the_better_op(tmp_path, strategy):
    _, log = run_toy(tmp_path, strategy, strategy, strategy_options=STRATEGY_OPTIONS[strategy], max_steps=30)
    first, last = log[0], log[-1]
    assert rounded(last) == ["linear", "linear"], (strategy, last["arch_weights"])
    assert linear_weight(last) > linear_weight(first) and linear_weight(last) > 0.55, last["arch_weights"]
    assert last["entropy"] < first["entropy"]
    assert last["loss"] < first["loss"]
    if STRATEGY_OPTIONS[strategy].get("bilevel", strategy != "snas"):
        assert all("arch_loss" in line for line in log)  # the architecture step ran on held-out rows
    if "gdas" in strategy or strategy == "snas":
        taus = [line["temperature"] for line in log]
        assert taus == sorted(taus, reverse=True) and taus[0] > taus[-1]


def test_gaea_stays_on_the_simplex_and_ends_sparser_than_darts(tmp_path):
    """Both with their default step sizes (DARTS: Adam 3e-4 on alpha; GAEA: eta 0.1), same data and
    seed, 40 steps. Measured: mean entropy DARTS 0.693, GAEA bilevel 0.688, GAEA ERM 0.687 (ln 2 =
    0.693 is uniform); with eta 1.0 GAEA reaches 0.553 (bilevel) / 0.500 (ERM)."""
    _, darts = run_toy(tmp_path, "darts", "darts")
    for name, options in {"gaea-bilevel": {}, "gaea-erm": {"bilevel": False}}.items():
        _, gaea = run_toy(tmp_path, name, "gaea-darts", strategy_options=options)
        for line in gaea:
            for weights in line["arch_weights"].values():
                assert all(w >= 0 for w in weights.values())
                assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
        assert gaea[-1]["entropy"] < darts[-1]["entropy"] - 2e-3, (gaea[-1]["entropy"], darts[-1]["entropy"])
        assert rounded(gaea[-1]) == ["linear", "linear"]
    erm = read_log(tmp_path / "gaea-erm" / "log.jsonl")
    assert all("arch_loss" not in line for line in erm)  # single level: no held-out architecture batch


@pytest.mark.parametrize("strategy", ["darts", "gaea-gdas"])
def test_strategy_state_resumes_exactly(tmp_path, strategy):
    """Adam state + held-out stream (darts); Gumbel generator + simplex (gaea-gdas)."""
    options = dict(max_steps=6, save_steps=3, keep_last=3, strategy_options={"arch_lr": 0.05})
    run_toy(tmp_path, "full", strategy, **options)
    full = read_log(tmp_path / "full" / "log.jsonl")
    (tmp_path / "part").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-00000003", tmp_path / "part" / "checkpoint-00000003")
    run_toy(tmp_path, "part", strategy, resume_from_checkpoint="latest", **options)
    resumed = read_log(tmp_path / "part" / "log.jsonl")
    assert [line["step"] for line in resumed] == [4, 5, 6]
    keys = ("loss", "arch", "arch_loss", "arch_weights", "entropy", "temperature")
    for a, b in zip(full[3:], resumed):
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}
    state = {name: json.loads((tmp_path / name / "checkpoint-00000006" / "state.json").read_text())["strategy"]
             for name in ("full", "part")}
    assert state["full"]["params"] == state["part"]["params"] and state["full"]["name"] == strategy
    # a strategy checkpoint does not resume without its strategy
    with pytest.raises(Exception, match="strategy"):
        pretrain(toy_options(tmp_path, "part", None, resume_from_checkpoint="latest", max_steps=8))


def test_darts_cells_derive_top2_inputs_and_edge_normalisation():
    from bertnas.spaces.darts import DartsSpace

    space = DartsSpace(init_channels=4, num_cells=3, steps=2)
    ops = space.choices["normal_edge_0_2"]
    strategy = build_strategy("darts", space, seed=0)
    assert "normal_node_2" not in strategy.params  # DARTS: nodes sum every incoming edge

    def one_hot_logits(op, strength):
        return torch.tensor([strength if o == op else 0.0 for o in ops])

    hand = {"normal_edge_0_2": ("sep_conv_3x3", 5.0), "normal_edge_1_2": ("skip_connect", 4.0),
            "normal_edge_0_3": ("max_pool_3x3", 1.0), "normal_edge_1_3": ("dil_conv_5x5", 6.0),
            "normal_edge_2_3": ("sep_conv_5x5", 3.0)}
    with torch.no_grad():
        for label, p in strategy.params.items():
            op, strength = hand.get(label, ("none", 8.0))  # reduce cell: `none` strongest everywhere
            p.copy_(one_hot_logits(op, strength))
    arch = strategy.derive()
    assert arch["normal_node_2"] == ("0", "1") and arch["normal_node_3"] == ("1", "2")
    assert (arch["normal_edge_0_2"], arch["normal_edge_1_2"]) == ("sep_conv_3x3", "skip_connect")
    assert (arch["normal_edge_1_3"], arch["normal_edge_2_3"], arch["normal_edge_0_3"]) == (
        "dil_conv_5x5", "sep_conv_5x5", "none")
    assert all(arch[f"reduce_edge_{i}_{j}"] != "none" for j in (2, 3) for i in map(int, arch[f"reduce_node_{j}"]))

    # PC-DARTS: the node-3 input weights (edge normalisation) overrule the op strengths
    pc = build_strategy("pcdarts", space, seed=0)
    with torch.no_grad():
        for label, p in pc.params.items():
            if label in strategy.params:
                p.copy_(strategy.params[label])
        pc.params["normal_node_3"].copy_(torch.tensor([4.0, -4.0, 0.0]))
    arch = pc.derive()
    assert arch["normal_node_3"] == ("0", "2") and arch["normal_edge_0_3"] == "max_pool_3x3"


def test_argmax_discretisation_and_options_errors():
    from bertnas.spaces.base import InputChoice, SearchSpace
    from bertnas.strategies.base import discretise

    space = SearchSpace({"a": ["x", "y", "z"], "n": InputChoice(["0", "1", "2"], 2)})
    assert discretise(space, {"a": [0.1, 0.7, 0.2], "n": [0.5, 0.1, 0.4]}).to_list() == ["y", ["0", "2"]]
    with pytest.raises(ValueError, match="no option.*arch_lr"):
        build_strategy("darts", space, arch_lrr=0.1)
    with pytest.raises(ValueError, match="Unknown strategy 'dart'.*darts"):
        build_strategy("dart", space)


# -- every space, through run_strategy ------------------------------------------------------------------
def cifar_subset():
    from conftest import DATA_DIR

    path = DATA_DIR / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
    if not path.exists():
        pytest.skip(f"no CIFAR-10 subset at {path}")
    return str(path)


SPACES = {
    "nb201": {"space_options": {"C": 4, "N": 1, "calibration_batches": 1}},
    "darts": {"space_options": {"C": 4, "layers": 3, "steps": 2, "calibration_batches": 1}},
    "cnn": {"space_options": {"block_type": "shufflenet", "stem_channels": 4, "stage_channels": [8, 16],
                              "stage_depths": [1, 1], "stage_strides": [2, 2], "last_channels": 16,
                              "calibration_batches": 1}},
}


@pytest.mark.parametrize("space,strategy", [("nb201", "darts"), ("darts", "pcdarts"), ("cnn", "gaea-darts")])
def test_a_strategy_step_runs_on_every_vision_space(tmp_path, space, strategy):
    from bertnas.strategies import run_strategy

    options = dict(output_dir=str(tmp_path / "run"), max_steps=2, save_steps=0, batch_size=4, eval_batches=1,
                   progress=False, seed=0, strategy=strategy, strategy_options={"arch_lr": 0.05}, space=space,
                   data=cifar_subset(), val_fraction=0.01, **SPACES[space])
    if strategy == "pcdarts":
        options["strategy_options"]["partial_channels"] = 2
    summary = run_strategy(options, top_k=3)
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [line["step"] for line in log] == [1, 2]
    first, second = log[0]["arch_weights"], log[1]["arch_weights"]
    assert first.keys() == second.keys() and all(first[label] != second[label] for label in first)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results[0]["arch"] == summary["derived"]
    if space != "darts":  # argmax of the final weights (DARTS cells: top-2 inputs, tested above)
        assert summary["derived"] == rounded(log[-1])
    assert results[0]["strategy"] == strategy and results[0]["rank"] == 1
    if space == "nb201":
        assert "cifar10" in results[0]["benchmark"]
    if strategy == "pcdarts":  # edge normalisation: the node inputs carry weights too; K = 2 channel split
        assert any(label.endswith("_node_3") for label in first)
        assert json.loads((tmp_path / "run" / "search.json").read_text())["strategy_options"]["partial_channels"] == 2


def test_partial_channel_edges_keep_one_hot_mix_equal_to_the_path():
    from bertnas.models.choice_modules import PartialChannelChoice
    from bertnas.models.modeling_darts import build_op

    torch.manual_seed(0)
    for stride in (1, 2):
        edge = PartialChannelChoice({op: build_op(op, 2, stride) for op in ("sep_conv_3x3", "max_pool_3x3", "none")},
                                    "e", k=4, bypass=nn.MaxPool2d(2, 2) if stride == 2 else None).eval()
        x = torch.randn(2, 8, 8, 8)
        for i, op in enumerate(edge.candidates):
            mixed = edge.forward_mixed(x, weights=F.one_hot(torch.tensor(i), 3).float())
            assert torch.equal(mixed, edge(x, op=op)) and mixed.shape == (2, 8, 8 // stride, 8 // stride)
        # 3/4 of the channels bypass the ops: `none` keeps them (shuffled), zeroes the rest
        assert int((edge(x, op="none").abs().sum((0, 2, 3)) > 0).sum()) == 6
    with pytest.raises(ValueError, match="partial_channels=3 must be a positive integer dividing the 8"):
        from bertnas.models.choice_modules import partial_channel_width

        partial_channel_width(8, 3, "edge")


# Adam moves alpha by ~lr whatever the gradient; the exponentiated step by eta x gradient (here
# ~1e-3, and its part common to all candidates cancels in the renormalisation): a larger eta.
@pytest.mark.parametrize("strategy,arch_lr", [("gdas", 0.1), ("gaea-darts", 1.0)])
def test_a_strategy_step_on_the_bert_supernet(tiny_tokenizer, batch, strategy, arch_lr):
    """The MLM task's compute runs a MixedArch through the objective (BERT's `arch_weights`), and a
    single-level step moves every layer's weights (the trainer path is the one the vision spaces
    and the toy run above; a BERT pretrain costs ~20 s on this machine)."""
    from conftest import toy_config

    from bertnas.models import BertNasForMaskedLM
    from bertnas.spaces import BertSpace
    from bertnas.tasks.bert import MLMTask
    from bertnas.tasks.objectives import MLMObjective

    torch.manual_seed(0)
    task = MLMTask()
    task.model = BertNasForMaskedLM(toy_config(vocab_size=len(tiny_tokenizer)))
    task.objective = MLMObjective(task.model, tiny_tokenizer, 0.3)
    task.space = BertSpace(task.model.config)
    ctx = SimpleNamespace(max_steps=2, device=torch.device("cpu"), rank=0, world_size=1, task=task)
    strategy = build_strategy(strategy, task.space, seed=0, bilevel=False, arch_lr=arch_lr)
    strategy.setup(ctx)
    before = strategy.theta()
    arch = strategy.choose(0)
    assert isinstance(arch, MixedArch) and list(arch) == list(task.space.choices)
    out = task.compute(batch, arch, torch.Generator().manual_seed(0))
    out.loss.backward()
    strategy.after_weight_step(ctx, 0, arch)
    after = strategy.theta()
    assert all(not torch.equal(before[label], after[label]) for label in before)
    fields = strategy.log_fields()
    assert set(fields["arch_weights"]) == set(task.space.choices) and 0 < fields["entropy"] <= math.log(8) + 1e-6
    # a one-hot MixedArch is the path exactly, through the same compute
    path = task.space.sample(3)
    one_hot = MixedArch({label: F.one_hot(torch.tensor(task.space.choices[label].index(op)),
                                          len(task.space.choices[label])).float()
                         for label, op in path.items()}, path)
    task.model.eval()
    a = task.compute(batch, one_hot, torch.Generator().manual_seed(1)).loss
    b = task.compute(batch, path, torch.Generator().manual_seed(1)).loss
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_run_config_follows_the_strategy():
    from bertnas.core.errors import UserError
    from bertnas.pipelines.strategy import prepare_config

    cfg = prepare_config({"space": "nb201", "strategy": "pcdarts"})
    assert cfg.space_options["partial_channels"] == 4 and cfg.align is False  # PC-DARTS' K reaches the supernet
    cfg = prepare_config({"space": "nb201", "strategy": "gaea-pcdarts", "strategy_options": {"partial_channels": 2}})
    assert cfg.space_options["partial_channels"] == 2
    assert "partial_channels" not in prepare_config({"space": "cnn", "strategy": "pcdarts"}).space_options
    assert prepare_config({"strategy": "rsws"}).sampler == "uniform"  # the trainer samples uniformly
    with pytest.raises(UserError, match="'darts' has no option.*its options: arch_betas"):
        prepare_config({"strategy": "darts", "strategy_options": {"tau_max": 1.0}})
    with pytest.raises(UserError, match="must be one of"):
        prepare_config({"strategy": "dart"})


def test_single_level_step_with_gradient_accumulation(tmp_path):
    """ERM: the micro-batches' backwards share the graph of the mixed weights (kept between them)
    and the architecture gradient is their accumulated one."""
    _, log = run_toy(tmp_path, "erm", "darts", strategy_options={"bilevel": False, "arch_lr": 0.05},
                     gradient_accumulation_steps=2, max_steps=3)
    assert [line["step"] for line in log] == [1, 2, 3] and all("arch_loss" not in line for line in log)
    assert log[0]["arch_weights"] != log[-1]["arch_weights"]


def test_gdas_one_path_runs_only_the_sampled_op_with_the_relaxation_forward():
    """GDAS' released code: a hard sample runs its op alone, forward and backward; the output is the
    full relaxation's exactly, the sampled weight gets the same gradient and each other weight the
    sum of the upstream gradient. `one_path: false` runs every op (the exact relaxation)."""
    from bertnas.models.choice_modules import LayerChoice
    from bertnas.spaces.nb201 import Nb201Space

    calls = []

    class Op(nn.Module):
        def __init__(self, name, scale):
            super().__init__()
            self.name, self.w = name, nn.Parameter(torch.tensor(scale))

        def forward(self, x):
            calls.append(self.name)
            return self.w * x

    edge = LayerChoice({n: Op(n, s) for n, s in (("a", 1.0), ("b", 2.0), ("c", 3.0))}, "e")
    x = torch.randn(4, 3)
    alpha = torch.tensor([0.1, 0.5, -0.2], requires_grad=True)
    soft = F.softmax(alpha, -1)
    hard = F.one_hot(torch.tensor(1), 3).float() - soft.detach() + soft
    upstream = torch.randn(4, 3)
    full = edge.forward_mixed(x, weights=hard)
    (grad_full,) = torch.autograd.grad((full * upstream).sum(), alpha, retain_graph=True)
    assert calls == ["a", "b", "c"]
    calls.clear()
    hard.one_path = 1
    one = edge.forward_mixed(x, weights=hard)
    assert calls == ["b"] and torch.equal(one, full)
    grad_hard, grad_one = torch.autograd.grad((one * upstream).sum(), [hard, alpha])
    expected = torch.full((3,), float(upstream.sum()))
    expected[1] = float((upstream * 2.0 * x).sum())
    assert torch.allclose(grad_hard, expected)
    assert not torch.allclose(grad_one, grad_full)  # a different (cheaper) estimator, as published

    space = Nb201Space(4, 1)
    for one_path in (True, False):
        strategy = build_strategy("gdas", space, seed=0, one_path=one_path)
        arch = strategy.mixed(strategy.forward_weights(0))
        tagged = {label: getattr(w, "one_path", None) for label, w in arch.items()}
        if one_path:
            assert tagged == {label: space.choices[label].index(arch.discrete[label]) for label in arch}
        else:
            assert set(tagged.values()) == {None}
        assert all(getattr(w, "one_path", None) is None for w in strategy.choose(0).values())  # constant: no tag
