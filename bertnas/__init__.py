"""bertnas: neural architecture search over hybrid BERT supernets on the Hugging Face stack.

The names below are imported on first use (`bertnas.BertNasForMaskedLM`), so `import bertnas`
and `bertnas --help` stay fast; using any of them (or `import bertnas.models`) registers the
bertnas models with the transformers Auto classes.
"""

import importlib
import types

from bertnas.core import moved
from bertnas.core.lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "DEFAULT_CANDIDATES": ".models",
    "BertNasConfig": ".models",
    "BertNasForMaskedLM": ".models",
    "BertNasForPreTraining": ".models",
    "BertNasForQuestionAnswering": ".models",
    "BertNasForSequenceClassification": ".models",
    "BertNasForTokenClassification": ".models",
    "BertNasModel": ".models",
    "BertNasPreTrainedModel": ".models",
    "Arch": ".spaces",
    "BertSpace": ".spaces",
    "SearchSpace": ".spaces",
}


# The commands as functions (`bertnas/cli/api.py`): bertnas.pretrain(output_dir=..., max_steps=...), ...
_LAZY.update({name: ".cli.api" for name in ("pretrain", "finetune")})

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
moved.install()  # old module paths (bertnas.train.checkpoint, ...) keep working, with a warning


class _CallableModule(types.ModuleType):
    """`bertnas.search`, `bertnas.export`, `bertnas.compress` are modules (import them as ever) that
    are also the commands' functions: `bertnas.search(checkpoint=..., output_dir=...)`."""

    def __call__(self, *args, **kwargs):
        # by name, like the lazy table: the package root sits above the layers it exposes
        functions = importlib.import_module(f"{__name__}.cli.api").FUNCTIONS
        return functions[self.__name__.rsplit(".", 1)[1]](*args, **kwargs)


for _name in ("search", "export", "compress"):  # light modules: their contents load on first use
    importlib.import_module(f"{__name__}.{_name}").__class__ = _CallableModule

__all__ = [
    "pretrain",
    "search",
    "export",
    "compress",
    "finetune",
    "Arch",
    "SearchSpace",
    "BertSpace",
    "BertNasConfig",
    "DEFAULT_CANDIDATES",
    "BertNasPreTrainedModel",
    "BertNasModel",
    "BertNasForMaskedLM",
    "BertNasForPreTraining",
    "BertNasForSequenceClassification",
    "BertNasForQuestionAnswering",
    "BertNasForTokenClassification",
]
