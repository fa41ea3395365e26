"""Pre-training configuration: defaults < YAML file < explicit overrides (CLI or dict).

One flat namespace of training options plus a `model` mapping of `BertNasConfig` fields
(`vocab_size` comes from the tokenizer) and an optional `generator` mapping (ELECTRA).
`load_config` validates names and types and says which key is wrong: unknown keys (also inside
`model:` / `generator:`, checked against `BertNasConfig`'s parameters) are errors, and numbers
written as strings (`lr: 5e-4`, which PyYAML reads as a string) are read as numbers. Every error
is a `UserError`: one line naming the key and the fix.

The flat dataclass is the serialised form (a run's `config.json`, the YAML keys, the CLI flags);
code reads it through typed views of its groups: `cfg.run` (`RunOptions`: folder, steps,
checkpoints, logging), `cfg.optim` (`OptimOptions`: batch, optimizer, schedule, precision),
`cfg.alignment` (the aligner's `AlignOptions`, from the `align_*` / `base_*` keys),
`cfg.task_options` (`TaskOptions`: space, model, data and objective knobs the task reads) and
`cfg.policy` (`PolicyOptions`: sampler or strategy). `GROUPS` names each group's keys; every key
is in exactly one. The key `task` picks the task that trains the BERT chain; its older name
`objective` is still read, with a DeprecationWarning.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

import yaml

from bertnas.core.errors import UserError, UserFileError, check_model_source, one_line
from bertnas.strategies.registry import STRATEGIES
from bertnas.supernet.options import AlignOptions
from bertnas.supernet.registry import SAMPLERS
from bertnas.tasks.registry import SPACES, TASKS
from bertnas.train.tracking import REPORT_TO  # none, all, and accelerate's trackers

MIXED_PRECISION = ("no", "fp16", "bf16")  # None (unset): accelerate's own setting (launcher, env, `accelerate config`)
BASE_REPLACEMENT = ("none", "beat", "population")


# Defaults are the 2-layer toy (recipes/configs/toy.yaml), so a run without --config is small.
TOY_MODEL = {
    "num_hidden_layers": 2,
    "hidden_size": 48,
    "intermediate_size": 96,
    "ffn_wide_size": 144,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
TOY_GENERATOR = {"num_hidden_layers": 2, "hidden_size": 48, "intermediate_size": 96}


@dataclass
class PretrainConfig:
    # Each section is a group (`GROUPS`, below): run, task, optim, policy, alignment.
    # -- run ----------------------------------------------------------------------------
    output_dir: str = "runs/pretrain"
    seed: int = 42
    max_steps: int = 20
    save_steps: int = 10  # 0: only at the end
    keep_last: int = 2
    resume_from_checkpoint: str | None = None  # None | "latest" | a checkpoint folder
    overwrite: bool = False  # start over in a folder that holds a run (deletes only the run's files)
    report_to: str = "none"
    logging_steps: int = 10  # trackers and console lines (when progress is off) get one row per interval
    push_to_hub: bool = False  # upload the final supernet (model folder + card) to hub_model_id
    hub_model_id: str | None = None
    progress: bool = True
    verify_ranks: bool = False  # at the end, check every rank holds the same weights
    # -- task: model (BertNasConfig fields; vocab_size from the tokenizer) ----------------
    model: dict = field(default_factory=lambda: dict(TOY_MODEL))
    arch: list | None = None  # one fixed arch trained alone (constant sampler); None: the supernet
    space: str = "bert"  # bert (the chain of `model`, trained by `task`) or a registered space (SPACES in tasks/registry.py)
    space_options: dict = field(default_factory=dict)  # knobs of a non-BERT space (channels, cells, ...)
    init_from_bert: str | None = None  # a BERT folder / Hub id whose weights seed the supernet
    init_from_supernet: str | None = None  # a supernet run folder / checkpoint whose weights start this run (few-shot)
    # -- task: data (batch_size and gradient_accumulation_steps: optim) ------------------
    data: str | None = None  # None: the embedded default corpus; a file, folder or datasets name
    data_split: str = "train"  # the split of a datasets corpus
    text_column: str = "text"  # the text field of JSON rows / column of a datasets corpus
    streaming: bool = False  # read `data` as a stream, tokenised on the fly (position kept in checkpoints)
    tokenizer: str | None = None  # None: train a WordPiece tokenizer on the corpus
    tokenizer_vocab_size: int = 1000  # when training one
    seq_len: int = 32
    val_fraction: float = 0.05  # held-out rows (MAGIC-A base replacement scores subnets on them)
    val_data: str | None = None  # a held-out source of its own instead of a split of `data`
    data_seed: int = 0  # seed of the train / held-out split, independent of `seed`
    eval_batches: int = 4  # held-out batches per subnet score
    batch_size: int = 4  # per process, per micro-batch
    gradient_accumulation_steps: int = 1
    # -- task: which one and its objective's knobs ------------------------------------------
    task: str = "mlm"  # the task that trains the BERT chain (mlm, electra, distill); other spaces name their own
    mlm_probability: float = 0.15
    disc_weight: float = 50.0
    generator: dict = field(default_factory=lambda: dict(TOY_GENERATOR))  # ELECTRA generator (BertNasConfig fields)
    # -- policy: sampling (a strategy: below) ----------------------------------------------
    sampler: str = "walk"
    walk_k: int = 1
    # few-shot NAS: a child supernet (with init_from_supernet) holds some choices to one candidate
    fixed_choices: dict | None = None  # {choice: candidate} held for every step (the sampler draws the rest)
    # -- alignment (MAGIC-A) ----------------------------------------------------------------
    align: bool = True
    align_weight: float = 0.1  # well below the task loss: alignment to shared weights can collapse them
    align_block_size: int = 2  # chain layers per aligned block (aligning every layer over-regularises)
    align_normalize: bool = True  # each block's MSE / the base's feature variance (no shrink-to-zero minimum)
    align_max_ratio: float | None = 0.5  # cap: weighted alignment <= this x the task loss (None: no cap)
    # Alignment starts once the task loss has left its plateau (from step 0 it collapsed every
    # path to one function in a measured toy run): None = 10 % / 5 % of max_steps.
    align_start: int | None = None  # steps without alignment first
    align_ramp: int | None = None  # then the weight rises linearly over this many steps
    base_arch: list | None = None  # None: a random subnet
    base_replacement: str = "population"  # none | beat (a better sampled subnet) | population (top p +- r)
    base_every: int = 100  # steps between base-replacement checks
    base_population: int = 8  # subnets scored per check
    base_top_p: float = 0.3
    base_tolerance: float = 0.1
    base_margin: float = 0.0  # a challenger must beat the base's mean score by more than this
    base_z: float = 3.0  # ... and by a paired test over held-out batches at this z (one-sided)
    # -- optimisation -------------------------------------------------------------------
    lr: float = 5e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6
    warmup_steps: int = 2
    # The weights' optimizer and LR shape. adamw + linear: the default (warm-up, linear decay).
    # sgd + cosine: the NB201 / DARTS protocols' SGD with (Nesterov) momentum and a cosine decay
    # from `lr` to `lr_min` (DARTS: 0.025 -> 0.001, momentum 0.9; NB201: 0.1 -> 0, Nesterov).
    optimizer: str = "adamw"  # adamw | sgd
    lr_schedule: str = "linear"  # linear | cosine (both after `warmup_steps` of linear warm-up)
    lr_min: float = 0.0  # cosine's final LR
    sgd_momentum: float = 0.9
    sgd_nesterov: bool = False
    max_grad_norm: float = 1.0
    max_nonfinite_steps: int = 0  # steps with a non-finite loss or gradient skipped before the run stops (mixed precision)
    mixed_precision: str | None = None  # None: what `accelerate launch` / ACCELERATE_MIXED_PRECISION / `accelerate config` say
    deepspeed: str | None = None  # a DeepSpeed JSON config (ZeRO-1/2)
    grad_bucket_mb: float = 256.0  # flat all-reduce bucket cap (multi-process, no DeepSpeed)
    # -- policy: search strategy (bertnas/strategies/) ------------------------------------
    strategy: str | None = None  # darts, gdas, ... : the strategy drives each step's arch and its own update
    strategy_options: dict = field(default_factory=dict)  # the strategy's keyword options (arch_lr, ...)

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))

    # -- typed views of the groups (read-only; change the flat fields, e.g. dataclasses.replace) --
    def _view(self, cls):
        return cls(**{name: getattr(self, name) for name in cls.__dataclass_fields__})

    @property
    def run(self) -> RunOptions:
        return self._view(RunOptions)

    @property
    def optim(self) -> OptimOptions:
        return self._view(OptimOptions)

    @property
    def task_options(self) -> TaskOptions:
        return self._view(TaskOptions)

    @property
    def policy(self) -> PolicyOptions:
        return self._view(PolicyOptions)

    @property
    def alignment(self) -> AlignOptions:
        """The MAGIC-A aligner's options object (`supernet.align.Aligner.from_options`); the
        group's other keys, `align` (on / off) and `base_arch`, say whether and from where."""
        return AlignOptions(
            block_size=self.align_block_size, weight=self.align_weight, replacement=self.base_replacement,
            every=self.base_every, top_p=self.base_top_p, tolerance=self.base_tolerance,
            population=self.base_population, normalize=self.align_normalize, max_ratio=self.align_max_ratio,
            margin=self.base_margin, z=self.base_z,
            start=self.max_steps // 10 if self.align_start is None else self.align_start,
            ramp=self.max_steps // 20 if self.align_ramp is None else self.align_ramp,
        )

    def align_options(self) -> dict:
        """The aligner's keyword options (`cfg.alignment` as a dict)."""
        return self.alignment.to_dict()

    @property
    def objective(self) -> str:
        """The older name of `task`."""
        warnings.warn("PretrainConfig.objective is now PretrainConfig.task (the old name goes in the next release)",
                      DeprecationWarning, stacklevel=2)
        return self.task


def _accept_renamed_keywords(init):
    """`PretrainConfig(objective=...)`: the old keyword names still construct, with a warning."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if any(old in kwargs for old in RENAMED_KEYS):
            kwargs = _renamed(kwargs, "PretrainConfig(...)")
        init(self, *args, **kwargs)

    return __init__


PretrainConfig.__init__ = _accept_renamed_keywords(PretrainConfig.__init__)


# The groups of the flat keys: every key is in exactly one (tests/test_config_options.py).
GROUPS = {
    "run": ("output_dir", "seed", "max_steps", "save_steps", "keep_last", "resume_from_checkpoint", "overwrite",
            "report_to", "logging_steps", "push_to_hub", "hub_model_id", "progress", "verify_ranks"),
    "task": ("task", "model", "arch", "space", "space_options", "init_from_bert", "init_from_supernet", "data",
             "data_split", "text_column", "streaming", "tokenizer", "tokenizer_vocab_size", "seq_len", "val_fraction",
             "val_data", "data_seed", "eval_batches", "mlm_probability", "disc_weight", "generator"),
    "optim": ("batch_size", "gradient_accumulation_steps", "lr", "weight_decay", "adam_beta1", "adam_beta2",
              "adam_epsilon", "warmup_steps", "optimizer", "lr_schedule", "lr_min", "sgd_momentum", "sgd_nesterov",
              "max_grad_norm", "max_nonfinite_steps", "mixed_precision", "deepspeed", "grad_bucket_mb"),
    "policy": ("sampler", "walk_k", "fixed_choices", "strategy", "strategy_options"),
    "alignment": ("align", "align_weight", "align_block_size", "align_normalize", "align_max_ratio", "align_start",
                  "align_ramp", "base_arch", "base_replacement", "base_every", "base_population", "base_top_p",
                  "base_tolerance", "base_margin", "base_z"),
}


def _group_view(name: str, group: str, doc: str) -> type:
    """A frozen dataclass of one group's keys, typed and defaulted as in `PretrainConfig`."""
    by_name = {f.name: f for f in fields(PretrainConfig)}
    cls = make_dataclass(name, [(key, by_name[key].type) for key in GROUPS[group]], frozen=True)
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


RunOptions = _group_view("RunOptions", "run", "The run: folder, seed, length, checkpoints, logging, Hub upload.")
OptimOptions = _group_view("OptimOptions", "optim",
                           "The weights' optimisation: batch, optimizer, LR schedule, clipping, precision, DeepSpeed.")
TaskOptions = _group_view("TaskOptions", "task",
                          "What the task reads: which task, the space and model, data, objective knobs.")
PolicyOptions = _group_view("PolicyOptions", "policy", "The arch policy: a sampler and its knobs, or a strategy.")


FIELD_NAMES = tuple(f.name for f in fields(PretrainConfig))
# Names of registered parts (task, sampler, strategy, space) are checked against their
# registries (`check_names`); the lists are never written here.
_CHOICES = {
    "mixed_precision": MIXED_PRECISION,
    "report_to": REPORT_TO,
    "base_replacement": BASE_REPLACEMENT,
}


def _normalise_key(key: str) -> str:
    return key.replace("-", "_")


# Keys renamed for honesty: the old name is still read (YAML, dicts, old config.json files),
# with a DeprecationWarning, for one release.
RENAMED_KEYS = {"objective": "task"}


def _renamed(values: dict, where: str) -> dict:
    """`values` with the old key names replaced by the new ones (a None value: not given)."""
    values = dict(values)
    for old, new in RENAMED_KEYS.items():
        if old not in values:
            continue
        value = values.pop(old)
        if value is None:
            continue
        if values.get(new) is not None and values[new] != value:
            raise UserError(f"config keys {old!r} ({value!r}) and {new!r} ({values[new]!r}) disagree in {where}",
                            f"give only {new}: {values[new]} ({old} is its old name)")
        warnings.warn(f"config key {old!r} is now {new!r} (in {where}); the old name goes in the next release",
                      DeprecationWarning, stacklevel=4)
        values[new] = value
    return values


def _number(name: str, value: Any, integer: bool) -> Any:
    """`value` as an int / float; numeric strings accepted (PyYAML reads `5e-4` as a string)."""
    if isinstance(value, str):
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):
            raise UserError(f"config key {name!r} must be a finite number, got {value!r}",
                            f"write {name}: " + ("8" if integer else "5.0e-4"))
        if number is not None and (not integer or number.is_integer()):
            return int(number) if integer else number
    elif not isinstance(value, bool):
        if integer and isinstance(value, int):
            return value
        if integer and isinstance(value, float) and value.is_integer():
            return int(value)
        if not integer and isinstance(value, (int, float)):
            value = float(value)
            if not math.isfinite(value):  # nan / inf train to NaN weights without a word
                raise UserError(f"config key {name!r} must be a finite number, got {value}",
                                f"write {name}: 5.0e-4 (a finite number)")
            return value
    kind = "an integer" if integer else "a number"
    raise UserError(f"config key {name!r} must be {kind}, got {value!r}", f"write {name}: " + ("8" if integer else "5.0e-4"))


def model_fields() -> dict:
    """`BertNasConfig`'s parameters and their defaults, plus the transformers config fields it
    passes on (pad_token_id, ...): the keys a `model:` / `generator:` mapping may hold."""
    import inspect

    from bertnas.models.configuration_bertnas import BertNasConfig
    from transformers import PretrainedConfig

    known = {}
    for cls in (PretrainedConfig, BertNasConfig):
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                known[p.name] = p.default
    return known


def _coerce_model(section: str, value: Mapping) -> dict:
    """A `model:` / `generator:` mapping: unknown keys are errors (a typo would silently keep the
    default size), numeric strings become numbers where the default is a number."""
    import difflib

    known = model_fields()
    out = {}
    for key, item in dict(value).items():
        key = _normalise_key(str(key))
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {section}.{close[0]}?" if close else "see BertNasConfig for the fields"
            raise UserError(f"unknown config key {section}.{key}", hint)
        default = known[key]
        if isinstance(default, bool):
            if not isinstance(item, bool):
                raise UserError(f"config key {section}.{key} must be true or false, got {item!r}",
                                f"write {section}.{key}: true")
        elif isinstance(default, (int, float)) and item is not None:
            # a fractional layer count or a string size would fail deep inside the model build
            item = _number(f"{section}.{key}", item, isinstance(default, int))
        elif key in LIST_KEYS and item is not None:
            item = _op_list(f"{section}.{key}", item)
        out[key] = item
    return out


# Model fields that hold a list of op names: a string there would be read letter by letter.
LIST_KEYS = ("arch", "candidates")


def _op_list(name: str, value: Any) -> list:
    if not (isinstance(value, (list, tuple)) and value and all(isinstance(x, (str, list)) for x in value)):
        raise UserError(f"config key {name!r} must be a list of op names, got {value!r}",
                        f"write {name}: [mha12, ffn] (a YAML list), or --set {name}='[mha12, ffn]'")
    return list(value)


def _coerce(name: str, value: Any) -> Any:
    """Check a value against the field's default type; ints accepted for floats, numeric strings
    for numbers."""
    default = getattr(PretrainConfig(), name)
    if value is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"config key {name!r} must be true or false, got {value!r}", f"write {name}: true")
    elif isinstance(default, int):
        value = _number(name, value, integer=True)
    elif isinstance(default, float) or name in ("align_max_ratio", "grad_bucket_mb"):
        value = _number(name, value, integer=False)
    elif isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise UserError(f"config key {name!r} must be a mapping, got {value!r}",
                            f"write {name}: followed by indented key: value lines")
        value = _coerce_model(name, value) if name in ("model", "generator") else dict(value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise UserError(f"config key {name!r} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    if name in ("base_arch", "arch") and not (
            isinstance(value, list) and value and all(isinstance(x, (str, list)) for x in value)):
        raise UserError(f"config key {name!r} must be a list of op names (one per choice), got {value!r}",
                        f"write --{name.replace('_', '-')} mha12,ffn")
    return value


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"config file {path} does not exist", "give a YAML file such as recipes/configs/toy.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} is not valid YAML ({one_line(err)})", "fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of options, got {type(data).__name__}",
                        "write one `key: value` per line")
    return data


# Spaces where MAGIC-A is off unless asked for (`--align`): measured to lower the ranking's Kendall
# tau beyond its interval there. NB201 at the reference size, 20 epochs (docs/results.md): SPOS
# 0.157 [0.119, 0.194], SPOS + alignment -0.070 [-0.109, -0.027]. Its cell outputs are sums of
# up to four paths, so a cell of parameter-free ops grows the features geometrically along the
# 17 cells and the block MSE to a conv-heavy base reaches 1e13: the capped term then mostly
# asks the shared weights to shrink such students' features.
ALIGN_OFF_BY_DEFAULT = ("nb201",)


def load_config(config: Mapping | argparse.Namespace | PretrainConfig | str | Path | None = None,
                **overrides) -> PretrainConfig:
    """Build a `PretrainConfig`.

    `config` is a YAML path, a mapping, an argparse namespace or a PretrainConfig. A mapping /
    namespace may name a YAML file under `config`; its other non-None entries override the
    file. Keys may use dashes or underscores. `model` / `generator` mappings are merged
    key by key into the file's.
    """
    if isinstance(config, PretrainConfig):
        values = config.to_dict()
        base: dict = {}
    else:
        if isinstance(config, argparse.Namespace):
            values = {k: v for k, v in vars(config).items() if k not in ("command", "func")}
        elif isinstance(config, (str, Path)):
            values = {"config": str(config)}
        elif config is None:
            values = {}
        elif isinstance(config, Mapping):
            values = dict(config)
        else:
            raise TypeError(f"pretrain config must be a dict, a namespace or a YAML path, got {type(config).__name__}")
        values = _renamed({_normalise_key(k): v for k, v in values.items()}, "the given options")
        path = values.pop("config", None)
        base = _renamed({_normalise_key(k): v for k, v in read_yaml(path).items()}, str(path)) if path else {}
        base.pop("history", None)  # a run's config.json: its start / resume record, not an option
    values.update(_renamed({_normalise_key(k): v for k, v in overrides.items()}, "the keyword options"))

    merged: dict = {}
    for source, skip_none in ((base, False), (values, True)):
        for key, value in source.items():
            if key not in FIELD_NAMES:
                import difflib

                close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(FIELD_NAMES)}"
                raise UserError(f"unknown config key {key!r}", hint)
            if skip_none and value is None:
                continue
            if key in ("model", "generator") and isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **dict(value)}
            else:
                merged[key] = value
    if "align" not in merged and merged.get("space") in ALIGN_OFF_BY_DEFAULT:
        merged["align"] = False
    cfg = PretrainConfig(**{k: _coerce(k, v) for k, v in merged.items()})
    validate(cfg)
    return cfg


def check_names(cfg: PretrainConfig) -> None:
    """The config's registered names exist: one clear line listing the known ones if not."""
    for key, registry in (("task", TASKS), ("sampler", SAMPLERS), ("strategy", STRATEGIES), ("space", SPACES)):
        value = getattr(cfg, key)
        if value is not None and value not in registry:
            raise UserError(f"config key {key!r} must be one of {', '.join(registry.names())}, got {value!r}")


def validate(cfg: PretrainConfig) -> None:
    """Names, ranges, files and sources, all checked before any data is loaded or folder created."""
    check_names(cfg)
    positive = ("max_steps", "batch_size", "seq_len", "gradient_accumulation_steps", "keep_last", "walk_k",
                "align_block_size", "base_every", "base_population", "tokenizer_vocab_size")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise UserError(f"config key {name!r} must be >= 1, got {getattr(cfg, name)}",
                            f"pass --{name.replace('_', '-')} 1 or more")
    for name in ("save_steps", "warmup_steps", "eval_batches", "align_start", "align_ramp"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:  # align_*: None = default share of max_steps
            raise UserError(f"config key {name!r} must be >= 0, got {getattr(cfg, name)}",
                            f"pass --{name.replace('_', '-')} 0 or more")
    if not 0.0 < cfg.mlm_probability < 1.0:
        raise UserError(f"mlm_probability must be in (0, 1), got {cfg.mlm_probability}", "e.g. --mlm-probability 0.15")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise UserError(f"val_fraction must be in (0, 1), got {cfg.val_fraction}", "e.g. --set val_fraction=0.05")
    for name in FIELD_NAMES:  # a config built in Python skips _coerce: no nan / inf reaches the optimizer
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config key {name!r} must be a finite number, got {value}",
                            f"pass --{name.replace('_', '-')} with a finite value")
    if cfg.lr <= 0:
        raise UserError(f"lr must be > 0, got {cfg.lr}", "e.g. --lr 5e-4")
    if "vocab_size" in cfg.model:
        raise UserError("model.vocab_size comes from the tokenizer", "remove it from the config")
    if cfg.deepspeed is not None:
        read_deepspeed_config(cfg.deepspeed)
    if cfg.sampler == "constant" and cfg.arch is None and cfg.model.get("arch") is None:
        raise UserError("sampler 'constant' trains one arch and none is given", "pass --arch op,op,... (or model.arch)")
    if cfg.fixed_choices is not None:
        if not (isinstance(cfg.fixed_choices, dict) and cfg.fixed_choices
                and all(isinstance(k, str) and isinstance(v, str) for k, v in cfg.fixed_choices.items())):
            raise UserError(f"fixed_choices must map choice names to one candidate each, got {cfg.fixed_choices!r}",
                            "e.g. fixed_choices: {edge_1_0: nor_conv_3x3}")
        if cfg.arch is not None or cfg.strategy:
            raise UserError("fixed_choices restricts a sampled supernet; a fixed arch or a strategy run takes none",
                            "drop fixed_choices, or --arch / --strategy")
    layers = cfg.model.get("num_hidden_layers", 24)
    # model.num_hidden_layers counts chain layers (a BERT layer is two: attention, FFN); other
    # spaces' sizes are checked by their sampler when the space is built
    if (cfg.space == "bert" and cfg.sampler == "walk" and cfg.arch is None and cfg.init_from_bert is None
            and isinstance(layers, int) and cfg.walk_k > layers):
        raise UserError(f"--walk-k {cfg.walk_k} is more than the {layers} chain layers of the supernet",
                        f"use --walk-k between 1 and {layers}")
    positions = cfg.model.get("max_position_embeddings", 512)
    if cfg.init_from_bert is None and isinstance(positions, int) and cfg.seq_len > positions:
        raise UserError(f"--seq-len {cfg.seq_len} is longer than the model's {positions} positions "
                        "(model.max_position_embeddings)",
                        f"use --seq-len {positions} or less, or --set model.max_position_embeddings={cfg.seq_len}")


def read_deepspeed_config(path: str | Path) -> dict:
    """The DeepSpeed JSON of `--deepspeed`, read before anything is built: a missing file or bad
    JSON is one line naming the file and the place, not a JSONDecodeError from the launcher."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"DeepSpeed config {path} does not exist",
                            "give recipes/configs/deepspeed_zero2.json or another JSON file")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"DeepSpeed config {path} is not valid JSON ({one_line(err)})",
                        "fix the file (recipes/configs/deepspeed_zero2.json is an example)") from None
    if not isinstance(data, dict):
        raise UserError(f"DeepSpeed config {path} must hold a JSON object, got {type(data).__name__}",
                        "see recipes/configs/deepspeed_zero2.json")
    return data


def check_sources(cfg: PretrainConfig) -> None:
    """The paths and Hub ids a run will read exist / can be reached (a run checks them before it
    creates its folder; `load_config` alone does not, so a config can be inspected offline)."""
    for option, value in (("--tokenizer", cfg.tokenizer), ("--init-from-bert", cfg.init_from_bert)):
        if value is not None:
            check_model_source(value, option)
    if resolved_mixed_precision(cfg) == "fp16":
        import torch

        if not torch.cuda.is_available():
            where = ("--mixed-precision fp16" if cfg.mixed_precision else
                     "mixed precision fp16 (from accelerate: ACCELERATE_MIXED_PRECISION or `accelerate config`)")
            raise UserError(f"{where} needs a CUDA GPU and none is visible",
                            "use --mixed-precision bf16 or no on CPU")
    bert_config = Path(cfg.init_from_bert or "") / "config.json"
    if cfg.init_from_bert and bert_config.is_file():  # its positions bound --seq-len (read without transformers)
        try:
            positions = json.loads(bert_config.read_text()).get("max_position_embeddings")
        except ValueError:
            positions = None
        if isinstance(positions, int) and cfg.seq_len > positions:
            raise UserError(f"--seq-len {cfg.seq_len} is longer than the {positions} positions of the BERT at "
                            f"{cfg.init_from_bert}", f"use --seq-len {positions} or less")
    if cfg.init_from_supernet is not None and not Path(cfg.init_from_supernet).exists():
        raise UserFileError(f"--init-from-supernet {cfg.init_from_supernet} does not exist",
                            "pass the parent supernet's run folder (its latest checkpoint) or a checkpoint-<step> folder")
    # the data sources are checked by the run's task (`Task.check_sources`)
    for option, value in (("--resume-from-checkpoint", cfg.resume_from_checkpoint),):
        if value not in (None, "latest") and not Path(value).exists():
            raise UserFileError(f"{option} {value} does not exist",
                                "pass 'latest' (the run folder's newest checkpoint) or a checkpoint-<step> folder")


def resolved_mixed_precision(cfg: PretrainConfig) -> str:
    """The precision a run of `cfg` uses: the config's when set, else accelerate's own choice
    (`accelerate launch --mixed_precision` sets ACCELERATE_MIXED_PRECISION; `accelerate config`
    writes a default config file), else "no". Read without importing accelerate's state."""
    import os

    if cfg.mixed_precision is not None:
        return cfg.mixed_precision
    env = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if env:
        return env.lower()
    try:
        from accelerate.commands.config.config_args import default_config_file

        path = Path(default_config_file)
        if path.is_file():
            data = (yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml")
                    else json.loads(path.read_text())) or {}
            value = data.get("mixed_precision")
            if value:
                return str(value).lower()
    except Exception:  # noqa: BLE001 - an unreadable accelerate config falls back to accelerate's default
        pass
    return "no"


# -- what may change when a run is resumed ------------------------------------------------
# Changeable: read afresh from the config on every resume and applied for real (`lr` by
# rescaling the loaded scheduler; `max_steps` by rebuilding the schedule; the rest are read by
# the loop or the launcher each time). Every other option is fixed for the run: the weights,
# the optimizer's state, the sampler's stream, the data split and the aligner were built from it,
# so a changed value would be ignored or half-applied; a resume that changes one is refused.
CHANGEABLE_ON_RESUME = frozenset({
    "output_dir", "resume_from_checkpoint", "overwrite", "max_steps", "save_steps", "keep_last",
    "report_to", "progress", "verify_ranks", "lr", "max_grad_norm", "grad_bucket_mb", "mixed_precision",
    "max_nonfinite_steps",
})
FIXED_FOR_RUN = frozenset(FIELD_NAMES) - CHANGEABLE_ON_RESUME


# Fixed options that decide what the checkpoint's weights are: a change means another model.
MODEL_OPTIONS = ("space", "task", "model", "generator", "space_options", "arch", "init_from_bert")


def _differences(name: str, old, new) -> list[str]:
    """`name: checkpoint A vs this run B`, per key for mappings (model.hidden_size, ...)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [f"{name}.{key}: checkpoint {old.get(key)!r} vs this run {new.get(key)!r}"
                for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return [f"{name}: checkpoint {old!r} vs this run {new!r}"]


def resume_changes(stored: Mapping, cfg: PretrainConfig, checkpoint="the checkpoint") -> dict:
    """{option: (checkpoint's value, this run's value)} of the changeable options a resume changes.

    A changed fixed option is refused, every one named: those that define the model (space,
    task, model sizes, ...) as a CheckpointError ("written for another model / search
    space"), the others as a UserError. An option the checkpoint does not record (older
    checkpoints) is taken as unchanged."""
    from bertnas.storage.checkpoint import CheckpointError

    current = cfg.to_dict()
    stored = {RENAMED_KEYS.get(name, name): value for name, value in stored.items()}  # older checkpoints' key names
    model, fixed, changed = [], [], {}
    for name in FIELD_NAMES:
        if name not in stored:
            continue
        old, new = stored[name], current[name]
        if name == "mixed_precision":  # unset: what accelerate resolves it to
            old, new = old or "no", resolved_mixed_precision(cfg)
        if old == new or (isinstance(old, (list, tuple)) and list(old) == list(new or [])):
            continue
        if name in MODEL_OPTIONS:
            model.extend(_differences(name, old, new))
        elif name in FIXED_FOR_RUN:
            fixed.append(f"{name} ({old!r} in the checkpoint, {new!r} now)")
        elif name not in ("output_dir", "resume_from_checkpoint", "overwrite"):
            changed[name] = (old, new)
    if model:
        raise CheckpointError(f"checkpoint {checkpoint} was written for another model / search space "
                              f"({'; '.join(model)}); resume with the config it was trained with, or start a new "
                              "run in a fresh --output-dir")
    if fixed:
        raise UserError(f"resuming changes {', '.join(fixed)}, which {'is' if len(fixed) == 1 else 'are'} fixed for "
                        "a run (the weights, optimizer, sampler and data were built from it)",
                        "resume with the run's own values (its config.json), or start a new run in another "
                        "--output-dir")
    return changed


def config_to_json(cfg: PretrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)


__all__ = ["PretrainConfig", "RunOptions", "OptimOptions", "TaskOptions", "PolicyOptions", "AlignOptions", "GROUPS",
           "RENAMED_KEYS", "load_config", "resume_changes", "resolved_mixed_precision", "read_deepspeed_config",
           "CHANGEABLE_ON_RESUME", "FIXED_FOR_RUN", "check_names", "check_sources", "read_yaml", "validate", "config_to_json", "FIELD_NAMES",
           "MIXED_PRECISION", "REPORT_TO"]
