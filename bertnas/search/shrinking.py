"""Progressive shrinking (NAS-BERT, MAGIC), whole-arch and block-wise.

Whole-arch variant (`progressive_shrinking`), as implemented here:

* Bins. The allowed part of the space (within the budget) is split into B bins by
  parameter count (or predicted latency): the bin edges are quantiles of the cost over the
  allowed archs (enumerated when the space is small, else 4000 samples), so each bin holds
  about the same share of the space and no bin is empty. Sampling a bin = rejection
  sampling of the space restricted to the bin's cost range (or drawing without replacement
  from the bin's archs when the space was enumerated).
* Stages. Each bin starts with E sampled candidates. Every stage scores the bins' new
  candidates as one population (`score_population`: the evaluator shares layer prefixes across
  them; scores are cached, so survivors are not re-scored) and keeps each bin's better half:
  the number kept goes E/2, E/4, ... down to m. Between stages the population is refilled to
  E with neighbours of the survivors (one op changed, staying in the bin and the budget):
  the evaluation budget moves to the regions that scored well. When no new neighbour can be
  found (a small bin), fresh samples of the bin fill in.
* Result. The m survivors of every bin, ranked by score, each tagged with its bin, so every
  model size keeps candidates.

Block-wise variant (`blockwise_search`) for block-wise trained (or MAGIC-A aligned)
supernets: the chain is cut into blocks of `block_size` layers; each block's candidates
(every op combination of the block, or E samples of them) get a block loss = MSE between
the block's output and the teacher's (base arch) block output, both from the teacher's block
input, on the held-out batches. The lookup table of (block, candidate) -> (loss, params,
FLOPs, latency) is combined under the budget: per-block options are merged block by block,
keeping only combinations that no other combination beats on loss and every cost (a Pareto
merge, exact up to `max_front` kept per step). The best combinations are finally scored with
the whole-subnet evaluator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from bertnas.search.constraints import Constraints, InfeasibleBudget
from bertnas.spaces.base import as_rng
from bertnas.storage.results import make_candidate, rank
from bertnas.supernet.scoring import model_inputs

ENUMERATE_LIMIT = 20_000  # spaces up to this size are listed exactly (bins, sampling)
POOL_SAMPLES = 4000  # samples that place the bin edges in larger spaces


@dataclass
class Bin:
    index: int
    lo: float  # inclusive
    hi: float  # exclusive, except for the last bin (inclusive)
    last: bool
    members: list | None = None  # every allowed arch of the bin, when the space was enumerated

    def contains(self, cost: float) -> bool:
        return self.lo <= cost <= self.hi if self.last else self.lo <= cost < self.hi

    def to_dict(self) -> dict:
        return {"bin": self.index, "lo": self.lo, "hi": self.hi, "size": len(self.members) if self.members else None}


@dataclass
class SearchOutcome:
    results: list  # ranked Candidates the method returns
    evaluated: list  # every scored Candidate
    info: dict = field(default_factory=dict)


def cost_function(space, constraints: Constraints, bin_by: str) -> Callable:
    if bin_by == "params":
        return lambda arch: space.params(arch)
    if bin_by == "latency":
        if constraints.latency_table is None:
            raise ValueError("bin_by='latency' needs a latency table (--latency-table)")
        return lambda arch: constraints.latency_table.predict(arch, constraints.seq_len)
    raise ValueError(f"bin_by must be 'params' or 'latency', got {bin_by!r}")


def make_bins(space, constraints: Constraints, num_bins: int, cost: Callable, rng) -> list[Bin]:
    """Split the allowed archs into at most `num_bins` bins of (about) equal share by cost."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    enumerated = space.size() <= ENUMERATE_LIMIT
    if enumerated:
        pool = [a for a in space.enumerate() if constraints.allows(space, a)]
    else:
        pool = []
        for _ in range(POOL_SAMPLES * 5):
            arch = space.sample(rng)
            if constraints.allows(space, arch):
                pool.append(arch)
                if len(pool) >= POOL_SAMPLES:
                    break
    if not pool:
        raise InfeasibleBudget(f"No arch of {space} meets the budget {constraints.describe()}; raise the budget")
    costs = sorted(cost(a) for a in pool)
    # Edges are costs of pool archs at equal-share positions; equal costs collapse (fewer bins),
    # and every bin holds the pool arch at its lower edge, so none is empty.
    edges = sorted({costs[(i * len(costs)) // num_bins] for i in range(num_bins)})
    bins = [Bin(i, lo, edges[i + 1] if i + 1 < len(edges) else costs[-1], i + 1 == len(edges))
            for i, lo in enumerate(edges)]
    if enumerated:
        for b in bins:
            b.members = [a for a in pool if b.contains(cost(a))]
    return bins


def _sample_in_bin(space, constraints, b: Bin, cost, rng, exclude: set, count: int) -> list:
    """Up to `count` new archs of bin `b` (not in `exclude`), uniform over the bin."""
    if b.members is not None:
        fresh = [a for a in b.members if a not in exclude]
        return rng.sample(fresh, min(count, len(fresh)))
    found = []
    tries = 0
    while len(found) < count and tries < 200 * count:
        tries += 1
        arch = space.sample(rng)
        if arch in exclude or arch in found or not b.contains(cost(arch)) or not constraints.allows(space, arch):
            continue
        found.append(arch)
    return found


def _neighbours(space, constraints, b: Bin, cost, rng, parents: list, exclude: set, count: int, k: int) -> list:
    """Up to `count` new archs, each a parent with `k` ops changed, inside bin `b` and the budget."""
    found = []
    tries = 0
    while len(found) < count and tries < 50 * count:
        tries += 1
        child = space.neighbour(rng.choice(parents), k, rng)
        if child in exclude or child in found or not b.contains(cost(child)) or not constraints.allows(space, child):
            continue
        found.append(child)
    return found


def shrinking_total(candidates_per_bin: int, survivors_per_bin: int, population_sizes: Sequence[int]) -> int:
    """The archs progressive shrinking scores: every initial population, then per stage that is
    not the last, E - keep new archs per bin (keep = ceil(keep / 2), down to m). A bin that runs
    out of new archs scores fewer; the search lowers its progress bar's total when that happens."""
    total, keep = sum(population_sizes), candidates_per_bin
    while True:
        keep = max(survivors_per_bin, math.ceil(keep / 2))
        if keep == survivors_per_bin:
            return total
        total += len(population_sizes) * (candidates_per_bin - keep)


def score_population(score_fn: Callable, archs) -> list[float]:
    """The scores of `archs`, in one call when the scorer takes a population
    (`Evaluator.score_many`: on chain spaces, layer prefixes the archs share are computed once per
    held-out batch), else one by one."""
    archs = list(archs)
    many = getattr(score_fn, "score_many", None)
    if many is not None:
        return [float(s) for s in many(archs)] if archs else []
    return [float(score_fn(a)) for a in archs]


def progressive_shrinking(
    space,
    score_fn: Callable,
    constraints: Constraints | None = None,
    num_bins: int = 3,
    candidates_per_bin: int = 16,
    survivors_per_bin: int = 2,
    bin_by: str = "params",
    mutation_k: int = 1,
    refill: str = "mutate",
    higher_is_better: bool = False,
    seed=0,
    progress: bool = True,
) -> SearchOutcome:
    """NAS-BERT-style progressive shrinking (see the module doc). `score_fn(arch) -> float`
    (lower is better unless `higher_is_better`); B = num_bins, E = candidates_per_bin,
    m = survivors_per_bin; refill "mutate" (neighbours of survivors) or "sample" (fresh draws)."""
    from tqdm.auto import tqdm

    constraints = constraints or Constraints()
    if candidates_per_bin < 1 or survivors_per_bin < 1:
        raise ValueError("candidates_per_bin (E) and survivors_per_bin (m) must be >= 1")
    if refill not in ("mutate", "sample"):
        raise ValueError(f"refill must be 'mutate' or 'sample', got {refill!r}")
    constraints.check_feasible(space)
    rng = as_rng(seed)
    cost = cost_function(space, constraints, bin_by)
    bins = make_bins(space, constraints, num_bins, cost, rng)
    sign = -1.0 if higher_is_better else 1.0
    scores: dict = {}
    seen = [set() for _ in bins]  # archs ever placed in each bin's population
    populations = []
    for b in bins:
        pop = _sample_in_bin(space, constraints, b, cost, rng, set(), candidates_per_bin)
        seen[b.index].update(pop)
        populations.append(pop)

    keep = candidates_per_bin
    stages = []
    bar = tqdm(total=shrinking_total(candidates_per_bin, survivors_per_bin, [len(p) for p in populations]),
               desc="shrinking", unit="arch", disable=not progress)
    while True:
        # the stage's new archs (every bin) scored as one population: shared prefixes once
        todo = list(dict.fromkeys(arch for pop in populations for arch in pop if arch not in scores))
        scores.update(zip(todo, score_population(score_fn, todo)))
        new = len(todo)
        bar.update(new)
        keep = max(survivors_per_bin, math.ceil(keep / 2))
        survivors = [sorted(pop, key=lambda a: (sign * scores[a], a.ops))[:keep] for pop in populations]
        stages.append({
            "stage": len(stages), "scored": new, "kept_per_bin": keep,
            "population_per_bin": [len(p) for p in populations],
            "best_per_bin": [scores[s[0]] if s else None for s in survivors],
        })
        if keep == survivors_per_bin:
            break
        # Refill every bin to E around its survivors.
        for b, surv in zip(bins, survivors):
            want = candidates_per_bin - len(surv)
            added = []
            if refill == "mutate" and surv:
                added = _neighbours(space, constraints, b, cost, rng, surv, seen[b.index], want, mutation_k)
            if len(added) < want:
                added += _sample_in_bin(space, constraints, b, cost, rng, seen[b.index] | set(added), want - len(added))
            # the total planned E - keep new archs for this bin: a bin with fewer left scores fewer
            bar.total -= (candidates_per_bin - keep) - len(added)
            seen[b.index].update(added)
            populations[b.index] = surv + added
    bar.close()

    results = []
    for b, surv in zip(bins, survivors):
        for arch in surv:
            results.append(make_candidate(space, constraints, arch, scores[arch], bin=b.index))
    bin_of = {a: b.index for b in bins for a in seen[b.index]}
    evaluated = [make_candidate(space, constraints, a, s, bin=bin_of.get(a)) for a, s in scores.items()]
    info = {"num_bins": len(bins), "requested_bins": num_bins, "bin_by": bin_by,
            "bins": [b.to_dict() for b in bins], "candidates_per_bin": candidates_per_bin,
            "survivors_per_bin": survivors_per_bin, "refill": refill, "mutation_k": mutation_k,
            "stages": stages, "num_evaluated": len(scores)}
    return SearchOutcome(rank(results, higher_is_better), rank(evaluated, higher_is_better), info)


# ----------------------------------------------------------------------------------------
# Block-wise variant
# ----------------------------------------------------------------------------------------


def block_ranges(num_layers: int, block_size: int) -> list[tuple[int, int]]:
    """[(start, end), ...] layer ranges of consecutive blocks (the last may be shorter)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return [(s, min(s + block_size, num_layers)) for s in range(0, num_layers, block_size)]


class BlockwiseScorer:
    """Block losses against a teacher path: block j of candidate ops, run from the teacher's
    hidden state at the block's input, vs the teacher's hidden state at the block's output
    (mean squared error over the held-out tokens). The teacher (`base_arch`) runs once.

    `backbone(**inputs, arch=..., output_hidden_states=True)` gives the hidden states after
    every layer; `layers` are its chain layers (`layer(x, op, attn_mask, token_mask)`)."""

    def __init__(self, backbone, layers, batches: Sequence[dict], base_arch, block_size: int = 2):
        self.backbone = backbone
        self.layers = list(layers)
        self.base = tuple(base_arch.ops if hasattr(base_arch, "ops") else base_arch)
        self.blocks = block_ranges(len(self.layers), block_size)
        self.items = []
        backbone.eval()
        with torch.no_grad():
            for batch in batches:
                inputs = model_inputs(batch)
                out = self.backbone(**inputs, arch=self.base, output_hidden_states=True)
                attn_mask = token_mask = None
                mask = inputs.get("attention_mask")
                if mask is not None and not bool(mask.all()):  # as BertNasModel.forward builds them
                    keep = mask.bool()
                    attn_mask, token_mask = keep[:, None, None, :], keep[:, :, None].to(out.hidden_states[0].dtype)
                weight = mask[..., None].to(out.hidden_states[0].dtype) if attn_mask is not None else None
                self.items.append((out.hidden_states, attn_mask, token_mask, weight))
        self.cache: dict = {}

    @torch.no_grad()
    def __call__(self, block: int, ops: tuple) -> float:
        key = (block, tuple(ops))
        if key in self.cache:
            return self.cache[key]
        start, end = self.blocks[block]
        total = count = 0.0
        for hidden, attn_mask, token_mask, weight in self.items:
            x = hidden[start]
            for layer, op in zip(self.layers[start:end], ops):
                x = layer(x, op, attn_mask, token_mask)
            err = (x - hidden[end]).pow(2)
            if weight is not None:
                err = err * weight
                count += float(weight.sum()) * x.shape[-1]
            else:
                count += err.numel()
            total += float(err.sum())
        self.cache[key] = total / count
        return self.cache[key]


def _block_options(space, block: tuple[int, int], limit: int, rng) -> list[tuple]:
    names = list(space.choices)[block[0]:block[1]]
    options = [space.choices[n] for n in names]
    if math.prod(len(o) for o in options) <= limit:
        return list(itertools.product(*options))
    found = set()
    while len(found) < limit:
        found.add(tuple(rng.choice(o) for o in options))
    return sorted(found)


def blockwise_search(
    space,
    block_scorer: Callable[[int, tuple], float],
    blocks: Sequence[tuple[int, int]],
    constraints: Constraints | None = None,
    candidates_per_block: int = 64,
    top_k: int = 10,
    score_fn: Callable | None = None,
    higher_is_better: bool = False,
    max_front: int = 4096,
    seed=0,
    progress: bool = True,
) -> SearchOutcome:
    """Block-wise search (see the module doc). Returns the `top_k` best combinations by summed
    block loss within the budget, re-ranked by `score_fn` (whole-subnet score) when given."""
    from tqdm.auto import tqdm

    constraints = constraints or Constraints()
    constraints.check_feasible(space)
    if not hasattr(space, "op_params"):
        raise ValueError("The block-wise lookup table needs per-op costs (a chain space such as BertSpace)")
    rng = as_rng(seed)
    table = constraints.latency_table
    seq_len = constraints.seq_len

    def op_costs(op):  # latency: the predictor's per-layer cost (with a fitted correction: in context)
        return (space.op_params(op), space.op_flops(op, seq_len), table.layer_ms(op, seq_len) if table else 0.0)

    def block_costs(ops):  # + the predictor's costs of adjacent pairs inside the block, if it has any
        costs = tuple(sum(c) for c in zip(*(op_costs(op) for op in ops)))
        if table is not None and not table.additive:
            costs = (*costs[:2], costs[2] + sum(table.pair_ms(a, b, seq_len) for a, b in itertools.pairwise(ops)))
        return costs

    # Budgets left for the chain (embeddings and the fixed latency overhead come off first).
    inf = math.inf
    bounds = (
        constraints.max_params - space.embedding_params() if constraints.max_params is not None else inf,
        constraints.max_flops if constraints.max_flops is not None else inf,
        constraints.max_latency_ms - table.fixed_ms(seq_len) if constraints.max_latency_ms is not None else inf,
    )
    lookup = []  # per block: [(ops, loss, costs)]
    options = [_block_options(space, block, candidates_per_block, rng) for block in blocks]
    bar = tqdm(total=sum(len(o) for o in options), desc="block losses", unit="block-cand", disable=not progress)
    for j, block in enumerate(blocks):
        rows = []
        for ops in options[j]:
            costs = block_costs(ops)
            rows.append((ops, float(block_scorer(j, ops)), costs))
            bar.update()
        lookup.append(rows)
    # A sampled table may miss every combination under a budget that the space's smallest arch
    # meets (what `bertnas compress` checks before distilling): then each block's cheapest ops
    # join it. Only then, so a table that already fits the budget searches as before.
    if any(sum(min(r[2][d] for r in rows) for rows in lookup) > bounds[d] for d in range(3)):
        for j, block in enumerate(blocks):
            names = list(space.choices)[block[0]:block[1]]
            ops = tuple(min(space.choices[n], key=op_costs) for n in names)
            if all(row[0] != ops for row in lookup[j]):
                costs = block_costs(ops)
                bar.total += 1
                lookup[j].append((ops, float(block_scorer(j, ops)), costs))
                bar.update()
    bar.close()
    # Cheapest possible cost of the blocks after each one (to drop hopeless partial paths).
    rest = [(0.0, 0.0, 0.0)] * (len(blocks) + 1)
    for j in range(len(blocks) - 1, -1, -1):
        rest[j] = tuple(rest[j + 1][d] + min(r[2][d] for r in lookup[j]) for d in range(3))
    front = [((), 0.0, (0.0, 0.0, 0.0))]
    for j, rows in enumerate(lookup):
        merged = []
        for ops, loss, costs in front:
            for bops, bloss, bcosts in rows:
                total = tuple(a + b for a, b in zip(costs, bcosts))
                if all(total[d] + rest[j + 1][d] <= bounds[d] for d in range(3)):
                    merged.append((ops + bops, loss + bloss, total))
        front = _pareto(merged, max_front)
        if not front:
            raise InfeasibleBudget(f"No combination of block candidates meets the budget {constraints.describe()}")
    if table is not None and not table.additive:
        # the pairs across block boundaries are outside the block sums: check the whole chains
        front = [f for f in front if constraints.allows(space, space.arch(list(f[0])))]
        if not front:
            raise InfeasibleBudget(f"No combination of block candidates meets the budget {constraints.describe()} "
                                   "(with the latency table's costs of adjacent layers)")
    best = front[:top_k]
    archs = [space.arch(list(ops)) for ops, _, _ in best]
    scores = score_population(score_fn, archs) if score_fn is not None else [loss for _, loss, _ in best]
    results = [make_candidate(space, constraints, arch, score, blockwise_loss=loss)
               for arch, score, (_, loss, _) in zip(archs, scores, best)]
    if score_fn is not None:
        results = rank(results, higher_is_better)
    info = {"blocks": [list(b) for b in blocks], "candidates_per_block": [len(r) for r in lookup],
            "lookup_table": [[{"ops": list(o), "loss": loss, "params": c[0], "flops": c[1],
                               "latency_ms": c[2] if table else None} for o, loss, c in rows] for rows in lookup],
            "front_size": len(front), "rescored": score_fn is not None}
    return SearchOutcome(results, list(results), info)


def _pareto(items: list, limit: int) -> list:
    """Items (ops, loss, costs) that no other item beats on loss and on every cost, by loss.
    Keeps the `limit` best by loss (exact when the front is smaller)."""
    items.sort(key=lambda t: (t[1], t[2], t[0]))
    kept = []
    for item in items:
        if not any(all(k[2][d] <= item[2][d] for d in range(3)) for k in kept):
            kept.append(item)
            if len(kept) >= limit:
                break
    return kept


__all__ = ["progressive_shrinking", "blockwise_search", "BlockwiseScorer", "block_ranges", "make_bins", "Bin",
           "SearchOutcome"]
