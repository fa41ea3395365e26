"""One registry class for every named, pluggable part: tasks, spaces, samplers, strategies,
search methods and CLI commands.

    STRATEGIES = Registry("strategy", lazy={"darts": "bertnas.strategies.darts:Darts"})

    @STRATEGIES.register("my-strategy")        # or STRATEGIES.register("name", obj)
    class MyStrategy(Strategy): ...

    STRATEGIES.get("darts")    # imports bertnas.strategies.darts on first use
    STRATEGIES.names()         # listing names (CLI choices, --help) imports nothing

A name lives in exactly one registry entry. Unknown names raise `UnknownName` (a ValueError)
listing the known ones. Registering a class sets its `name` attribute when it has one. The op
kinds of the BERT supernet keep their own table (`models/ops_bertnas.OP_KINDS`): model files are
copied next to exported weights and must run without bertnas installed.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any


class UnknownName(ValueError):
    """A name that no registry entry has."""


def resolve(path: str) -> Any:
    """The object a "module:attr" path names (the module is imported)."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"a lazy registry entry is written 'module:attr', got {path!r}")
    return getattr(importlib.import_module(module), attr)


class _Lazy:
    def __init__(self, path: str):
        self.path = path


class Registry:
    """`lazy`: built-in entries given as "module:attr", imported when first asked for;
    `entries`: objects registered as they are."""

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, *, lazy: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = {name: _Lazy(path) for name, path in (lazy or {}).items()}
        self._entries.update(entries or {})

    def register(self, name: str, obj: Any = None, *, replace: bool = False) -> Any:
        """Register `obj` under `name`; without `obj`, a decorator. A name already taken by
        another object is an error (unless `replace`); a lazy built-in entry is resolved by it."""

        def add(value):
            current = self._entries.get(name)
            if current is not None and not replace and not isinstance(current, _Lazy) and current != value:
                raise ValueError(f"a {self.kind} named {name!r} is already registered: "
                                 f"{getattr(current, '__qualname__', current)!r}")
            if isinstance(value, type) and hasattr(value, "name"):
                value.name = name
            self._entries[name] = value
            return value

        return add if obj is None else add(obj)

    def get(self, name: str) -> Any:
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownName(f"Unknown {self.kind} {name!r}{hint}; known: {', '.join(self.names())}")
        entry = self._entries[name]
        if isinstance(entry, _Lazy):  # importing the module may register the real object itself
            loaded = resolve(entry.path)
            current = self._entries[name]
            entry = current if not isinstance(current, _Lazy) else loaded
            if isinstance(entry, type) and hasattr(entry, "name"):
                entry.name = name
            self._entries[name] = entry
        return entry

    def build(self, name: str, *args, **kwargs) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, object) pairs, importing lazy entries."""
        return ((name, self.get(name)) for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

    def name_of(self, obj: Any) -> str | None:
        """The name `obj` is registered under (a lazy entry matches its "module:attr" path
        without importing anything), else None. Lets a built-in class know its own name."""
        path = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
        for name, entry in self._entries.items():
            if entry is obj or (isinstance(entry, _Lazy) and entry.path == path):
                return name
        return None

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a temporary plug-in)."""
        self._entries.pop(name, None)


__all__ = ["Registry", "UnknownName", "resolve"]
