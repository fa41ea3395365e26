"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) on the bertnas family.

The yardstick for "a Hugging Face model like any other": the same mixin runs on `BertModel` and its
heads as the control, with a tester of the same size, so whatever runs (or is skipped) there must
run (or be skipped) here too.

The tests ship only in the source distribution of transformers; `make setup` unpacks those of the
installed version into `.venv/transformers-tests/` (git-ignored). Without it this module skips.
The sdist lacks two helper modules the mixin imports (`tests/exporters/test_export.py`,
`tests/generation/test_utils.py`) and one data module (`tests/utils/test_configuration_utils.py`):
empty mixins stand in for the first two (no export or `generate` tests run, for BERT either; the
bertnas models cannot generate) and a small table of common config fields for the third.
"""

import importlib.util
import sys
import types
import unittest
import unittest.mock
from pathlib import Path

import pytest
import transformers

ROOT = Path(__file__).resolve().parents[1]
HF_TESTS = ROOT / ".venv" / "transformers-tests"
PACKAGE = "transformers_common_tests"


def _load_common_tests():
    """Import the sdist's tests folder as the package `transformers_common_tests` (`tests` is ours)."""
    folder = HF_TESTS / "tests"
    if not (folder / "test_modeling_common.py").is_file():
        pytest.skip(f"transformers' common tests are not unpacked in {HF_TESTS}; run `make setup` (it fetches "
                    f"the transformers sdist with pip download)", allow_module_level=True)
    version = (HF_TESTS / "VERSION").read_text().strip() if (HF_TESTS / "VERSION").is_file() else None
    if version != transformers.__version__:
        pytest.skip(f"{HF_TESTS} holds the tests of transformers {version}, but {transformers.__version__} is "
                    f"installed; rerun `rm -rf {HF_TESTS} && make -B setup`", allow_module_level=True)
    for needed in ("parameterized", "pytest_timeout"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"transformers' common tests need {needed!r}: pip install -e '.[dev]'", allow_module_level=True)
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)

        def stub(name, **attrs):
            module = types.ModuleType(f"{PACKAGE}.{name}")
            module.__dict__.update(attrs)
            sys.modules[module.__name__] = module

        for sub in ("exporters", "generation", "utils"):
            stub(sub, __path__=[])
        stub("exporters.test_export", ExportTesterMixin=type("ExportTesterMixin", (), {}))
        stub("generation.test_utils", GenerationTesterMixin=type("GenerationTesterMixin", (), {}))
        # Common PreTrainedConfig fields with non-default values: every config must keep them as given.
        stub("utils.test_configuration_utils", config_common_kwargs={
            "return_dict": False,
            "output_hidden_states": True,
            "dtype": "float16",
            "chunk_size_feed_forward": 5,
            "id2label": {0: "negative", 1: "positive"},
            "label2id": {"negative": 0, "positive": 1},
            "problem_type": "multi_label_classification",
        })
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling, configuration


_modeling, _configuration = _load_common_tests()
ModelTesterMixin = _modeling.ModelTesterMixin
ConfigTester = _configuration.ConfigTester

import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

from bertnas.models import BertNasConfig, BertNasForPreTraining  # noqa: E402
from bertnas.models.modeling_bertnas import AUTO_CLASSES  # noqa: E402

SIZES = dict(vocab_size=99, hidden_size=32, intermediate_size=37, hidden_act="gelu", hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1, max_position_embeddings=64, type_vocab_size=16, initializer_range=0.02)
# A hybrid chain of 2 layers (the mixin allows no more): attention first (the mixin reads the
# attention shape from the first map), then a convolution, whose `attentions` slot is None.
ARCH = ["mha4", "conv3"]


class TinyTester:
    """What `ModelTesterMixin` asks of a model tester, for one config maker."""

    batch_size = 3
    seq_length = 7
    is_training = True
    num_attention_heads = 4

    def __init__(self, parent, make_config, num_hidden_layers):
        self.parent = parent
        self.make_config = make_config
        self.num_hidden_layers = num_hidden_layers
        self.vocab_size = SIZES["vocab_size"]
        self.hidden_size = SIZES["hidden_size"]
        self.type_vocab_size = SIZES["type_vocab_size"]

    def get_config(self):
        return self.make_config()

    def prepare_config_and_inputs_for_common(self):
        shape = [self.batch_size, self.seq_length]
        inputs = {
            "input_ids": _modeling.ids_tensor(shape, self.vocab_size),
            "token_type_ids": _modeling.ids_tensor(shape, self.type_vocab_size),
            "attention_mask": _modeling.random_attention_mask(shape),
        }
        return self.get_config(), inputs


def bert_config():
    return BertConfig(num_hidden_layers=2, num_attention_heads=4, **SIZES)


def bertnas_config():
    return BertNasConfig(num_hidden_layers=len(ARCH), arch=ARCH, candidates=ARCH, **SIZES)


@pytest.mark.slow  # it tests transformers itself; `make test-fast` leaves it out
class BertControlTest(ModelTesterMixin, unittest.TestCase):
    """The control: the mixin on transformers' own BERT with a tester of the same size. Measured
    with transformers 5.24.0: 109 tests pass and 52 skip here and in `BertNasFixedArchTest`,
    the same tests both."""

    all_model_classes = (BertModel, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                         BertForQuestionAnswering)

    def setUp(self):
        self.model_tester = TinyTester(self, bert_config, num_hidden_layers=2)
        self.config_tester = ConfigTester(self, config_class=BertConfig, hidden_size=37)

    def test_config(self):
        self.config_tester.run_common_tests()


# The mixin picks labels (and skips the bare backbone in training tests) by looking class names up
# in transformers' auto mappings, where built-in models are listed; bertnas is listed there while
# its tests run, as a built-in family would be.
AUTO_MAPPING_NAMES = {
    "MODEL_MAPPING_NAMES": "BertNasModel",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "BertNasForMaskedLM",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "BertNasForPreTraining",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "BertNasForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "BertNasForTokenClassification",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": "BertNasForQuestionAnswering",
}


class BertNasFixedArchTest(ModelTesterMixin, unittest.TestCase):
    """The bertnas family as a fixed-arch model (the mixin calls forward without `arch`)."""

    all_model_classes = tuple(AUTO_CLASSES)  # every class of the family

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from transformers.models.auto import modeling_auto

        for mapping, class_name in AUTO_MAPPING_NAMES.items():
            patcher = unittest.mock.patch.dict(getattr(modeling_auto, mapping), {"bertnas": class_name})
            patcher.start()
            cls.addClassCleanup(patcher.stop)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels and model_class is BertNasForPreTraining:  # ELECTRA: 1 where a token was replaced
            shape = (self.model_tester.batch_size, self.model_tester.seq_length)
            inputs["labels"] = torch.zeros(shape, dtype=torch.long, device=_modeling.torch_device)
        return inputs

    def setUp(self):
        self.model_tester = TinyTester(self, bertnas_config, num_hidden_layers=len(ARCH))
        self.config_tester = ConfigTester(self, config_class=BertNasConfig, common_properties=["hidden_size",
                                          "num_hidden_layers"], hidden_size=36, num_hidden_layers=2,
                                          candidates=["mha4", "ffn"], arch=["mha4", "ffn"])

    def test_config(self):
        self.config_tester.run_common_tests()


def test_control_and_bertnas_run_the_same_tests():
    """Nothing the control runs is missing from the bertnas tests."""
    names = {cls: {n for n in dir(cls) if n.startswith("test_")} for cls in (BertControlTest, BertNasFixedArchTest)}
    assert names[BertControlTest] <= names[BertNasFixedArchTest]
    assert torch.__version__  # the mixin's own imports worked
