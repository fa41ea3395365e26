"""Module attributes imported on first use (PEP 562), so packages whose names pull in torch or
transformers import in milliseconds (`bertnas --help`)."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, table: dict[str, str]):
    """`(__getattr__, __dir__)` for `package`: `table` maps a name to the submodule (relative,
    e.g. ".models") that defines it; the value is imported and cached on first access."""
    module = importlib.import_module(package)

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(module)) | set(table))

    return __getattr__, __dir__
