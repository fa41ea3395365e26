"""Old import paths of modules that moved when the package was split into layers, kept working
for one release: `import bertnas.train.checkpoint` returns `bertnas.storage.checkpoint` (the
same module object) with a `DeprecationWarning` naming the new path. Nothing inside bertnas
imports an old path (tests/test_layers.py checks it)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> new module (removed in the release after 0.2)
MOVED_MODULES = {
    "bertnas.errors": "bertnas.core.errors",
    "bertnas.lazy": "bertnas.core.lazy",
    "bertnas.align": "bertnas.supernet.align",
    "bertnas.sampling": "bertnas.supernet.sampling",
    "bertnas.search.evaluator": "bertnas.supernet.scoring",
    "bertnas.train.stream": "bertnas.supernet.stream",
    "bertnas.train.checkpoint": "bertnas.storage.checkpoint",
    "bertnas.train.logs": "bertnas.storage.logs",
    "bertnas.search.results": "bertnas.storage.results",
    "bertnas.train.objectives": "bertnas.tasks.objectives",
    "bertnas.train.data": "bertnas.tasks.text_data",
    "bertnas.compress.student": "bertnas.models.student",
    "bertnas.choices": "bertnas.spaces.choices",
    "bertnas.train.cli": "bertnas.cli.pretrain",
    "bertnas.search.cli": "bertnas.cli.search",
    "bertnas.analysis.cli": "bertnas.cli.analyze",
    "bertnas.compress.cli": "bertnas.cli.compress",
    "bertnas.strategies.run": "bertnas.pipelines.strategy",
    "bertnas.demo": "bertnas.cli.demo",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there (the old path goes in the next "
                      "release)", DeprecationWarning, stacklevel=3)
        return importlib.import_module(self.new)

    def exec_module(self, module):  # the new module is already executed
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


def moved_attributes(module_name: str, table: dict[str, str]):
    """A module `__getattr__` for names that moved to another module ("module:name"), with a
    DeprecationWarning; unknown names raise AttributeError as usual."""

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        target, _, attr = table[name].partition(":")
        warnings.warn(f"{module_name}.{name} moved to {target}.{attr or name}; import it from there (the old "
                      "path goes in the next release)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), attr or name)

    return __getattr__
