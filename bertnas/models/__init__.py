"""Hugging Face models of the hybrid BERT space, registered with the Auto classes."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_bertnas import DEFAULT_CANDIDATES, BertNasConfig, parse_op
from .modeling_bertnas import (
    BertNasForMaskedLM,
    BertNasForPreTraining,
    BertNasForQuestionAnswering,
    BertNasForSequenceClassification,
    BertNasForTokenClassification,
    BertNasModel,
    BertNasPreTrainedModel,
)

AutoConfig.register("bertnas", BertNasConfig, exist_ok=True)
for _auto, _model in (
    (AutoModel, BertNasModel),
    (AutoModelForMaskedLM, BertNasForMaskedLM),
    (AutoModelForPreTraining, BertNasForPreTraining),
    (AutoModelForSequenceClassification, BertNasForSequenceClassification),
    (AutoModelForTokenClassification, BertNasForTokenClassification),
    (AutoModelForQuestionAnswering, BertNasForQuestionAnswering),
):
    _auto.register(BertNasConfig, _model, exist_ok=True)

__all__ = [
    "BertNasConfig",
    "DEFAULT_CANDIDATES",
    "parse_op",
    "BertNasPreTrainedModel",
    "BertNasModel",
    "BertNasForMaskedLM",
    "BertNasForPreTraining",
    "BertNasForSequenceClassification",
    "BertNasForQuestionAnswering",
    "BertNasForTokenClassification",
]
