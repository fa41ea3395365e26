"""bertnas: neural architecture search over hybrid BERT supernets on the Hugging Face stack.

The names below are imported on first use (`bertnas.BertNasForMaskedLM`), so `import bertnas`
and `bertnas --help` stay fast; using any of them (or `import bertnas.models`) registers the
bertnas models with the transformers Auto classes.
"""

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
moved.install()  # old module paths (bertnas.train.checkpoint, ...) keep working, with a warning

__all__ = [
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
