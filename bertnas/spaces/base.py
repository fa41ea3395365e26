"""Architectures and search spaces shared by every space (BERT chain, CNN, DARTS cells).

An `Arch` maps each choice of a space to one of its candidates. A `SearchSpace` owns the
ordered choices, validates archs, samples them, walks between them and counts their cost.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


def as_rng(rng: random.Random | int | None) -> random.Random:
    """A `random.Random` from a seed, an existing generator, or None (fresh entropy)."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(rng)


class Arch(Mapping):
    """An immutable, hashable mapping choice name -> candidate name, in the space's order.

    `Arch.ops` is the tuple of candidates in order (for chain spaces: one op per layer).
    JSON form is a plain object `{"layer_0": "mha12", ...}`; spaces also accept a list.
    """

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[str, str] | Sequence[tuple[str, str]]):
        pairs = tuple(items.items()) if isinstance(items, Mapping) else tuple(items)
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise ValueError(f"Arch items must be (choice, candidate) string pairs, got {pair!r}")
        self._items = pairs
        self._hash = hash(pairs)

    def __getitem__(self, key: str) -> str:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Arch({list(self.ops)!r})"

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(value for _, value in self._items)

    def replace(self, **changes: str) -> Arch:
        unknown = set(changes) - set(self)
        if unknown:
            raise KeyError(f"Arch has no choice(s) {sorted(unknown)}; choices are {list(self)}")
        return Arch([(name, changes.get(name, value)) for name, value in self._items])

    def to_json(self) -> str:
        return json.dumps(dict(self._items))

    @classmethod
    def from_json(cls, text: str) -> Arch:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"Arch JSON must be an object choice -> candidate, got {type(data).__name__}")
        return cls(data)


class SearchSpace:
    """Ordered choices, each with a tuple of candidate names.

    Subclasses add the cost model (`params`, `flops`) and whatever builds their modules.
    """

    def __init__(self, choices: Mapping[str, Sequence[str]]):
        if not choices:
            raise ValueError("A search space needs at least one choice")
        self.choices: dict[str, tuple[str, ...]] = {}
        for name, candidates in choices.items():
            candidates = tuple(candidates)
            if not candidates:
                raise ValueError(f"Choice {name!r} has no candidates")
            if len(set(candidates)) != len(candidates):
                raise ValueError(f"Choice {name!r} lists a candidate twice: {list(candidates)}")
            self.choices[name] = candidates

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.choices)} choices, {self.size()} archs)"

    # -- validation ---------------------------------------------------------------------
    def arch(self, value: Arch | Mapping[str, str] | Sequence[str] | str) -> Arch:
        """Validate and normalise an arch given as an Arch, a mapping, a list of candidates
        in choice order, or a JSON string of either. Raises ValueError naming the bad field."""
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
        for name, op in zip(names, values):
            if not isinstance(op, str):
                raise ValueError(f"Arch entry for {name} must be a string, got {type(op).__name__} {op!r}")
            if op not in self.choices[name]:
                raise ValueError(
                    f"Unknown candidate {op!r} for {name}; allowed: {', '.join(self.choices[name])}"
                )
        return Arch(list(zip(names, values)))

    def contains(self, value: Any) -> bool:
        try:
            self.arch(value)
        except (ValueError, TypeError, json.JSONDecodeError):
            return False
        return True

    # -- sampling -----------------------------------------------------------------------
    def sample(self, rng: random.Random | int | None = None) -> Arch:
        """Every choice drawn uniformly and independently (SPOS)."""
        rng = as_rng(rng)
        return Arch([(name, rng.choice(cands)) for name, cands in self.choices.items()])

    def neighbour(self, arch: Arch | Sequence[str], k: int = 1, rng: random.Random | int | None = None) -> Arch:
        """`arch` with exactly `k` distinct choices changed, each to a different candidate
        drawn uniformly (MAGIC-T walk step). Choices with a single candidate never change."""
        rng = as_rng(rng)
        arch = self.arch(arch)
        mutable = [name for name, cands in self.choices.items() if len(cands) > 1]
        if not 0 <= k <= len(mutable):
            raise ValueError(f"k={k} layers cannot change: the space has {len(mutable)} choices with >1 candidate")
        changes = {}
        for name in rng.sample(mutable, k):
            others = [c for c in self.choices[name] if c != arch[name]]
            changes[name] = rng.choice(others)
        return arch.replace(**changes)

    # -- size ---------------------------------------------------------------------------
    def size(self) -> int:
        return math.prod(len(c) for c in self.choices.values())

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every arch, in lexicographic order of candidate indices (small spaces only)."""
        if self.size() > limit:
            raise ValueError(f"The space has {self.size()} archs, more than limit={limit}; sample it instead")
        names = list(self.choices)
        for combo in itertools.product(*self.choices.values()):
            yield Arch(list(zip(names, combo)))

    # -- cost (space specific) ------------------------------------------------------------
    def params(self, arch) -> int:
        raise NotImplementedError

    def flops(self, arch, seq_len: int) -> int:
        raise NotImplementedError
