"""Evolutionary and random search under constraints (max params, FLOPs, latency).

Every arch either method scores has passed `constraints.allows` first: an arch over budget is
never scored, never kept, never returned.

Evolution (SPOS-style): a population of P allowed archs; each generation breeds P children
from the best `parents` archs found so far, by uniform crossover of two parents (with
probability `crossover_prob`) or by changing `mutation_k` ops of one parent; children that
are over budget or already scored are redrawn (after many misses: a fresh random arch). The
population is then the best P of parents and children. Total scored: P x (generations + 1).
Each generation (and random search's sample) is scored as one population (`score_population`),
so the evaluator computes the layer prefixes its archs share once.
"""

from __future__ import annotations

from collections.abc import Callable

from bertnas.spaces.base import Arch, as_rng
from bertnas.search.constraints import Constraints, InfeasibleBudget, sample_allowed
from bertnas.storage.results import make_candidate, rank
from bertnas.search.shrinking import SearchOutcome, score_population


def _unique_allowed(space, constraints, rng, exclude: set, count: int, propose=None) -> list:
    """Up to `count` allowed archs not in `exclude`, from `propose()` (default: uniform samples).
    Stops early when the space seems exhausted (many misses in a row)."""
    found = []
    misses = 0
    while len(found) < count and misses < 500:
        arch = propose() if propose is not None else space.sample(rng)
        if arch in exclude or arch in found or not constraints.allows(space, arch):
            misses += 1
            continue
        misses = 0
        found.append(arch)
    return found


def random_search(space, score_fn: Callable, constraints: Constraints | None = None, num_samples: int = 64,
                  higher_is_better: bool = False, seed=0, progress: bool = True) -> SearchOutcome:
    """Score `num_samples` distinct uniform archs within the budget; all of them ranked."""
    from tqdm.auto import tqdm

    constraints = constraints or Constraints()
    constraints.check_feasible(space)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    rng = as_rng(seed)
    archs = _unique_allowed(space, constraints, rng, set(), num_samples)
    if not archs:
        sample_allowed(space, constraints, rng)  # raises InfeasibleBudget with the reason
    with tqdm(total=len(archs), desc="random search", unit="arch", disable=not progress) as bar:
        values = score_population(score_fn, archs)  # one population: shared layer prefixes once
        bar.update(len(archs))
    scored = [make_candidate(space, constraints, a, s) for a, s in zip(archs, values)]
    ranked = rank(scored, higher_is_better)
    return SearchOutcome(ranked, list(ranked), {"num_samples": num_samples, "num_evaluated": len(scored)})


def crossover(space, a: Arch, b: Arch, rng) -> Arch:
    """The space's crossover (default: each choice taken from `a` or `b` with equal probability)."""
    return space.crossover(a, b, rng)


def evolution_search(space, score_fn: Callable, constraints: Constraints | None = None, population: int = 16,
                     generations: int = 8, parents: int = 4, mutation_k: int = 1, crossover_prob: float = 0.5,
                     higher_is_better: bool = False, seed=0, progress: bool = True) -> SearchOutcome:
    """Evolution under constraints (see the module doc); every scored arch, ranked."""
    from tqdm.auto import tqdm

    constraints = constraints or Constraints()
    constraints.check_feasible(space)
    if population < 1 or parents < 1 or generations < 0:
        raise ValueError("population and parents must be >= 1 and generations >= 0")
    if not 0.0 <= crossover_prob <= 1.0:
        raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
    rng = as_rng(seed)
    sign = -1.0 if higher_is_better else 1.0
    scores: dict = {}
    bar = tqdm(total=population * (generations + 1), desc="evolution", unit="arch", disable=not progress)

    def score_all(archs):  # a generation at once: the evaluator shares layer prefixes across it
        scores.update(zip(archs, score_population(score_fn, archs)))
        bar.update(len(archs))

    def best(archs, n):
        return sorted(archs, key=lambda a: (sign * scores[a], a.ops))[:n]

    current = _unique_allowed(space, constraints, rng, set(), population)
    if not current:
        sample_allowed(space, constraints, rng)  # raises InfeasibleBudget with the reason
    score_all(current)
    history = [{"generation": 0, "best": scores[best(current, 1)[0]], "scored": len(current)}]
    for generation in range(1, generations + 1):
        pool = best(scores, parents)  # best found so far

        def child():
            if len(pool) > 1 and rng.random() < crossover_prob:
                a, b = rng.sample(pool, 2)
                kid = crossover(space, a, b, rng)
                return kid if kid not in (a, b) else space.neighbour(kid, mutation_k, rng)
            return space.neighbour(rng.choice(pool), mutation_k, rng)

        children = _unique_allowed(space, constraints, rng, set(scores), population, propose=child)
        if len(children) < population:  # parents' neighbourhood exhausted: explore at random
            children += _unique_allowed(space, constraints, rng, set(scores) | set(children),
                                        population - len(children))
        if not children:
            break  # every allowed arch has been scored
        score_all(children)
        current = best(current + children, population)
        history.append({"generation": generation, "best": scores[current[0]], "scored": len(children)})
    bar.close()
    evaluated = rank([make_candidate(space, constraints, a, s) for a, s in scores.items()], higher_is_better)
    info = {"population": population, "generations": generations, "parents": parents, "mutation_k": mutation_k,
            "crossover_prob": crossover_prob, "history": history, "num_evaluated": len(scores)}
    return SearchOutcome(evaluated, evaluated, info)


__all__ = ["random_search", "evolution_search", "crossover", "InfeasibleBudget"]
