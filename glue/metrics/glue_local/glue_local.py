"""GLUE metrics as a local `evaluate` module (works offline): `evaluate.load(<this folder>, "mrpc")`.

Same results as the Hub's `glue` metric: accuracy / F1 (binary, positive class 1) with sklearn,
Matthews correlation (CoLA) with sklearn, Pearson / Spearman (STS-B) with scipy.
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_DESCRIPTION = "GLUE metrics (accuracy, F1, Matthews correlation, Pearson/Spearman) for one GLUE task."
_CITATION = """@inproceedings{wang2019glue, title={GLUE: A Multi-Task Benchmark and Analysis Platform for
Natural Language Understanding}, author={Wang, Alex and others}, booktitle={ICLR}, year={2019}}"""
_KWARGS = """predictions: predicted labels (a score for stsb); references: gold labels (scores for stsb).
Returns {"accuracy"} (sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, hans),
{"accuracy", "f1"} (mrpc, qqp), {"matthews_correlation"} (cola), {"pearson", "spearmanr"} (stsb)."""

_METRICS = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "qqp": ("accuracy", "f1"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "hans": ("accuracy",),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class GlueLocal(evaluate.Metric):
    def _info(self):
        if self.config_name not in _METRICS:
            raise KeyError(f"Unknown GLUE task {self.config_name!r}: use one of {sorted(_METRICS)}")
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
            format="numpy",
        )

    def _compute(self, predictions, references):
        out = {}
        for name in _METRICS[self.config_name]:
            if name == "accuracy":
                out[name] = float(accuracy_score(references, predictions))
            elif name == "f1":
                out[name] = float(f1_score(references, predictions))
            elif name == "matthews_correlation":
                out[name] = float(matthews_corrcoef(references, predictions))
            elif name == "pearson":
                out[name] = float(pearsonr(predictions, references)[0])
            elif name == "spearmanr":
                out[name] = float(spearmanr(predictions, references)[0])
        return out
