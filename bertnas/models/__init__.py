"""Hugging Face models of the hybrid BERT space, registered with the Auto classes."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_bertnas import DEFAULT_CANDIDATES, BertNasConfig
from .modeling_bertnas import (
    BertNasLayer,
    BertNasForMaskedLM,
    BertNasForPreTraining,
    BertNasForQuestionAnswering,
    BertNasForSequenceClassification,
    BertNasForTokenClassification,
    BertNasModel,
    BertNasPreTrainedModel,
)
from .configuration_nb201 import NB201_EDGES, NB201_OPS, Nb201Config
from .modeling_nb201 import Nb201ForImageClassification
from .configuration_cnn import CnnNasConfig
from .configuration_darts import DARTS_OPS, DartsNasConfig
from .modeling_cnn import CnnNasForImageClassification
from .modeling_darts import DartsNasForImageClassification
from .ops_bertnas import OP_KINDS, OpKind, op_flops, op_kind, op_params, parse_op, register_op_kind, short_op_name

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
AutoConfig.register("nb201", Nb201Config, exist_ok=True)
AutoModelForImageClassification.register(Nb201Config, Nb201ForImageClassification, exist_ok=True)

AutoConfig.register("darts_nas", DartsNasConfig, exist_ok=True)
AutoModelForImageClassification.register(DartsNasConfig, DartsNasForImageClassification, exist_ok=True)
AutoConfig.register("cnn_nas", CnnNasConfig, exist_ok=True)
AutoModelForImageClassification.register(CnnNasConfig, CnnNasForImageClassification, exist_ok=True)

__all__ = [
    "BertNasConfig",
    "DEFAULT_CANDIDATES",
    "parse_op",
    "short_op_name",
    "OP_KINDS",
    "OpKind",
    "op_kind",
    "op_params",
    "op_flops",
    "register_op_kind",
    "BertNasLayer",
    "BertNasPreTrainedModel",
    "BertNasModel",
    "BertNasForMaskedLM",
    "BertNasForPreTraining",
    "BertNasForSequenceClassification",
    "BertNasForQuestionAnswering",
    "BertNasForTokenClassification",
    "DartsNasConfig",
    "DartsNasForImageClassification",
    "DARTS_OPS",
    "CnnNasConfig",
    "CnnNasForImageClassification",
    "Nb201Config",
    "Nb201ForImageClassification",
    "NB201_EDGES",
    "NB201_OPS",
]
