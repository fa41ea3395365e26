"""SQuAD v1.1 and v2.0 metrics as a local `evaluate` module (works offline).

`evaluate.load(<this folder>, "squad")`: exact_match / f1 (percent), the official v1.1 script's
answer normalisation (lower case, no punctuation, no articles a/an/the, single spaces) and the max
over the gold answers.
`evaluate.load(<this folder>, "squad_v2")`: the official v2.0 script: exact / f1 / total,
HasAns_* and NoAns_*, and best_exact / best_f1 with the no-answer probability threshold that
maximises them. Inputs use the Hub metrics' formats:
predictions [{"id", "prediction_text"(, "no_answer_probability" for v2)}],
references [{"id", "answers": {"text": [...], "answer_start": [...]}}].
"""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 / v2.0 exact match and F1 with the official answer normalisation."
_CITATION = """@inproceedings{rajpurkar2016squad, title={SQuAD: 100,000+ Questions for Machine
Comprehension of Text}, author={Rajpurkar, Pranav and others}, booktitle={EMNLP}, year={2016}}"""
_KWARGS = __doc__


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # v2: an empty answer scores 1 only against an empty gold
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_threshold(scores, preds, no_answer_probs, has_answer, num):
    """The official v2 search: answer only where the no-answer probability is below the threshold."""
    # start from "abstain on everything": the score of all the no-answer questions
    current = best = sum(1 for qid in scores if not has_answer[qid])
    best_threshold = 0.0
    for qid in sorted(no_answer_probs, key=lambda q: no_answer_probs[q]):
        if has_answer[qid]:
            current += scores[qid]
        elif preds.get(qid, ""):  # below the threshold a no-answer question gets this (wrong) answer
            current -= 1
        if current > best:
            best, best_threshold = current, no_answer_probs[qid]
    return 100.0 * best / num, best_threshold


class SquadLocal(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("squad", "squad_v2"):
            raise KeyError(f"Unknown SQuAD metric {self.config_name!r}: use 'squad' or 'squad_v2'")
        prediction = {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")}
        if self.config_name == "squad_v2":
            prediction["no_answer_probability"] = datasets.Value("float32")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": prediction,
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                  "answer_start": datasets.Value("int32")}),
                },
            }),
        )

    def _compute(self, predictions, references):
        golds = {}
        for ref in references:
            texts = ref["answers"]["text"] if isinstance(ref["answers"], dict) else [a["text"] for a in ref["answers"]]
            golds[ref["id"]] = list(texts)
        preds = {p["id"]: p["prediction_text"] for p in predictions}
        if self.config_name == "squad":
            return self._v1(preds, golds)
        no_answer = {p["id"]: float(p.get("no_answer_probability", 0.0)) for p in predictions}
        return self._v2(preds, golds, no_answer)

    @staticmethod
    def _v1(preds, golds):
        exact = f1 = 0.0
        for qid, answers in golds.items():
            pred = preds.get(qid, "")
            exact += max(exact_score(pred, a) for a in answers)
            f1 += max(f1_score(pred, a) for a in answers)
        return {"exact_match": 100.0 * exact / len(golds), "f1": 100.0 * f1 / len(golds)}

    @staticmethod
    def _v2(preds, golds, no_answer):
        exact, f1, has_answer = {}, {}, {}
        for qid, answers in golds.items():
            answers = [a for a in answers if normalize_answer(a)] or [""]
            has_answer[qid] = answers != [""]
            pred = preds.get(qid, "")
            exact[qid] = max(exact_score(pred, a) for a in answers)
            f1[qid] = max(f1_score(pred, a) for a in answers)
        num = len(golds)
        out = {"exact": 100.0 * sum(exact.values()) / num, "f1": 100.0 * sum(f1.values()) / num, "total": num}
        for name, keep in (("HasAns", True), ("NoAns", False)):
            ids = [q for q in golds if has_answer[q] == keep]
            if ids:
                out[f"{name}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
                out[f"{name}_f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
                out[f"{name}_total"] = len(ids)
        probs = {q: no_answer.get(q, 0.0) for q in golds}
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(exact, preds, probs, has_answer, num)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(f1, preds, probs, has_answer, num)
        return out
