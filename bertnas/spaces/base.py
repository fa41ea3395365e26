"""Architectures and search spaces shared by every space (BERT chain, CNN, DARTS cells).

An `Arch` maps each choice of a space to its decision. A `SearchSpace` owns the ordered
choices, validates archs, samples them, walks between them and counts their cost.

Two kinds of choice:
- a *layer choice* (a plain sequence of candidate names) picks one candidate; its value in an
  `Arch` is that name, a `str`;
- an *input choice* (`InputChoice(candidates, n_chosen)`) picks `n_chosen` distinct
  candidates, e.g. a DARTS cell node keeping 2 of its predecessors. The choice is a set: its
  value in an `Arch` is a tuple of the chosen names in candidate order, a JSON list.

```
space = SearchSpace({"node_2": InputChoice(["0", "1"], n_chosen=2), "op_0": ["conv3", "skip"]})
space.arch({"node_2": ["1", "0"], "op_0": "skip"})  # -> values ("0", "1") and "skip"
```
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Union

Value = Union[str, tuple[str, ...]]  # a layer choice's candidate, or an input choice's chosen names


def as_rng(rng: random.Random | int | None) -> random.Random:
    """A `random.Random` from a seed, an existing generator, or None (fresh entropy)."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(rng)


class InputChoice:
    """Declares an input choice of a space: `n_chosen` distinct names out of `candidates`."""

    __slots__ = ("candidates", "n_chosen")

    def __init__(self, candidates: Sequence[str], n_chosen: int):
        self.candidates = tuple(candidates)
        self.n_chosen = n_chosen

    def __repr__(self) -> str:
        return f"InputChoice({list(self.candidates)!r}, n_chosen={self.n_chosen})"


def _value(value: Any) -> Value:
    """A str stays; a list or tuple of str becomes a tuple (input choices); else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return tuple(value)
    return None


def _jsonable(value: Value) -> str | list[str]:
    return value if isinstance(value, str) else list(value)


class Arch(dict):
    """An immutable, hashable mapping choice name -> value, in the space's order.

    A value is a candidate name (layer choice) or a tuple of candidate names (input choice).
    `Arch.ops` is the tuple of values in order (for chain spaces: one op per layer).
    JSON form is a plain object `{"layer_0": "mha12", "node_2": ["0", "1"]}` (`json.dumps(arch)`
    writes it: an Arch is a read-only `dict`); spaces also accept a list of values in choice
    order, the form `results.json` uses (`to_list()`).
    """

    __slots__ = ("_hash",)

    def __init__(self, items: Mapping[str, Value] | Sequence[tuple[str, Value]]):
        pairs = tuple(items.items()) if isinstance(items, Mapping) else tuple(items)
        checked = []
        for pair in pairs:
            value = _value(pair[1]) if isinstance(pair, tuple) and len(pair) == 2 else None
            if value is None or not isinstance(pair[0], str):
                raise ValueError(
                    f"Arch items must be (choice, candidate) pairs of strings, or (choice, list of strings) "
                    f"for input choices, got {pair!r}"
                )
            checked.append((pair[0], value))
        super().__init__(checked)
        self._hash = hash(tuple(checked))

    def _read_only(self, *args, **kwargs):
        raise TypeError("An Arch is immutable; use arch.replace(choice=value) for a changed copy")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __reduce__(self):  # copy / pickle through the constructor (the dict mutators are closed)
        return (type(self), (list(self.items()),))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return tuple(self.items()) == tuple(other.items())
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __repr__(self) -> str:
        return f"Arch({self.to_list()!r})"

    @property
    def ops(self) -> tuple[Value, ...]:
        return tuple(self.values())

    def replace(self, **changes: Value | list[str]) -> Arch:
        unknown = set(changes) - set(self)
        if unknown:
            raise KeyError(f"Arch has no choice(s) {sorted(unknown)}; choices are {list(self)}")
        return Arch([(name, changes.get(name, value)) for name, value in self.items()])

    def to_list(self) -> list[str | list[str]]:
        """The values in choice order, JSON-ready (input choices as lists)."""
        return [_jsonable(value) for value in self.values()]

    def to_dict(self) -> dict[str, str | list[str]]:
        """choice -> value, JSON-ready (input choices as lists)."""
        return {name: _jsonable(value) for name, value in self.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Arch:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"Arch JSON must be an object choice -> candidate, got {type(data).__name__}")
        return cls(data)


class SearchSpace:
    """Ordered choices, each with a tuple of candidate names.

    `choices[name]` is the tuple of candidates of every choice, `n_chosen[name]` how many of
    them an arch picks (1 for layer choices) and `input_choices` the names of input choices.
    Subclasses add the cost model (`params`, `flops`) and whatever builds their modules.
    """

    # True for cell spaces whose edges map C channels to C channels (NB201, DARTS): PC-DARTS
    # can run 1/K of the channels through an edge's ops.
    channel_edges: bool = False

    def __init__(self, choices: Mapping[str, Sequence[str] | InputChoice]):
        if not choices:
            raise ValueError("A search space needs at least one choice")
        self.choices: dict[str, tuple[str, ...]] = {}
        self.n_chosen: dict[str, int] = {}
        inputs = []
        for name, spec in choices.items():
            if isinstance(spec, str):
                raise ValueError(f"Choice {name!r}: give a list of candidate names, not the string {spec!r}")
            candidates = tuple(spec.candidates if isinstance(spec, InputChoice) else spec)
            n = spec.n_chosen if isinstance(spec, InputChoice) else 1
            if not candidates:
                raise ValueError(f"Choice {name!r} has no candidates")
            if not all(isinstance(c, str) for c in candidates):
                raise ValueError(f"Choice {name!r}: candidates must be strings, got {list(candidates)}")
            if len(set(candidates)) != len(candidates):
                raise ValueError(f"Choice {name!r} lists a candidate twice: {list(candidates)}")
            if isinstance(spec, InputChoice):
                if not (isinstance(n, int) and 1 <= n <= len(candidates)):
                    raise ValueError(f"Input choice {name!r}: n_chosen={n!r} must be between 1 and {len(candidates)}")
                inputs.append(name)
            self.choices[name] = candidates
            self.n_chosen[name] = n
        self.input_choices: frozenset[str] = frozenset(inputs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.choices)} choices, {self.size()} archs)"

    # -- validation ---------------------------------------------------------------------
    def arch(self, value: Arch | Mapping[str, Any] | Sequence[Any] | str) -> Arch:
        """Validate and normalise an arch given as an Arch, a mapping, a list of values in
        choice order, or a JSON string of either. An input choice's value is a list of distinct
        candidate names in any order (stored in candidate order). Raises ValueError naming the
        bad field and the allowed values."""
        if isinstance(value, str):
            value = json.loads(value)
        names = list(self.choices)
        if isinstance(value, Mapping):
            missing = [n for n in names if n not in value]
            extra = [n for n in value if n not in self.choices]
            if missing or extra:
                raise ValueError(
                    f"Arch choices do not match the space: missing {missing}, unknown {extra}; "
                    f"the space's choices are {names}"
                )
            values = [value[n] for n in names]
        elif isinstance(value, Sequence):
            values = list(value)
            if len(values) != len(names):
                raise ValueError(
                    f"Arch has {len(values)} entries but the space has {len(names)} choices; "
                    f"give one candidate per choice ({names[0]} .. {names[-1]})"
                )
        else:
            raise ValueError(
                f"An arch must be a list of candidate names, a mapping or an Arch, got {type(value).__name__}"
            )
        return Arch([(name, self._check(name, v)) for name, v in zip(names, values)])

    def _check(self, name: str, value: Any) -> Value:
        allowed = self.choices[name]
        if name not in self.input_choices:
            if not isinstance(value, str):
                raise ValueError(f"Arch entry for {name} must be a string, got {type(value).__name__} {value!r}")
            if value not in allowed:
                raise ValueError(f"Unknown candidate {value!r} for {name}; allowed: {', '.join(allowed)}")
            return value
        n = self.n_chosen[name]
        picks = _value(value)
        if picks is None or isinstance(picks, str):
            raise ValueError(
                f"Arch entry for input choice {name} must be a list of {n} names out of {', '.join(allowed)}, "
                f"got {type(value).__name__} {value!r}"
            )
        for pick in picks:
            if pick not in allowed:
                raise ValueError(f"Unknown candidate {pick!r} for {name}; allowed: {', '.join(allowed)}")
        twice = sorted({p for p in picks if picks.count(p) > 1})
        if twice:
            raise ValueError(
                f"Input choice {name} picks {twice} twice; it picks {n} distinct names out of {', '.join(allowed)}"
            )
        if len(picks) != n:
            raise ValueError(
                f"Input choice {name} picks exactly {n} of {', '.join(allowed)}, got {len(picks)}: {list(picks)}"
            )
        return tuple(c for c in allowed if c in picks)

    def contains(self, value: Any) -> bool:
        try:
            self.arch(value)
        except (ValueError, TypeError, json.JSONDecodeError):
            return False
        return True

    # -- sampling -----------------------------------------------------------------------
    def _canonical(self, name: str, picks) -> tuple[str, ...]:
        return tuple(c for c in self.choices[name] if c in picks)

    def sample(self, rng: random.Random | int | None = None) -> Arch:
        """Every choice drawn uniformly and independently (SPOS); an input choice draws one of
        its C(n_candidates, n_chosen) subsets uniformly."""
        rng = as_rng(rng)
        values = []
        for name, cands in self.choices.items():
            if name in self.input_choices:
                values.append((name, self._canonical(name, rng.sample(cands, self.n_chosen[name]))))
            else:
                values.append((name, rng.choice(cands)))
        return Arch(values)

    def mutable_choices(self) -> list[str]:
        """The choices that have more than one possible value (the ones a walk can change)."""
        return [name for name, cands in self.choices.items() if len(cands) > self.n_chosen[name]]

    def neighbour(self, arch: Arch | Sequence[Any], k: int = 1, rng: random.Random | int | None = None) -> Arch:
        """`arch` with exactly `k` distinct choices changed, each to a different value drawn
        uniformly (MAGIC-T walk step): a layer choice to another candidate, an input choice by
        swapping one chosen name for one not chosen. Choices with one possible value never change."""
        rng = as_rng(rng)
        arch = self.arch(arch)
        mutable = self.mutable_choices()
        if not 0 <= k <= len(mutable):
            raise ValueError(
                f"k={k} layers cannot change: the space has {len(mutable)} choices with more than one possible value"
            )
        changes = {}
        for name in rng.sample(mutable, k):
            current = arch[name]
            if name in self.input_choices:
                dropped = rng.choice(current)
                added = rng.choice([c for c in self.choices[name] if c not in current])
                changes[name] = self._canonical(name, [c for c in current if c != dropped] + [added])
            else:
                changes[name] = rng.choice([c for c in self.choices[name] if c != current])
        return arch.replace(**changes)

    def crossover(self, a: Arch, b: Arch, rng: random.Random | int | None = None) -> Arch:
        """A child of `a` and `b`: each choice from one parent or the other with equal
        probability (evolution). Spaces whose choices are coupled override it."""
        rng = as_rng(rng)
        return self.arch([x if rng.random() < 0.5 else y for x, y in zip(a.ops, b.ops)])

    def restrict(self, fixed: Mapping[str, str]) -> SearchSpace:
        """This space with each choice of `fixed` held to its one candidate: the sub-space a
        few-shot child supernet trains (Zhao et al. 2021). A shallow copy, so the space's cost
        model and builders still apply; archs of the full space outside it fail `arch()`."""
        narrowed = dict(self.choices)
        for name, candidate in fixed.items():
            if name not in self.choices:
                raise ValueError(f"Unknown choice {name!r} to fix; the space's choices are {list(self.choices)}")
            if name in self.input_choices:
                raise ValueError(f"Choice {name!r} is an input choice; only layer / edge choices can be fixed")
            if candidate not in self.choices[name]:
                raise ValueError(f"Unknown candidate {candidate!r} for {name}; allowed: {', '.join(self.choices[name])}")
            narrowed[name] = (candidate,)
        sub = copy.copy(self)
        sub.choices = narrowed
        for cached in ("_classes",):  # per-space caches computed over the full space
            sub.__dict__.pop(cached, None)
        return sub

    # -- size ---------------------------------------------------------------------------
    def size(self) -> int:
        return math.prod(math.comb(len(c), self.n_chosen[name]) for name, c in self.choices.items())

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every arch once, in lexicographic order of candidate indices (small spaces only)."""
        if self.size() > limit:
            raise ValueError(f"The space has {self.size()} archs, more than limit={limit}; sample it instead")
        names = list(self.choices)
        options = [
            list(itertools.combinations(cands, self.n_chosen[name])) if name in self.input_choices else cands
            for name, cands in self.choices.items()
        ]
        for combo in itertools.product(*options):
            yield Arch(list(zip(names, combo)))

    # -- cost (space specific) ------------------------------------------------------------
    def params(self, arch) -> int:
        raise NotImplementedError

    def flops(self, arch, seq_len: int) -> int:
        raise NotImplementedError
