"""Search: evaluator (determinism, cache, exact MLM loss, BatchNorm hook), progressive
shrinking (bins kept, true best found), evolution / random / block-wise under constraints,
latency table, results files and the `bertnas search` command."""

import json
import random

import pytest
import torch
from torch import nn

import bertnas
from bertnas.search import (
    Constraints,
    Evaluator,
    InfeasibleBudget,
    LatencyTable,
    blockwise_search,
    evolution_search,
    parse_size,
    progressive_shrinking,
    random_search,
    recalibrate,
)
from bertnas.tasks.bert import mlm_heldout
from bertnas.search.latency import build_latency_table
from bertnas.storage.checkpoint import write_manifest
from bertnas.storage.results import Candidate, load_results, pareto_front, write_results
from bertnas.search.shrinking import block_ranges, make_bins
from bertnas.spaces import BertSpace

from conftest import toy_config


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def make_run(root, tokenizer, corpus, seq_len=16, step=10, **config_overrides):
    """A pre-training output dir as the loop writes it: RUN/checkpoint-<step>/{model/, state.json}."""
    config = toy_config(vocab_size=len(tokenizer), **config_overrides)
    torch.manual_seed(0)
    model = bertnas.BertNasForMaskedLM(config)
    ckpt = root / f"checkpoint-{step:08d}"
    model.save_pretrained(ckpt / "model")
    tokenizer.save_pretrained(ckpt / "model")
    state = {"step": step, "aligner": {"base_arch": ["mha12", "ffn"] * (config.num_hidden_layers // 2)},
             "data": {"source": str(corpus), "seq_len": seq_len, "val_fraction": 0.2, "seed": 3},
             "config": {"batch_size": 4, "mlm_probability": 0.15, "objective": "mlm"}}
    (ckpt / "state.json").write_text(json.dumps(state))
    write_manifest(ckpt)  # as training writes it last: search and export refuse a checkpoint without one
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer, tiny_corpus):
    return make_run(tmp_path_factory.mktemp("run"), tiny_tokenizer, tiny_corpus)


def known_scores(space, seed=0):
    rng = random.Random(seed)
    return {arch: rng.random() for arch in space.enumerate()}


def fake_table(space, seq_len=16, corrected=False):
    """A latency table with made-up per-op numbers (no timing in tests that do not need it);
    `corrected`: with a made-up fitted correction that costs adjacent layers of different kinds."""
    ops = {op: {str(seq_len): 0.1 + 0.05 * i} for i, op in enumerate(space.config.candidates)}
    data = {"ops": ops, "overhead_ms": {str(seq_len): 0.2}, "config": {}}
    if corrected:
        data["correction"] = {"model": "ops+transitions", "terms": ["op:identity", "op:conv3", "transitions"],
                              "coef": {str(seq_len): [0.3, -0.05, 0.1]}}
    return LatencyTable(data)


def budget_checking_scorer(space, constraints, value=None):
    """A scorer (additive over ops: sum of `value[op]`) that fails the test if it is ever asked
    to score an arch over budget."""
    rng = random.Random(0)
    value = value or {op: rng.random() for op in space.config.candidates}

    def score(arch):
        assert constraints.allows(space, arch), f"scored an arch over budget: {arch}"
        return sum(value[op] for op in arch.ops)
    return score


# ----------------------------------------------------------------------------------------
# Sizes and constraints
# ----------------------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("10M") == 10_000_000
    assert parse_size("1.5G") == 1_500_000_000
    assert parse_size("250k") == 250_000
    assert parse_size("2e6") == 2_000_000
    assert parse_size(1234) == 1234 and parse_size(None) is None
    for bad in ("ten", "10X", "-5M", "0"):
        with pytest.raises(ValueError, match="size|positive"):
            parse_size(bad)


def test_infeasible_budget_is_a_clear_error():
    space = BertSpace(toy_config())
    too_small = space.embedding_params() - 1  # nothing fits: the embeddings alone are bigger
    with pytest.raises(InfeasibleBudget, match="cheapest arch"):
        Constraints(max_params=too_small).check_feasible(space)
    for method in (random_search, evolution_search, progressive_shrinking):
        with pytest.raises(InfeasibleBudget):
            method(space, lambda a: 0.0, Constraints(max_params=too_small), progress=False)
    with pytest.raises(ValueError, match="latency table"):
        Constraints(max_latency_ms=1.0)


# ----------------------------------------------------------------------------------------
# Progressive shrinking
# ----------------------------------------------------------------------------------------


def test_shrinking_keeps_every_bin_and_returns_the_true_best():
    space = BertSpace(toy_config())  # 2 layers x 8 ops = 64 archs
    scores = known_scores(space)
    out = progressive_shrinking(space, scores.__getitem__, Constraints(seq_len=16), num_bins=3,
                                candidates_per_bin=32, survivors_per_bin=2, seed=1, progress=False)
    assert out.results[0].ops == min(scores, key=scores.get).ops  # the true best
    bins = make_bins(space, Constraints(), 3, space.params, random.Random(0))
    assert len(bins) == out.info["num_bins"] == 3
    for b in bins:
        kept = [c for c in out.results if c.extra["bin"] == b.index]
        assert len(kept) == 2, f"bin {b.index} lost its candidates"
        assert all(b.contains(c.params) for c in kept)
        truth = sorted(b.members, key=scores.get)[:2]  # the bin's true best two
        assert sorted(c.ops for c in kept) == sorted(a.ops for a in truth)
    assert [c.score for c in out.results] == sorted(c.score for c in out.results)
    assert out.info["stages"][-1]["kept_per_bin"] == 2


def test_shrinking_large_space_refills_by_mutation_within_budget():
    space = BertSpace(toy_config(num_hidden_layers=6))  # 8^6 archs: sampled, not enumerated
    constraints = Constraints(max_params=space.embedding_params() + 50_000, seq_len=16)
    score = budget_checking_scorer(space, constraints)
    out = progressive_shrinking(space, score, constraints, num_bins=3, candidates_per_bin=8,
                                survivors_per_bin=2, seed=0, progress=False)
    assert sorted(c.extra["bin"] for c in out.results) == [0, 0, 1, 1, 2, 2]
    stages = out.info["stages"]
    assert len(stages) == 2 and stages[1]["scored"] > 0  # refilled and scored new archs
    for before, after in zip(stages, stages[1:]):  # the best of a bin never gets worse
        assert all(a <= b for a, b in zip(after["best_per_bin"], before["best_per_bin"]))
    assert all(c.params <= constraints.max_params for c in out.evaluated)


def test_shrinking_halves_and_refills_a_population_smaller_than_its_bin():
    """E = 6 candidates per bin of ~21 archs: every stage halves the population (6 -> 3 -> 2),
    refills it to E with archs the bin has not seen, and the best of a bin never gets worse."""
    space = BertSpace(toy_config())  # 64 archs
    scores = known_scores(space, seed=3)
    calls = []
    out = progressive_shrinking(space, lambda a: calls.append(a) or scores[a], Constraints(seq_len=16), num_bins=3,
                                candidates_per_bin=6, survivors_per_bin=2, seed=2, progress=False)
    stages = out.info["stages"]
    assert [st["kept_per_bin"] for st in stages] == [3, 2]
    assert all(n == 6 for st in stages for n in st["population_per_bin"])  # refilled to E
    assert stages[1]["scored"] == 3 * 3  # each bin scored 3 new archs after halving
    assert len(calls) == len(set(calls)) == 18 + 9  # never scores an arch twice
    for before, after in zip(stages, stages[1:]):
        assert all(a <= b for a, b in zip(after["best_per_bin"], before["best_per_bin"]))
    assert sorted(c.extra["bin"] for c in out.results) == [0, 0, 1, 1, 2, 2]


@pytest.fixture
def recorded_bars(monkeypatch):
    """Every tqdm bar the search makes, with its total when made and its count when closed."""
    import tqdm.auto

    bars = []

    class Recorded(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.first_total = self.total
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    return bars


def test_shrinking_and_blockwise_progress_bars_have_their_real_total(recorded_bars, capsys):
    """The bars of progressive shrinking and of the block-wise search (compress's search) show
    'n/total': the total is known when the bar starts and ends equal to the archs scored."""
    from bertnas.search.shrinking import shrinking_total

    space = BertSpace(toy_config())  # 64 archs
    scores = known_scores(space, seed=3)
    calls = []
    progressive_shrinking(space, lambda a: calls.append(a) or scores[a], Constraints(seq_len=16), num_bins=3,
                          candidates_per_bin=6, survivors_per_bin=2, seed=2)
    bar = recorded_bars[-1]
    assert bar.first_total == shrinking_total(6, 2, [6, 6, 6]) == 27 == len(calls) == bar.n == bar.total
    assert "27/27" in capsys.readouterr().err
    # a budget that leaves a bin short of new archs: the total follows what the bins really hold
    space = BertSpace(toy_config(num_hidden_layers=3))  # 512 archs
    constraints = Constraints(max_params=space.embedding_params() + 10_000, seq_len=16)
    calls.clear()
    progressive_shrinking(space, lambda a: calls.append(a) or len(a.ops[0]), constraints, num_bins=3,
                          candidates_per_bin=16, survivors_per_bin=2, seed=0)
    bar = recorded_bars[-1]
    assert bar.first_total > bar.total == bar.n == len(calls)  # planned 99, the budget leaves 39
    blockwise_search(space, lambda j, ops: sum(len(op) for op in ops), block_ranges(3, 2), constraints,
                     candidates_per_block=20, top_k=2)
    bar = recorded_bars[-1]
    assert bar.desc == "block losses" and bar.first_total == 20 + 8 and bar.n == bar.total >= 28


# ----------------------------------------------------------------------------------------
# Evolution, random, block-wise: constraints are never violated
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("corrected", [False, True], ids=["plain-sum", "fitted-predictor"])
@pytest.mark.parametrize("method", ["random", "evolution", "shrinking", "blockwise"])
def test_constraints_are_never_violated(method, corrected):
    space = BertSpace(toy_config(num_hidden_layers=4))
    table = fake_table(space, corrected=corrected)
    cheapest = Constraints(seq_len=16, latency_table=table).costs(space, ["identity"] * 4)
    constraints = Constraints(max_params=cheapest["params"] + 20_000, max_flops=1_200_000,
                              max_latency_ms=cheapest["latency_ms"] + 0.6, seq_len=16, latency_table=table)
    score = budget_checking_scorer(space, constraints)
    if method == "random":
        out = random_search(space, score, constraints, num_samples=30, seed=0, progress=False)
    elif method == "evolution":
        out = evolution_search(space, score, constraints, population=8, generations=4, seed=0, progress=False)
        assert len(out.evaluated) == 8 * 5 and len({c.ops for c in out.evaluated}) == 40
    elif method == "shrinking":
        out = progressive_shrinking(space, score, constraints, candidates_per_bin=8, seed=0, progress=False)
    else:
        out = blockwise_search(space, lambda j, ops: sum(len(op) for op in ops), block_ranges(4, 2), constraints,
                               top_k=5, score_fn=score, progress=False)
    assert out.results
    for c in out.evaluated + out.results:
        assert c.params <= constraints.max_params and c.flops <= constraints.max_flops
        assert c.latency_ms <= constraints.max_latency_ms
        assert c.params == space.params(c.ops) and c.latency_ms == pytest.approx(table.predict(c.ops, 16))
    assert [c.score for c in out.results] == sorted(c.score for c in out.results)


def test_blockwise_combines_the_lookup_table_under_the_budget():
    space = BertSpace(toy_config(num_hidden_layers=4))
    rng = random.Random(2)
    loss = {(j, ops): rng.random() for j in range(2) for ops in
            [(a, b) for a in space.config.candidates for b in space.config.candidates]}
    budget = Constraints(max_params=space.embedding_params() + 25_000, seq_len=16)
    out = blockwise_search(space, lambda j, ops: loss[(j, ops)], block_ranges(4, 2), budget, top_k=3,
                           progress=False)
    # brute force over all 8^4 archs: the best summed block loss within the budget
    allowed = [a for a in space.enumerate() if budget.allows(space, a)]
    best = min(allowed, key=lambda a: loss[(0, a.ops[:2])] + loss[(1, a.ops[2:])])
    assert out.results[0].ops == best.ops
    assert out.results[0].extra["blockwise_loss"] == pytest.approx(loss[(0, best.ops[:2])] + loss[(1, best.ops[2:])])


def test_evolution_finds_the_best_of_a_small_space():
    space = BertSpace(toy_config())
    scores = known_scores(space, seed=3)
    out = evolution_search(space, scores.__getitem__, Constraints(), population=8, generations=10, parents=3,
                           seed=0, progress=False)
    assert out.results[0].ops == min(scores, key=scores.get).ops
    assert len({c.ops for c in out.evaluated}) == len(out.evaluated)  # no arch scored twice


# ----------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_toy(tiny_tokenizer, tiny_corpus):
    from bertnas.tasks.text_data import build_lm_splits, load_texts

    torch.manual_seed(0)
    model = bertnas.BertNasForMaskedLM(toy_config(vocab_size=len(tiny_tokenizer))).eval()
    _, val = build_lm_splits(load_texts(str(tiny_corpus)), tiny_tokenizer, 16, val_fraction=0.2, seed=0)
    return model, mlm_heldout(val, tiny_tokenizer, batch_size=4, num_batches=3, seed=7)


def test_evaluator_is_exact_deterministic_and_cached(scored_toy):
    model, batches = scored_toy
    space = BertSpace(model.config)
    evaluator = Evaluator(model, batches, space=space)
    arch = ["conv3", "mha8"]
    first = evaluator(arch)
    # token-weighted mean of the model's own MLM loss on the same batches
    with torch.no_grad():
        parts = [(model(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, labels=b["labels"],
                        arch=arch).loss, int((b["labels"] != -100).sum())) for b in batches]
    expected = sum(float(loss) * n for loss, n in parts) / sum(n for _, n in parts)
    assert first == pytest.approx(expected, rel=1e-5)
    # a fresh evaluator on the same held-out set gives the same number (no randomness)
    assert Evaluator(model, batches, space=space)(space.arch(arch)) == first
    calls = []
    original = evaluator.loss_fn
    evaluator.loss_fn = lambda *a: calls.append(1) or original(*a)
    assert evaluator(arch) == first and not calls  # cached: no forward
    assert evaluator(["ffn", "mha8"]) != first and calls
    with pytest.raises(ValueError, match="Unknown candidate 'mha7'"):
        evaluator(["mha7", "ffn"])
    with pytest.raises(ValueError, match="3 entries but the space has 2"):
        evaluator(["ffn"] * 3)


def test_heldout_masking_is_fixed(tiny_tokenizer, tiny_corpus):
    from bertnas.tasks.text_data import build_lm_splits, load_texts

    _, val = build_lm_splits(load_texts(str(tiny_corpus)), tiny_tokenizer, 16, val_fraction=0.2, seed=0)
    a, b, c = (mlm_heldout(val, tiny_tokenizer, 4, 2, seed) for seed in (7, 7, 8))
    assert len(a) == 2 and any(bool((x["labels"] != -100).any()) for x in a)
    for x, y in zip(a, b):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    assert not all(torch.equal(x["labels"], z["labels"]) for x, z in zip(a, c))


class TinyBNSupernet(nn.Module):
    """Two candidate ops per layer feeding a BatchNorm shared by both (like a CNN supernet)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ops = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 1)

    def forward(self, x, arch):
        return self.head(torch.relu(self.bn(self.ops[arch[0]](x))))


def _bn_loss(model, batch, ops):
    return ((model(batch["x"], ops).squeeze(-1) - batch["labels"]) ** 2).sum(), batch["labels"].numel()


def test_batchnorm_recalibration_hook():
    model = TinyBNSupernet()
    g = torch.Generator().manual_seed(1)
    batches = [{"x": torch.randn(16, 4, generator=g) * 3 + 1, "labels": torch.randn(16, generator=g)} for _ in range(3)]
    recalibrate(model, ["a"], batches)
    with torch.no_grad():
        feats = [model.ops["a"](b["x"]) for b in batches]
    # momentum=None: the running stats are the plain average of the batches' statistics
    torch.testing.assert_close(model.bn.running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    torch.testing.assert_close(model.bn.running_var, torch.stack([f.var(0) for f in feats]).mean(0))
    assert not model.training and model.bn.momentum == 0.1  # momentum restored, eval mode

    # The evaluator recalibrates before every new arch: a score does not depend on what was
    # scored before (without the hook, "a" after "b" would use b's statistics).
    evaluator = Evaluator(model, batches, loss_fn=_bn_loss, metric="mse")
    assert evaluator.uses_batchnorm
    a_first = evaluator(["a"])
    evaluator(["b"])
    evaluator.cache.clear()
    assert evaluator(["a"]) == a_first
    model.bn.reset_running_stats()  # stale statistics would change the score
    evaluator.uses_batchnorm = False
    evaluator.cache.clear()
    assert evaluator(["a"]) != a_first


# ----------------------------------------------------------------------------------------
# Latency table
# ----------------------------------------------------------------------------------------


@pytest.fixture
def quick_timing(monkeypatch):
    import bertnas.search.latency as latency

    monkeypatch.setattr(latency, "REPEATS", 2)
    monkeypatch.setattr(latency, "MIN_TIME_S", 0.002)


def test_latency_table_build_predict_save_load(tmp_path, quick_timing):
    config = toy_config()
    table = build_latency_table(config, seq_lens=[8, 16], check_archs=2, threads=1, progress=False)
    assert set(table.ops) == set(config.candidates) and table.seq_lens == [8, 16]
    assert all(table.ops[op]["8"] > 0 for op in config.candidates)
    err = table.data["prediction_error"]
    assert len(err["archs"]) == 2 and err["mean_abs_pct_error"] >= 0
    for sample in err["archs"]:
        assert sample["predicted_ms"] == pytest.approx(table.predict(sample["arch"], sample["seq_len"]))
    arch = ["mha12", "conv3"]
    assert table.predict(arch, 16) == pytest.approx(table.overhead_ms(16) + table.op_ms("mha12", 16)
                                                    + table.op_ms("conv3", 16))
    mid = table.predict(arch, 12)  # linear between the measured lengths
    assert min(table.predict(arch, 8), table.predict(arch, 16)) <= mid <= max(table.predict(arch, 8),
                                                                              table.predict(arch, 16))
    with pytest.raises(ValueError, match="seq lens \\[8, 16\\], not 32"):
        table.predict(arch, 32)
    loaded = LatencyTable.load(table.save(tmp_path / "lat.json"))
    assert loaded.predict(arch, 16) == table.predict(arch, 16)
    loaded.check_config(config)
    with pytest.raises(ValueError, match="hidden_size"):
        loaded.check_config(toy_config(hidden_size=96))
    with pytest.raises(FileNotFoundError, match="build-latency-table"):
        LatencyTable.load(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------


def test_pareto_front_and_results_files(tmp_path):
    pts = [Candidate(("a",), s, p, 10) for s, p in [(3.0, 10), (2.0, 20), (2.5, 30), (1.0, 40), (1.0, 50)]]
    assert [(c.params, c.score) for c in pareto_front(pts)] == [(10, 3.0), (20, 2.0), (40, 1.0)]
    assert [(c.params, c.score) for c in pareto_front(pts, higher_is_better=True)] == [(10, 3.0)]
    ranked = sorted(pts, key=lambda c: (c.score, c.params))
    paths = write_results(tmp_path, ranked[:3], pts, "mlm_loss", meta={"method": "test"})
    entries = load_results(paths["results"])
    assert [e["rank"] for e in entries] == [1, 2, 3] and entries[0]["score"] == 1.0
    assert set(entries[0]) >= {"arch", "score", "params", "flops", "latency_ms"}
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["search"].read_text())["method"] == "test"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_results(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------
# The command and the Python function
# ----------------------------------------------------------------------------------------


def test_search_command_end_to_end(run_dir, tmp_path, capsys):
    from bertnas.cli import main

    out = tmp_path / "search"
    space = BertSpace(toy_config(vocab_size=bertnas.BertNasConfig.from_pretrained(
        run_dir / "checkpoint-00000010" / "model").vocab_size))
    budget = space.embedding_params() + 15_000
    assert main(["search", "--checkpoint", str(run_dir), "--method", "shrinking", "--max-params", f"{budget / 1e3}k",
                 "--output-dir", str(out), "--eval-batches", "2", "--candidates-per-bin", "4", "--top-k", "4",
                 "--no-progress"]) == 0
    entries = json.loads((out / "results.json").read_text())
    assert 1 <= len(entries) <= 4 and [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
    assert [e["score"] for e in entries] == sorted(e["score"] for e in entries)
    assert all(e["params"] <= budget and e["params"] == space.params(e["arch"]) for e in entries)
    meta = json.loads((out / "search.json").read_text())
    assert meta["heldout"]["seq_len"] == 16 and meta["heldout"]["batches"] == 2
    assert meta["checkpoint"].endswith("checkpoint-00000010") and meta["archs_scored"] >= len(entries)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "rank" in capsys.readouterr().out

    (out / "notes.txt").write_text("mine")  # a rerun over the results: refused, then --overwrite
    rerun = ["search", "--checkpoint", str(run_dir), "--method", "random", "--num-samples", "2", "--output-dir",
             str(out), "--eval-batches", "1", "--no-progress"]
    assert main(rerun) == 2 and "already holds a search" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == entries
    assert main([*rerun, "--overwrite"]) == 0
    assert json.loads((out / "search.json").read_text())["method"] == "random"
    assert (out / "notes.txt").read_text() == "mine" and not (out / ".bertnas.lock").exists()

    # with a ground truth the search also writes the trust report (a bad truth fails first)
    assert main([*rerun, "--overwrite", "--truth", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    four = [*rerun, "--num-samples", "4", "--overwrite"]  # the report needs at least 3 archs
    assert main(four) == 0
    evaluated = json.loads((out / "evaluated.json").read_text())
    truth = {",".join(e["arch"]): -e["score"] for e in evaluated}  # loss -> an accuracy-like truth
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    assert main([*four, "--truth", str(tmp_path / "truth.json")]) == 0
    assert "trust report ->" in capsys.readouterr().out
    assert "Kendall" in (out / "trust_report.md").read_text()


def test_search_function_methods_and_errors(run_dir, tmp_path):
    from bertnas.search import search

    ckpt = run_dir / "checkpoint-00000010"
    rand = search(ckpt, "random", tmp_path / "r", num_samples=5, eval_batches=1, progress=False)
    assert len(rand) == 5 and (tmp_path / "r" / "evaluated.json").exists()
    evo = search(run_dir, "evolution", None, population=3, generations=1, eval_batches=1, top_k=2, progress=False)
    assert len(evo) == 2
    # same checkpoint, same held-out set: an arch scored by both methods gets the same score
    common = {tuple(e["arch"]): e["score"] for e in rand}
    for e in evo:
        if tuple(e["arch"]) in common:
            assert e["score"] == common[tuple(e["arch"])]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        search(tmp_path / "nowhere", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no checkpoint"):
        search(tmp_path / "empty", progress=False)
    with pytest.raises(InfeasibleBudget, match="cheapest arch"):
        search(run_dir, max_params="1k", progress=False)
    with pytest.raises(ValueError, match="Unknown search method"):
        search(run_dir, "annealing", progress=False)


def test_build_latency_table_command(run_dir, tmp_path, capsys, quick_timing):
    from bertnas.cli import main

    out = tmp_path / "lat.json"
    assert main(["search", "--checkpoint", str(run_dir), "--build-latency-table", str(out),
                 "--latency-check-archs", "2", "--latency-threads", "1", "--no-progress"]) == 0
    table = LatencyTable.load(out)
    assert table.seq_lens == [16] and table.mean_abs_pct_error is not None
    assert "prediction error" in capsys.readouterr().out


def test_build_latency_table_command_fits_a_correction_that_search_uses(run_dir, tmp_path, capsys, quick_timing):
    from bertnas.cli import main

    out = tmp_path / "lat.json"
    build = ["search", "--checkpoint", str(run_dir), "--build-latency-table", str(out), "--latency-check-archs", "2",
             "--latency-threads", "1", "--no-progress"]
    assert main([*build, "--latency-fit-archs", "1"]) == 2
    assert "--latency-fit-archs must be 0 or >= 2" in capsys.readouterr().err
    assert main(["search", "--checkpoint", str(run_dir), "--latency-fit-archs", "4", "--output-dir",
                 str(tmp_path / "s")]) == 2
    assert "--build-latency-table" in capsys.readouterr().err
    assert main([*build, "--latency-fit-archs", "4"]) == 0
    printed = capsys.readouterr().out
    table = LatencyTable.load(out)
    assert table.correction is not None and len(table.correction["fit"]["archs"]) == 4
    assert f"correction '{table.correction['model']}' fitted on 4" in printed and "plain sum" in printed
    # --max-latency-ms with this table: every result's latency is the predictor's, within the budget
    space = BertSpace(bertnas.BertNasConfig.from_pretrained(run_dir / "checkpoint-00000010" / "model"))
    budget = sorted(table.predict(a, 16) for a in space.enumerate())[40]
    result = tmp_path / "lat-search"
    assert main(["search", "--checkpoint", str(run_dir), "--method", "random", "--num-samples", "4",
                 "--max-latency-ms", str(budget), "--latency-table", str(out), "--output-dir", str(result),
                 "--eval-batches", "1", "--no-progress"]) == 0
    for entry in json.loads((result / "evaluated.json").read_text()):
        assert entry["latency_ms"] == pytest.approx(table.predict(entry["arch"], 16)) and entry["latency_ms"] <= budget
    meta = json.loads((result / "search.json").read_text())
    assert meta["latency_predictor"] == table.correction["model"]


def test_electra_checkpoint_and_blockwise_search(tmp_path, tiny_tokenizer, tiny_corpus):
    from bertnas.search import search

    run = make_run(tmp_path / "run", tiny_tokenizer, tiny_corpus)
    ckpt = run / "checkpoint-00000010"
    # the same run as ELECTRA: a discriminator supernet in model/, a fixed generator in generator/
    config = bertnas.BertNasConfig.from_pretrained(ckpt / "model")
    bertnas.BertNasForPreTraining(config).save_pretrained(ckpt / "model")
    gen = toy_config(vocab_size=config.vocab_size, arch=["mha12", "ffn"], candidates=["mha12", "ffn"])
    bertnas.BertNasForMaskedLM(gen).save_pretrained(ckpt / "generator")
    write_manifest(ckpt)  # the files changed: as the ELECTRA run would have written them
    entries = search(run, "random", None, num_samples=3, eval_batches=1, progress=False)
    assert len(entries) == 3 and all(e["metric"] == "electra_disc_loss" for e in entries)
    assert all(0 < e["score"] < 5 for e in entries)

    mlm_run = make_run(tmp_path / "mlm", tiny_tokenizer, tiny_corpus, num_hidden_layers=4)
    out = tmp_path / "blockwise"
    entries = search(mlm_run, "shrinking", out, blockwise=True, block_size=2, candidates_per_block=6, top_k=3,
                     eval_batches=1, progress=False)
    meta = json.loads((out / "search.json").read_text())
    assert meta["method"] == "shrinking-blockwise" and meta["method_info"]["base_arch"] == ["mha12", "ffn"] * 2
    assert len(entries) == 3 and all("blockwise_loss" in e for e in entries)
    assert [e["score"] for e in entries] == sorted(e["score"] for e in entries)


def test_each_search_method_gets_its_own_options_object():
    from bertnas.search.api import SEARCH_METHODS, method_options, options_class
    from bertnas.search.options import EvolutionOptions, RandomOptions, SearchOptions, ShrinkingOptions

    assert {name: options_class(name) for name in SEARCH_METHODS} == {
        "shrinking": ShrinkingOptions, "evolution": EvolutionOptions, "random": RandomOptions}
    keywords = dict(seed=3, top_k=None, progress=False, bins=5, population=7, num_samples=9, mutation_k=2)
    shrinking, evolution, rand = (method_options(m, keywords) for m in ("shrinking", "evolution", "random"))
    assert (shrinking.bins, shrinking.mutation_k, shrinking.seed, shrinking.candidates_per_bin) == (5, 2, 3, 16)
    assert (evolution.population, evolution.generations, evolution.top_k) == (7, 8, None)
    assert rand == RandomOptions(seed=3, top_k=None, progress=False, num_samples=9)
    assert not hasattr(rand, "bins") and rand["num_samples"] == 9  # the older mapping access still reads
    assert method_options("random", rand) is rand
    # the defaults are search()'s keyword defaults
    import inspect

    from bertnas.search.api import search

    defaults = {k: p.default for k, p in inspect.signature(search).parameters.items()}
    for cls in (ShrinkingOptions, EvolutionOptions, RandomOptions, SearchOptions):
        assert all(defaults[k] == v for k, v in cls().to_dict().items()), cls


def test_a_registered_method_is_given_its_options_class(run_dir):
    from dataclasses import dataclass

    from bertnas.search import SEARCH_METHODS, SearchOptions, register_search_method, search
    from bertnas.search.shrinking import SearchOutcome
    from bertnas.storage.results import make_candidate

    @dataclass(frozen=True)
    class FirstOptions(SearchOptions):
        num_samples: int = 1

    seen = []

    @register_search_method("first-n", options=FirstOptions)
    def first_n(task, space, evaluator, constraints, options):
        seen.append(options)
        scored = [make_candidate(space, constraints, a, evaluator(a))
                  for a in (space.sample(s) for s in range(options.num_samples))]
        return SearchOutcome(results=scored, evaluated=scored), {"num_samples": options.num_samples}

    try:
        entries = search(run_dir, "first-n", None, num_samples=2, seed=4, eval_batches=1, progress=False)
    finally:
        SEARCH_METHODS.unregister("first-n")
    assert seen == [FirstOptions(seed=4, top_k=10, progress=False, num_samples=2)] and len(entries) <= 2
