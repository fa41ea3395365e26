import json
import random

import pytest
import torch

from bertnas import BertNasForMaskedLM, BertNasModel, BertSpace
from bertnas.strategies.base import MixedArch
from bertnas.supernet.align import Aligner, step_seed
from tests.conftest import toy_config

BASE = ["mha12", "ffn", "conv3", "ffn"]


@pytest.fixture
def setup(config, batch):
    config.num_hidden_layers = 4
    model = BertNasModel(config).eval()
    return model, BertSpace(config), batch


@pytest.fixture
def dropout_setup(batch):
    """BERT's dropout (0.1 hidden and attention), a padded batch, the MLM model in train mode."""
    torch.manual_seed(0)
    config = toy_config(num_hidden_layers=4, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertNasForMaskedLM(config).train()
    with torch.no_grad():  # weights of a trained scale, so architecture differences are not tiny
        for p in model.bert.encoder.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model, BertSpace(config), batch


def _student(model, batch, arch):
    return model(**batch, arch=arch, output_hidden_states=True).hidden_states


def test_block_ends():
    space = BertSpace(toy_config(num_hidden_layers=5))
    assert Aligner(space, ["ffn"] * 5, block_size=2).block_ends(5) == [2, 4, 5]
    assert Aligner(space, ["ffn"] * 5, block_size=1).block_ends(5) == [1, 2, 3, 4, 5]
    assert Aligner(space, ["ffn"] * 5, block_size=9).block_ends(5) == [5]


def test_align_loss_zero_on_base_positive_elsewhere_grad_only_on_path(setup):
    model, space, batch = setup
    base = ["mha12", "ffn", "mha12", "ffn"]
    aligner = Aligner(space, base, block_size=2)
    same = model(**batch, arch=base, output_hidden_states=True).hidden_states
    assert aligner.align_loss(model, batch, same).item() == 0.0  # no dropout: 0 without any help
    model.train()
    other = ["conv3", "ffn", "mha6", "ffn_wide"]
    hidden = model(**batch, arch=other, output_hidden_states=True).hidden_states
    loss = aligner.align_loss(model, batch, hidden)
    assert loss.item() > 0 and model.training  # train mode restored after the eval-mode base forward
    loss.backward()
    layers = model.encoder.layers
    assert layers[0].ops["conv3"].pointwise.weight.grad is not None
    assert layers[0].ops["mha12"].query.weight.grad is None  # the base gets no gradient


def test_dropout_alone_is_not_alignment_loss(dropout_setup):
    """At dropout 0.1, with no short-circuit for identical archs: inside shared_randomness a
    student equal to the base gets exactly 0; outside it (eval-mode base) dropout alone costs
    ~0.1 per block, which is what the loss measured before."""
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE, block_size=1, normalize=False)
    with aligner.shared_randomness(aligner.randomness_modules(model), step_seed(0, 7)):
        hidden = _student(model, batch, BASE)
        loss, blocks = aligner.align_loss(model.bert, batch, hidden, arch=None, return_blocks=True)
    assert loss.item() == 0.0 and blocks.tolist() == [0.0] * 4
    with pytest.warns(UserWarning, match="dropout noise"):
        noisy = aligner.align_loss(model.bert, batch, _student(model, batch, BASE), return_blocks=True)[1]
    assert bool((noisy > 0.02).all()) and model.training


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_one_layer_difference_shows_from_its_block_on(dropout_setup, layer):
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE, block_size=2, normalize=False)
    arch = list(BASE)
    arch[layer] = "mha6" if BASE[layer] != "mha6" else "ffn"
    with aligner.shared_randomness(aligner.randomness_modules(model), 11):
        loss, blocks = aligner.align_loss(model.bert, batch, _student(model, batch, arch), return_blocks=True)
    holding = layer // 2
    assert blocks[:holding].tolist() == [0.0] * holding  # blocks before the layer: exactly 0
    assert blocks[holding] > 1e-3 and loss > 1e-3
    # the whole loss comes from the difference, not from dropout: far above what the same subnet
    # costs (0 exactly), and the same on repeating it with the same seed
    with aligner.shared_randomness(aligner.randomness_modules(model), 11):
        again = aligner.align_loss(model.bert, batch, _student(model, batch, arch))
    assert again.item() == loss.item()


def test_shared_randomness_leaves_global_streams_and_varies_with_seed(dropout_setup):
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE)
    modules = aligner.randomness_modules(model)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with aligner.shared_randomness(modules, 1):
        a = _student(model, batch, BASE)[-1]
        outside = torch.rand(4)  # random work outside the hooked modules (an ELECTRA generator)
        outside2 = torch.rand(4)
    assert not torch.equal(outside, outside2)  # the global stream advances as usual inside
    torch.set_rng_state(before)
    expected = torch.rand(4)
    assert torch.equal(outside, expected)  # ... and the hooked layers did not consume it
    with aligner.shared_randomness(modules, 1):
        b = _student(model, batch, BASE)[-1]
    with aligner.shared_randomness(modules, 2):
        c = _student(model, batch, BASE)[-1]
    assert torch.equal(a, b) and not torch.equal(a, c)  # deterministic per seed (exact resume)
    assert not model.bert.encoder.layers[0]._forward_pre_hooks  # hooks removed on exit
    assert step_seed(1, 2) != step_seed(1, 3) != step_seed(2, 2) and step_seed(1, 2) == step_seed(1, 2)


def test_shared_randomness_must_hook_the_base_forward(dropout_setup):
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE)
    other = BertNasForMaskedLM(model.config)
    with aligner.shared_randomness(aligner.randomness_modules(other), 0):
        hidden = _student(model, batch, BASE)
        with pytest.raises(RuntimeError, match="none of its modules ran"):
            aligner.align_loss(model.bert, batch, hidden)


class _Scaled(torch.nn.Module):
    """A fake model whose hidden states are `scale` x fixed tensors (per arch)."""

    def __init__(self, states, scale):
        super().__init__()
        self.states, self.scale = states, scale

    def forward(self, input_ids, arch=None, **kwargs):
        return type("Out", (), {"hidden_states": tuple(self.scale * h for h in self.states[arch.ops])})


def test_normalized_loss_is_scale_free(setup):
    _, space, _ = setup
    g = torch.Generator().manual_seed(0)
    base, other = space.arch(BASE), space.arch(["ffn"] * 4)
    states = {a.ops: [torch.randn(2, 5, 8, generator=g) for _ in range(5)] for a in (base, other)}
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long)}
    losses = {}
    for normalize in (False, True):
        aligner = Aligner(space, base, block_size=2, normalize=normalize)
        for scale in (1.0, 0.1):
            student = [scale * h for h in states[other.ops]]
            losses[normalize, scale] = aligner.align_loss(_Scaled(states, scale), batch, student).item()
    assert losses[False, 0.1] == pytest.approx(losses[False, 1.0] * 0.01, rel=1e-4)  # shrinking "aligns"
    assert losses[True, 0.1] == pytest.approx(losses[True, 1.0], rel=1e-3)  # not when normalized


def test_weighted_caps_the_alignment_term():
    space = BertSpace(toy_config(num_hidden_layers=4))
    aligner = Aligner(space, BASE, weight=1.0, max_ratio=0.5)
    align = torch.tensor(3.0, requires_grad=True)
    term = aligner.weighted(align, torch.tensor(2.0))
    assert term.item() == pytest.approx(1.0)  # capped at 0.5 x task loss
    term.backward()
    assert align.grad.item() == pytest.approx(1 / 3)  # by a constant factor
    assert aligner.weighted(torch.tensor(0.5), 2.0).item() == pytest.approx(0.5)  # under the cap: weight x loss
    assert Aligner(space, BASE, weight=0.1, max_ratio=None).weighted(torch.tensor(30.0), 1.0).item() == pytest.approx(3.0)


def test_alignment_schedule():
    space = BertSpace(toy_config(num_hidden_layers=4))
    aligner = Aligner(space, BASE, weight=0.2, start=10, ramp=4, max_ratio=None)
    assert [aligner.current_weight(s) for s in (0, 9)] == [0.0, 0.0] and not aligner.active(9)
    assert [round(aligner.current_weight(s), 6) for s in (10, 13, 14, 100)] == [0.04, 0.16, 0.2, 0.2]
    assert aligner.active(10) and aligner.current_weight(None) == 0.2
    assert aligner.weighted(torch.tensor(1.0), 5.0, step=3).item() == 0.0


def _noisy(means: dict, batches: int = 8, noise: float = 0.05, seed: int = 0):
    """A fake evaluator returning per-batch losses: a batch effect shared by every arch (as the
    same held-out batches give) + the arch's mean + independent noise."""
    rng = random.Random(seed)
    batch_effect = [rng.gauss(0, 0.5) for _ in range(batches)]

    def evaluate(arch):
        return [means.get(arch.ops, 5.0) + b + rng.gauss(0, noise) for b in batch_effect]
    return evaluate


def test_beat_replacement(setup):
    _, space, _ = setup
    scores = {("mha12", "ffn", "mha12", "ffn"): 2.0, ("conv3", "ffn", "conv3", "ffn"): 1.0,
              ("ffn", "ffn", "ffn", "ffn"): 3.0}
    evaluate = lambda arch: scores[arch.ops]  # noqa: E731
    aligner = Aligner(space, ["mha12", "ffn", "mha12", "ffn"], replacement="beat", every=5)
    assert not aligner.maybe_replace(3, evaluate, [["conv3", "ffn", "conv3", "ffn"]])  # not due
    assert aligner.last_decision is None
    assert not aligner.maybe_replace(5, evaluate, [["ffn"] * 4])  # worse: base kept
    assert aligner.base_arch.ops == ("mha12", "ffn", "mha12", "ffn") and aligner.base_score == 2.0
    assert aligner.last_decision["replaced"] is False and aligner.last_decision["step"] == 5
    assert aligner.maybe_replace(10, evaluate, [["conv3", "ffn", "conv3", "ffn"]])
    assert aligner.base_arch.ops == ("conv3", "ffn", "conv3", "ffn") and aligner.base_score == 1.0
    d = aligner.last_decision
    assert d["old_arch"] == ["mha12", "ffn", "mha12", "ffn"] and d["new_arch"] == ["conv3", "ffn", "conv3", "ffn"]
    assert d["base_score"] == 2.0 and d["candidates"][0]["score"] == 1.0 and d["rule"] == "beat"
    state = json.loads(json.dumps(aligner.state_dict()))  # JSON-ready, as state.json stores it
    fresh = Aligner(space, ["ffn"] * 4)
    fresh.load_state_dict(state)
    assert fresh.base_arch == aligner.base_arch and fresh.base_score == 1.0 and fresh.replacements == 1
    assert fresh.checks == 2 and fresh.last_decision == d
    old = Aligner(space, ["ffn"] * 4)  # a checkpoint written before checks / last_decision existed
    old.load_state_dict({"base_arch": list(BASE), "base_score": 4.0, "replacements": 3})
    assert old.base_arch.ops == tuple(BASE) and old.checks == 0 and old.last_decision is None


def test_margin_without_per_batch_scores(setup):
    _, space, _ = setup
    scores = {tuple(BASE): 2.0, ("ffn",) * 4: 1.995}
    aligner = Aligner(space, BASE, replacement="beat", every=1, margin=0.01)
    assert not aligner.maybe_replace(1, lambda a: scores[a.ops], [["ffn"] * 4])
    scores[("ffn",) * 4] = 1.9
    assert aligner.maybe_replace(2, lambda a: scores[a.ops], [["ffn"] * 4])


@pytest.mark.parametrize("rule", ["beat", "population"])
def test_noise_never_replaces_a_real_improvement_does(setup, rule):
    _, space, _ = setup
    rng = random.Random(1)
    aligner = Aligner(space, BASE, replacement=rule, every=1, population=8)
    replaced = 0
    for step in range(1, 41):  # 40 checks where every subnet is equally good
        evaluate = _noisy({}, seed=step)
        candidates = [space.sample(rng) for _ in range(8 if rule == "population" else 1)]
        replaced += aligner.maybe_replace(step, evaluate, candidates)
        d = aligner.last_decision
        assert d["step"] == step and d["population"] == len(set(candidates) - {aligner.base_arch})
    assert replaced == 0 and aligner.base_arch.ops == tuple(BASE)
    json.dumps(aligner.last_decision)  # loggable as is (log.jsonl)
    # a clear improvement (0.2 below, i.e. 4 x the per-batch noise), by the whole population
    better = [space.sample(rng) for _ in range(8)]
    means = {a.ops: 4.8 - 0.01 * i for i, a in enumerate(better)}
    assert aligner.maybe_replace(41, _noisy(means, seed=41), better)
    d = aligner.last_decision
    assert d["replaced"] and d["new_arch"] == better[-1].to_list() and aligner.base_arch == better[-1]
    assert d["significant"] >= 1 and all(c["z"] is not None for c in d["candidates"])


def test_population_replacement_hysteresis(setup):
    _, space, _ = setup
    population = [space.arch([op, "ffn", op, "ffn"]) for op in ("mha6", "mha8", "conv3", "conv5", "ffn_wide",
                                                               "identity", "ffn", "mha12")][:7]
    base = ["mha12", "ffn", "mha12", "ffn"]
    ranks = {arch.ops: i for i, arch in enumerate(population)}  # lower index = better
    for base_score, expect_replace in ((1.5, False), (2.5, False), (3.5, True)):
        evaluate = lambda arch, s=base_score: s if arch.ops == tuple(base) else ranks[arch.ops]  # noqa: E731
        aligner = Aligner(space, base, replacement="population", every=1, top_p=0.3, tolerance=0.15)
        # keep edge 45 %: 2/7 = 29 % and 3/7 = 43 % kept, 4/7 = 57 % replaced by the best one
        assert aligner.maybe_replace(1, evaluate, population) is expect_replace
        assert aligner.base_arch == (population[0] if expect_replace else space.arch(base))
        d = aligner.last_decision
        assert d["significant"] == int(base_score + 0.5) and d["population"] == 7
        assert ("outside" in d["reason"]) is expect_replace


def test_bad_options(setup):
    _, space, _ = setup
    with pytest.raises(ValueError, match="Unknown base replacement 'best'"):
        Aligner(space, ["ffn"] * 4, replacement="best")
    with pytest.raises(ValueError, match="Unknown candidate 'mha7'"):
        Aligner(space, ["mha7", "ffn", "ffn", "ffn"])
    with pytest.raises(ValueError, match="population must be >= 1"):
        Aligner(space, ["ffn"] * 4, replacement="population", population=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        Aligner(space, ["ffn"] * 4, margin=-1)


def _aligned_step(model, aligner, batch, arch, seed, reuse):
    """One MAGIC-A micro-step as the trainer runs it: student forward, alignment, backward, all
    inside shared_randomness; returns (loss, block losses, gradients by name, base layers run)."""
    aligner.reuse_prefix = reuse
    model.zero_grad(set_to_none=True)
    calls = []
    hooks = [layer.register_forward_pre_hook(lambda m, a: calls.append(m.label)) for layer in model.bert.encoder.layers]
    hooks.append(model.bert.embeddings.register_forward_pre_hook(lambda m, a: calls.append("embeddings")))
    try:
        with aligner.shared_randomness(aligner.randomness_modules(model), seed):
            out = model(**batch, arch=arch, output_hidden_states=True)
            n_student = len(calls)
            loss, blocks = aligner.align_loss(model.bert, batch, out.hidden_states, arch=space_arch(aligner, arch),
                                              return_blocks=True)
            total = out.logits.float().pow(2).mean() + aligner.weighted(loss, torch.tensor(1.0))
            total.backward()
    finally:
        for h in hooks:
            h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss, blocks, grads, calls[n_student:]


def space_arch(aligner, arch):
    return aligner.space.arch(arch)


@pytest.mark.parametrize("block_size,normalize", [(1, True), (2, True), (2, False), (3, True)])
def test_base_from_the_first_differing_layer_equals_the_whole_base(dropout_setup, block_size, normalize):
    """The base starts where its path first differs from the student's (from the student's
    state there): with dropout on and the same seeds, the loss, every block and every gradient
    are those of the whole base forward, exactly."""
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE, block_size=block_size, normalize=normalize)
    students = [BASE, ["mha6", "ffn", "conv3", "ffn"], ["mha12", "conv5", "conv3", "ffn"],
                ["mha12", "ffn", "mha8", "ffn_wide"], ["mha12", "ffn", "conv3", "identity"],
                ["identity", "ffn_wide", "mha8", "conv5"]]
    for i, arch in enumerate(students):
        old = _aligned_step(model, aligner, batch, arch, 100 + i, reuse=False)
        new = _aligned_step(model, aligner, batch, arch, 100 + i, reuse=True)
        assert old[0].item() == new[0].item() and torch.equal(old[1], new[1])
        assert old[2].keys() == new[2].keys() and all(torch.equal(old[2][k], new[2][k]) for k in old[2])
        agree = next((j for j, (a, b) in enumerate(zip(arch, BASE)) if a != b), len(BASE))
        assert old[3] == ["embeddings"] + [f"layer_{j}" for j in range(4)]  # the whole base
        assert new[3] == [f"layer_{j}" for j in range(agree, 4)]  # from the first difference on
    assert old[0].item() > 0


def test_base_reuse_needs_a_plain_arch_and_matching_modes(dropout_setup):
    model, space, batch = dropout_setup
    aligner = Aligner(space, BASE, block_size=2)
    hidden = _student(model, batch, BASE)
    assert aligner._base_from_student(model.bert, batch, hidden, None) is None  # no arch: the whole base
    mixed = MixedArch({label: torch.full((len(space.choices[label]),), 0.125) for label in space.choices},
                      space.arch(BASE))
    assert aligner._base_from_student(model.bert, batch, hidden, mixed) is None  # mixed ops: the whole base
    states, ran = aligner._base_from_student(model.bert, batch, hidden, space.arch(BASE))
    assert not ran and all(torch.equal(a, b) for a, b in zip(states, hidden))
    # outside shared_randomness a training student is aligned to an eval-mode base: whole forward
    with pytest.warns(UserWarning, match="dropout noise"):
        noisy = aligner.align_loss(model.bert, batch, hidden, arch=space.arch(BASE))
    assert noisy.item() > 0


def test_trainer_steps_are_identical_with_the_base_from_the_first_difference(tmp_path):
    """The trainer's MAGIC-A steps (walk + alignment, dropout on, 4 layers, blocks of 2) give the
    same losses, alignment losses and weights whether the base runs whole or from the first
    layer where it differs from the student."""
    from pathlib import Path

    from bertnas.pipelines.pretrain import build_trainer
    from bertnas.train.config import load_config

    toy_yaml = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "toy.yaml"
    runs = []
    for reuse in (False, True):
        cfg = load_config(dict(config=str(toy_yaml), output_dir=str(tmp_path / f"r{reuse}"), max_steps=6,
                               save_steps=0, progress=False, align_start=0, align_ramp=0, base_replacement="none",
                               base_arch=["mha12", "ffn", "conv3", "ffn"],
                               model={"num_hidden_layers": 4, "hidden_dropout_prob": 0.1,
                                      "attention_probs_dropout_prob": 0.1}))
        trainer = build_trainer(cfg)
        trainer.aligner.reuse_prefix = reuse
        space = trainer.space
        # students sharing 0..4 leading layers with the base, then the walk's own
        archs = [space.arch(a) for a in (["mha12", "ffn", "conv3", "ffn"], ["mha12", "ffn", "conv5", "ffn"],
                                         ["mha12", "mha6", "conv3", "ffn"], ["ffn", "ffn", "conv3", "ffn"])]
        records = [trainer._train_step(a) for a in archs]
        runs.append(([(r["loss"], r["align_loss"]) for r in records],
                     {n: p.detach().clone() for n, p in trainer.task.model.named_parameters()}))
        trainer.close()
    (old_losses, old_weights), (new_losses, new_weights) = runs
    assert old_losses == new_losses and any(a > 0 for _, a in new_losses)
    assert all(torch.equal(old_weights[n], new_weights[n]) for n in old_weights)
