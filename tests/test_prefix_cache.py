"""The evaluator's prefix reuse on chain spaces: scores equal (==) scoring every arch whole, kept
states bounded, search methods unchanged by it (issue 24, part 3)."""

import random

import pytest
import torch
from conftest import toy_config

import bertnas
from bertnas.search import evolution_search, progressive_shrinking, random_search
from bertnas.spaces import BertSpace
from bertnas.supernet.scoring import (
    Evaluator,
    chain_backbone,
    electra_head,
    electra_loss,
    mlm_head,
)


def _batches(vocab, n=3, rows=4, length=16, seed=1, pad=True):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (rows, length), generator=g)
        mask = torch.ones(rows, length, dtype=torch.long)
        if pad:
            mask[0, length - 5:] = 0
        labels = torch.full((rows, length), -100)
        chosen = (torch.rand(rows, length, generator=g) < 0.3) & mask.bool()
        labels[chosen] = ids[chosen]
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def _model(cls=bertnas.BertNasForMaskedLM, **overrides):
    torch.manual_seed(0)
    config = toy_config(num_hidden_layers=4, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, **overrides)
    model = cls(config)
    with torch.no_grad():  # weights of a trained scale: archs differ clearly
        for p in model.bert.encoder.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model.train()  # the evaluator must switch to eval mode itself


def _sharing_archs(space):
    """Archs that share prefixes of every length, in no particular order, with a repeat."""
    base = ["mha12", "ffn", "conv3", "ffn_wide"]
    archs = [base, ["mha12", "ffn", "conv3", "mha6"], ["mha12", "ffn", "mha8", "ffn"], ["mha12", "conv5", "ffn", "ffn"],
             ["ffn", "ffn", "conv3", "ffn_wide"], base, ["mha12", "ffn", "conv3", "identity"],
             ["identity", "identity", "identity", "identity"]]
    rng = random.Random(0)
    archs += [space.sample(rng).to_list() for _ in range(6)]
    return [space.arch(a) for a in archs]


@pytest.mark.parametrize("overrides", [{}, {"embedding_size": 24}], ids=["plain", "factorised"])
def test_prefix_reuse_scores_equal_whole_scores(overrides):
    model = _model(**overrides)
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size)
    archs = _sharing_archs(space)
    whole = Evaluator(model, batches, space=space)
    expected = [whole(a) for a in archs]
    reused = Evaluator(model, batches, space=space, head_fn=mlm_head)
    assert reused.reuses_prefixes and not whole.reuses_prefixes
    assert reused.score_many(archs) == expected  # exactly, float by float
    unique = len(set(archs))
    assert 0 < reused.layers_run < unique * 4 * len(batches)  # prefixes were shared
    # one arch at a time goes the same way (a population of one) and gives the same floats
    one = Evaluator(model, batches, space=space, head_fn=mlm_head)
    assert [one(a) for a in archs] == expected
    assert not model.training  # eval mode: deterministic


def test_kept_states_are_bounded_and_reused_across_calls():
    model = _model()
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size)
    archs = _sharing_archs(space)
    state_bytes = 4 * 16 * model.config.hidden_size * 4  # one hidden state of one batch (fp32)
    rng = random.Random(3)
    children = list(dict.fromkeys(space.neighbour(a, 1, rng) for a in archs))
    whole = Evaluator(model, batches, space=space)
    expected = [whole(a) for a in children]
    for mb, bound in [(0, 0), (5 * state_bytes / 2**20, 5 * state_bytes), (64, None)]:
        ev = Evaluator(model, batches, space=space, head_fn=mlm_head, prefix_cache_mb=mb)
        ev.score_many(archs)
        assert ev._state_bytes <= (bound if bound is not None else ev.prefix_cache_bytes)
        if bound == 0:
            assert not ev._states
        before = ev.layers_run
        assert ev.score_many(children) == expected
        if mb == 64:  # everything kept: each child starts at least where its parent's prefix ends
            assert ev.layers_run - before < len(children) * 4 * len(batches)
    with pytest.raises(ValueError, match="prefix_cache_mb"):
        Evaluator(model, batches, prefix_cache_mb=-1)


def test_uncached_evaluator_drops_states_when_weights_move():
    model = _model()
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size)
    archs = _sharing_archs(space)[:5]
    ev = Evaluator(model, batches, space=space, head_fn=mlm_head, cache=False)
    ev.score_many(archs)
    with torch.no_grad():
        model.bert.encoder.layers[0].ops["mha12"].query.weight.mul_(1.5)
        model.bert.embeddings.word_embeddings.weight.mul_(0.5)
    fresh = Evaluator(model, batches, space=space)
    assert ev.score_many(archs) == [fresh(a) for a in archs]


def test_electra_head_equals_the_model_loss():
    model = _model(bertnas.BertNasForPreTraining)
    space = BertSpace(model.config)
    archs = _sharing_archs(space)
    for pad in (True, False):
        batches = _batches(model.config.vocab_size, pad=pad)
        for b in batches:  # replaced-token labels: 0/1 per token
            b["labels"] = (b["labels"] != -100).long()
        if not pad:
            for b in batches:
                del b["attention_mask"]
        whole = Evaluator(model, batches, loss_fn=electra_loss, space=space)
        reused = Evaluator(model, batches, loss_fn=electra_loss, space=space, head_fn=electra_head)
        assert reused.score_many(archs) == [whole(a) for a in archs]


def test_a_head_that_is_not_the_loss_turns_reuse_off():
    model = _model()
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size)
    archs = _sharing_archs(space)[:4]
    whole = Evaluator(model, batches, space=space)

    def wrong_head(model, batch, hidden):
        value, count = mlm_head(model, batch, hidden)
        return value * 1.01, count

    ev = Evaluator(model, batches, space=space, head_fn=wrong_head)
    with pytest.warns(UserWarning, match="differs from loss_fn"):
        scores = ev.score_many(archs)
    assert scores == [whole(a) for a in archs] and not ev.reuses_prefixes


def test_models_without_a_chain_are_scored_whole():
    class NotAChain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))
    assert chain_backbone(NotAChain()) is None
    model = _model()
    assert chain_backbone(model) is model.bert and chain_backbone(model.bert) is model.bert


@pytest.mark.parametrize("method", ["shrinking", "evolution", "random"])
def test_search_methods_give_the_same_outcome_with_reuse(method):
    model = _model()
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size, n=2)
    runs = []
    for head in (None, mlm_head):
        ev = Evaluator(model, batches, space=space, head_fn=head, prefix_cache_mb=1)
        if method == "shrinking":
            out = progressive_shrinking(space, ev, num_bins=2, candidates_per_bin=6, survivors_per_bin=2, seed=0,
                                        progress=False)
        elif method == "evolution":
            out = evolution_search(space, ev, population=6, generations=2, parents=3, seed=0, progress=False)
        else:
            out = random_search(space, ev, num_samples=10, seed=0, progress=False)
        runs.append(([(c.arch, c.score) for c in out.results], [(c.arch, c.score) for c in out.evaluated]))
        if head is not None:
            assert ev.layers_run > 0
    assert runs[0] == runs[1]


def test_priorities_are_kept_only_for_kept_prefixes():
    model = _model()
    space = BertSpace(model.config)
    batches = _batches(model.config.vocab_size, n=2)
    state_mb = 4 * 16 * model.config.hidden_size * 4 / 2**20
    ev = Evaluator(model, batches, space=space, head_fn=mlm_head, prefix_cache_mb=4 * state_mb)
    ev.score_many(_sharing_archs(space))
    kept = {prefix for _, prefix in ev._states}
    assert set(ev._priority) == kept == set(ev._held) and 0 < len(ev._states) <= 4
    assert sum(ev._held.values()) == len(ev._states)
