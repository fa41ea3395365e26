"""bertnas: neural architecture search over hybrid BERT supernets on the Hugging Face stack."""

from .models import (
    DEFAULT_CANDIDATES,
    BertNasConfig,
    BertNasForMaskedLM,
    BertNasForPreTraining,
    BertNasForQuestionAnswering,
    BertNasForSequenceClassification,
    BertNasForTokenClassification,
    BertNasModel,
    BertNasPreTrainedModel,
)
from .spaces import Arch, BertSpace, SearchSpace

__version__ = "0.1.0"

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
