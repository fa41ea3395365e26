"""The latency table's fitted correction (bertnas/search/latency_model.py, issue 24): the fit
recovers known coefficients, the model is chosen by leave-one-out error, tables round-trip it,
old tables predict the plain sum, constraints and the cheapest-arch search use the predictor,
bad tables fail in one line. No timing assertions: the one test that times anything only
checks what the build stores."""

import itertools
import json
import random

import numpy as np
import pytest

from bertnas.search import Constraints, InfeasibleBudget, LatencyTable, random_search
from bertnas.search import latency_model as lm
from bertnas.spaces import BertSpace

from conftest import toy_config

SEQ = 16


def plain_table(config, seq_len=SEQ, correction=None) -> LatencyTable:
    """A version-1 style table with made-up per-op numbers; `correction` added when given."""
    ops = {op: {str(seq_len): 0.1 + 0.07 * i} for i, op in enumerate(config.candidates)}
    data = {"ops": ops, "overhead_ms": {str(seq_len): 0.25}, "config": {}}
    if correction is not None:
        data |= {"format_version": 2, "correction": correction}
    return LatencyTable(data)


def synthetic(table, space, terms, coef, n, seed=0):
    """Measurements that follow `plain + sum coef_j * term_j` exactly, on `n` random archs."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ops = list(space.sample(rng).ops)
        plain = table.plain_predict(ops, SEQ)
        extra = float(np.dot(lm.term_values(terms, ops, plain), coef))
        out.append({"arch": ops, "plain_ms": plain, "measured_ms": plain + extra})
    return out


@pytest.mark.parametrize("model", lm.MODELS)
def test_fit_recovers_known_coefficients(model):
    config = toy_config(num_hidden_layers=6)
    space, table = BertSpace(config), plain_table(config)
    terms = lm.model_terms(model, config.candidates)
    rng = np.random.default_rng(1)
    true = rng.uniform(0.01, 0.2, len(terms))
    if model == "scale":
        true = np.array([0.05, 0.15])  # +0.05 ms and +15 % on every op
    samples = synthetic(table, space, terms, true, 200)
    x, plain, measured = lm._arrays(samples, terms)
    assert np.linalg.matrix_rank(x) == len(terms)  # every term is identifiable from these archs
    assert np.allclose(lm.ridge(x, plain, measured, alpha=0.0), true, rtol=0, atol=1e-9)
    # ridge shrinks towards the plain sum (zero correction), never past it
    shrunk = lm.ridge(x, plain, measured, alpha=10.0)
    assert np.linalg.norm(shrunk) < np.linalg.norm(true)
    assert np.allclose(lm.loo_abs_rel_errors(x, plain, measured, 0.0), 0.0, atol=1e-9)


def test_selection_picks_the_true_model_and_the_table_predicts_with_it(tmp_path):
    config = toy_config(num_hidden_layers=6)
    space, table = BertSpace(config), plain_table(config)
    terms = lm.model_terms("ops+transitions", config.candidates)
    true = [0.02 * (i + 1) for i in range(len(terms) - 1)] + [0.3]  # a big cost per change of op kind
    samples = synthetic(table, space, terms, true, 80)
    correction = lm.select_and_fit({SEQ: samples}, config.candidates)
    assert correction["model"] == "ops+transitions" and correction["alpha"] == 0.0
    assert correction["terms"] == terms and np.allclose(correction["coef"][str(SEQ)], true, atol=1e-9)
    loo = {(r["model"], r["alpha"]): r["mean_abs_pct_error"] for r in correction["selection"]["loo"]}
    assert loo[("scale", 0.0)] > 1.0 > loo[("ops+transitions", 0.0)]  # the sum and one factor miss it
    corrected = plain_table(config, correction=correction)
    assert not corrected.additive
    for s in synthetic(table, space, terms, true, 20, seed=5):  # archs the fit never saw
        assert corrected.predict(s["arch"], SEQ) == pytest.approx(s["measured_ms"], rel=1e-9)
        assert corrected.plain_predict(s["arch"], SEQ) == pytest.approx(s["plain_ms"])


def test_save_load_round_trips_the_predictor(tmp_path):
    config = toy_config(num_hidden_layers=4)
    terms = lm.model_terms("ops+pairs", config.candidates)
    coef = [round(0.01 * i, 3) for i in range(len(terms))]
    correction = {"model": "ops+pairs", "terms": terms, "coef": {str(SEQ): coef, "32": [2 * c for c in coef]},
                  "alpha": 0.1, "fit": {"archs": []}}
    table = plain_table(config, correction=correction)
    table.data["overhead_ms"]["32"] = 0.5
    for op in table.ops:
        table.ops[op]["32"] = 2 * table.ops[op][str(SEQ)]
    loaded = LatencyTable.load(table.save(tmp_path / "lat.json"))
    assert loaded.data == json.loads(json.dumps(table.data)) and loaded.correction["model"] == "ops+pairs"
    space = BertSpace(config)
    for arch in itertools.islice(space.enumerate(), 0, None, 97):
        for n in (SEQ, 24, 32):  # 24: coefficients interpolated like the op timings
            assert loaded.predict(arch, n) == pytest.approx(table.predict(arch, n), rel=1e-12)
        assert loaded.predict(arch, 32) == pytest.approx(2 * loaded.predict(arch, SEQ), rel=1e-9)


def test_old_table_without_a_correction_predicts_the_plain_sum(tmp_path):
    config = toy_config()
    old = plain_table(config)  # the format of version 1: no format_version, no correction
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old.data))
    table = LatencyTable.load(path)
    assert table.correction is None and table.additive
    arch = ["mha12", "conv3"]
    plain = table.overhead_ms(SEQ) + table.op_ms("mha12", SEQ) + table.op_ms("conv3", SEQ)
    assert table.predict(arch, SEQ) == table.plain_predict(arch, SEQ) == pytest.approx(plain)
    assert table.layer_ms("ffn", SEQ) == table.op_ms("ffn", SEQ) and table.fixed_ms(SEQ) == table.overhead_ms(SEQ)
    assert table.pair_ms("mha12", "ffn", SEQ) == 0.0


def test_cheapest_arch_is_the_predictors_minimum():
    config = toy_config(num_hidden_layers=3)
    space = BertSpace(config)
    terms = lm.model_terms("ops+pairs", config.candidates)
    rng = random.Random(3)
    coef = [rng.uniform(-0.05, 0.3) for _ in terms]
    table = plain_table(config, correction={"model": "ops+pairs", "terms": terms, "coef": {str(SEQ): coef}})
    best = min(space.enumerate(), key=lambda a: table.predict(a, SEQ))
    cheapest = table.cheapest(list(space.choices.values()), SEQ)
    assert table.predict(cheapest, SEQ) == pytest.approx(table.predict(best, SEQ))


def test_constraints_use_the_predictor():
    config = toy_config(num_hidden_layers=4)
    space = BertSpace(config)
    terms = ["op:identity", "transitions"]  # identity costs 1 ms in context; each change of op kind 0.2 ms
    table = plain_table(config, correction={"model": "ops+transitions", "terms": terms, "coef": {str(SEQ): [1.0, 0.2]}})
    table.ops["identity"][str(SEQ)] = 0.01  # the cheapest op alone
    arch = space.arch(["identity", "mha12", "mha12", "ffn"])
    budget = table.plain_predict(arch, SEQ) + 0.5  # fine by the plain sum, over by the predictor
    c = Constraints(max_latency_ms=budget, seq_len=SEQ, latency_table=table)
    assert c.costs(space, arch)["latency_ms"] == pytest.approx(table.plain_predict(arch, SEQ) + 1.0 + 2 * 0.2)
    assert not c.allows(space, arch)
    # the plain sum's cheapest arch is all-identity; the predictor's is not
    all_identity = ["identity"] * 4
    with pytest.raises(InfeasibleBudget, match="cheapest arch"):
        Constraints(max_latency_ms=table.plain_predict(all_identity, SEQ) + 0.01, seq_len=SEQ,
                    latency_table=table).check_feasible(space)
    least = table.predict(table.cheapest(list(space.choices.values()), SEQ), SEQ)
    feasible = Constraints(max_latency_ms=least + 0.5, seq_len=SEQ, latency_table=table)
    feasible.check_feasible(space)
    out = random_search(space, lambda a: 0.0, feasible, num_samples=8, progress=False)
    assert out.results and all(r.latency_ms == pytest.approx(table.predict(r.ops, SEQ)) for r in out.results)
    assert all(r.latency_ms <= feasible.max_latency_ms for r in out.evaluated)


V2 = '{"format_version": 2, "ops": {}, "overhead_ms": {"16": 0.1}, "config": {}, '


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"ops": {}, "config": {}}', "'overhead_ms' is missing"),
    ('{"ops": {"ffn": {"16": "fast"}}, "overhead_ms": {"16": 0.1}, "config": {}}', "op ffn is not"),
    ('{"format_version": 9, "ops": {}, "overhead_ms": {"16": 0.1}, "config": {}}', "upgrade bertnas"),
    (V2 + '"correction": {"terms": ["op:ffn", "wobble"], "coef": {"16": [1, 2]}}}', "does not know: \\['wobble'\\]"),
    (V2 + '"correction": {"terms": ["op:ffn"], "coef": {"16": [1, 2]}}}', "not 1 finite numbers"),
    (V2 + '"correction": {"terms": ["const"], "coef": {"16": [NaN]}}}', "not 1 finite numbers"),
])
def test_bad_tables_fail_in_one_line_naming_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "lat.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        LatencyTable.load(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert "upgrade bertnas" in text or "--build-latency-table" in text


def test_bad_fit_requests():
    from bertnas.search.latency import build_latency_table

    with pytest.raises(ValueError, match="at least 2"):
        lm.select_and_fit({SEQ: [{"arch": ["ffn"], "plain_ms": 1.0, "measured_ms": 1.1}]}, ["ffn"])
    with pytest.raises(ValueError, match="Unknown latency correction model"):
        lm.model_terms("cubic", ["ffn"])
    with pytest.raises(ValueError, match=">= 2"):
        build_latency_table(toy_config(), [SEQ], fit_archs=1, progress=False)
    with pytest.raises(ValueError, match="only 64 archs"):  # 2 layers x 8 candidates
        build_latency_table(toy_config(), [SEQ], fit_archs=60, check_archs=5, progress=False)


def test_build_fits_on_other_archs_than_it_checks(monkeypatch):
    from bertnas.search import latency

    monkeypatch.setattr(latency, "REPEATS", 1)
    monkeypatch.setattr(latency, "MIN_TIME_S", 0.0)
    table = latency.build_latency_table(toy_config(), [8], check_archs=2, fit_archs=4, threads=1, progress=False)
    correction, err = table.correction, table.data["prediction_error"]
    assert table.data["format_version"] == latency.FORMAT_VERSION and correction["model"] in lm.MODELS
    fitted = {tuple(s["arch"]) for s in correction["fit"]["archs"]}
    checked = {tuple(s["arch"]) for s in err["archs"]}
    assert len(fitted) == 4 and len(checked) == 2 and not fitted & checked
    for s in err["archs"]:
        assert s["predicted_ms"] == pytest.approx(table.predict(s["arch"], 8))
        assert s["plain_ms"] == pytest.approx(table.plain_predict(s["arch"], 8))
    assert set(err["plain"]) == {"mean_abs_pct_error", "max_abs_pct_error", "within_10pct"}
    assert 0.0 <= err["within_10pct"] <= 1.0 and err["predictor"] == correction["model"]
