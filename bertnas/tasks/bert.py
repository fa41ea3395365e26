"""The BERT-chain tasks: masked-LM (`task: mlm`) and ELECTRA (`task: electra`).

Data: a text corpus packed into rows of `seq_len` tokens (`bertnas/tasks/text_data.py`), split into
training and held-out rows by `data_seed` (or held out from a separate `val_data` file).
Model: a `BertNasForMaskedLM` / `BertNasForPreTraining` supernet (or a fixed-arch model for
stand-alone training), optionally started from a BERT checkpoint. Score: the held-out MLM /
discriminator loss, on rows masked (corrupted) once with a generator seeded `data_seed + 12345`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bertnas import models
from bertnas.core.errors import UserError, one_line
from bertnas.models import BertNasConfig, BertNasForMaskedLM, BertNasForPreTraining, short_op_name
from bertnas.spaces import BertSpace
from bertnas.storage import checkpoint as ckpt_lib
from bertnas.storage.checkpoint import GENERATOR_DIR, MODEL_DIR
from bertnas.supernet.align import Aligner
from bertnas.supernet.scoring import electra_head, electra_loss, mlm_head, mlm_loss
from bertnas.tasks import text_data as data_lib
from bertnas.tasks.base import Task
from bertnas.tasks.objectives import ElectraObjective, MLMObjective, mask_tokens
from bertnas.tasks.text_data import check_corpus

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
MASK_SEED_OFFSET = 12345
_DATA_CACHE: dict = {}


def absolute_if_local(source: str | None) -> str | None:
    """A local corpus path as an absolute path, so a search run from another folder finds it."""
    if source is not None and Path(source).expanduser().exists():
        return str(Path(source).expanduser().resolve())
    return source


class StreamSource:
    """The training part of a streamed corpus: its texts from row `skip` on (the held-out rows
    come first). `open(start)` iterates them from training text `start`."""

    def __init__(self, corpus, text_column: str, skip: int, source: str):
        self.corpus, self.text_column, self.skip, self.source = corpus, text_column, skip, source

    def open(self, start: int = 0):
        return data_lib.iter_texts(self.corpus, self.text_column, start=self.skip + start, source=self.source)


def load_stream_data(options: dict, tokenizer_source: str | None, vocab_size: int = 1000):
    """(tokenizer, StreamSource of the training texts, held-out rows) of a streamed corpus
    (`options["streaming"]`). Nothing is tokenised ahead but the held-out rows: the first
    `val_texts` texts of the stream (recorded by the run; else the fewest first texts that pack
    into `val_rows` rows), or `val_data`. Without a tokenizer a WordPiece is trained on the first
    `STREAM_TOKENIZER_TEXTS` texts."""
    import datasets

    split, column = options.get("split", "train"), options.get("text_column", "text")
    source = options.get("source")
    what = source or "the embedded corpus"
    corpus = data_lib.stream_corpus(source, split=split, text_column=column)
    if tokenizer_source is None:
        sample = data_lib.first_texts(corpus, data_lib.STREAM_TOKENIZER_TEXTS, column, what)
        if not sample:
            raise UserError(f"the corpus {what} holds no non-empty text", "give a file with text in it, one text per line")
        tokenizer = data_lib.build_tokenizer(None, datasets.Dataset.from_dict({"text": sample}), vocab_size=vocab_size)
    else:
        tokenizer = data_lib.build_tokenizer(tokenizer_source)
    seq_len, rows = options["seq_len"], int(options.get("val_rows") or 0)
    if options.get("val_data"):  # a held-out source of its own: the whole stream trains
        val = data_lib.pack_lm_rows(data_lib.load_texts(options["val_data"], split=split, text_column=column),
                                    tokenizer, seq_len, "held-out (--val-data)")
        skip = 0
    elif options.get("val_texts") is not None:  # a recorded run: the same first texts
        skip = int(options["val_texts"])
        texts = data_lib.first_texts(corpus, skip, column, what)
        val = data_lib.pack_lm_rows(datasets.Dataset.from_dict({"text": texts}), tokenizer, seq_len)
        val = val.select(range(min(rows, len(val)))) if rows else val
    else:
        val, skip = data_lib.stream_heldout(corpus, tokenizer, seq_len, max(rows, 1), column, what)
    return tokenizer, StreamSource(corpus, column, skip, what), val.with_format("torch")


def load_lm_data(options: dict, tokenizer_source: str | None, vocab_size: int = 1000):
    """(tokenizer, training rows, held-out rows) for data options {source, val_data, seq_len,
    val_fraction, split_seed}. Kept for the life of the process, so repeated runs on the same
    data (a demo, tests) tokenise and pack it once. A streamed corpus (`streaming`): training
    texts as a `StreamSource` instead of rows (`load_stream_data`)."""
    if options.get("streaming"):
        return load_stream_data(options, tokenizer_source, vocab_size)
    split, column = options.get("split", "train"), options.get("text_column", "text")
    key = (options.get("source"), options.get("val_data"), tokenizer_source, vocab_size, options["seq_len"],
           options["val_fraction"], options["split_seed"], split, column)
    if key not in _DATA_CACHE:
        texts = data_lib.load_texts(options.get("source"), split=split, text_column=column)
        tokenizer = data_lib.build_tokenizer(tokenizer_source, texts, vocab_size=vocab_size)
        # packed rows cached on disk across runs, keyed by the corpus, the tokenizer and the options
        train, val = data_lib.build_lm_splits(texts, tokenizer, options["seq_len"],
                                              val_fraction=options["val_fraction"], seed=options["split_seed"],
                                              cache_dir=data_lib.cache_dir() / "lm-splits")
        if options.get("val_data"):  # a held-out file of its own; the corpus's held-out part is left unused
            val = data_lib.pack_lm_rows(data_lib.load_texts(options["val_data"], split=split, text_column=column),
                                        tokenizer, options["seq_len"],
                                        "held-out (--val-data)").with_format("torch")
        _DATA_CACHE.clear()  # one corpus at a time: memory stays bounded
        _DATA_CACHE[key] = (tokenizer, train, val)
    return _DATA_CACHE[key]


def _rows(dataset, start: int, stop: int) -> dict:
    rows = dataset[start:stop]
    batch = {}
    for key in INPUT_KEYS:
        if key in rows:
            value = rows[key]
            batch[key] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return batch


def mlm_heldout(rows, tokenizer, batch_size: int, num_batches: int, seed: int,
                mlm_probability: float = 0.15) -> list[dict]:
    """The first `num_batches * batch_size` rows of `rows` (packed LM rows with input_ids),
    masked once with a generator seeded `seed`: the same tokens are masked for every arch."""
    if batch_size < 1 or num_batches < 1:
        raise ValueError(f"batch_size and eval batches must be >= 1, got {batch_size} and {num_batches}")
    generator = torch.Generator().manual_seed(seed)
    n = min(len(rows), batch_size * num_batches)
    batches = []
    for start in range(0, n, batch_size):
        batch = _rows(rows, start, min(start + batch_size, n))
        masked, labels = mask_tokens(batch["input_ids"], tokenizer, generator, mlm_probability)
        batches.append({**batch, "input_ids": masked, "labels": labels})
    return batches


@torch.no_grad()
def electra_heldout(objective, rows, batch_size: int, num_batches: int, seed: int) -> list[dict]:
    """Held-out rows corrupted once by the ELECTRA generator of `objective` (seeded, eval mode),
    with `labels` = 1 where a token was replaced: every arch is scored on the same corruption.

    Every random draw (which tokens are masked, what replaces them, the generator's samples) comes
    from one CPU generator, as for MLM's held-out masking: a device generator draws other numbers
    on a GPU, which would make held-out scores depend on the device. Only the generator's forward
    runs on its device."""
    if batch_size < 1 or num_batches < 1:
        raise ValueError(f"batch_size and eval batches must be >= 1, got {batch_size} and {num_batches}")
    was_training = objective.generator.training
    objective.generator.eval()
    device = next(objective.generator.parameters()).device
    g = torch.Generator().manual_seed(seed)
    n = min(len(rows), batch_size * num_batches)
    batches = []
    try:
        for start in range(0, n, batch_size):
            batch = _rows(rows, start, min(start + batch_size, n))
            original = batch["input_ids"]
            masked, labels = mask_tokens(original, objective.tokenizer, g, objective.mlm_probability)
            inputs = {k: v.to(device) for k, v in batch.items() if k in INPUT_KEYS}
            inputs["input_ids"] = masked.to(device)
            chosen = labels != -100
            logits = objective.generator(**inputs).logits.float().cpu()
            probs = F.softmax(logits[chosen], dim=-1)
            sampled = torch.multinomial(probs, 1, generator=g).squeeze(-1) if probs.numel() else original[chosen]
            corrupted = original.clone()
            corrupted[chosen] = sampled
            replaced = (corrupted != original).long()  # a sample equal to the original counts as original
            batches.append({**{k: v.to(device) for k, v in batch.items()}, "input_ids": corrupted.to(device),
                            "labels": replaced.to(device)})
    finally:
        objective.generator.train(was_training)
    return batches


def _heads(hidden: int) -> int:
    """Heads for the generator's attention: 64-wide heads when they fit, else the most of 12/8/6/4/2/1."""
    if hidden >= 64 and hidden % 64 == 0:
        return hidden // 64
    return next(h for h in (12, 8, 6, 4, 2, 1) if hidden % h == 0)


def load_tokenizer(ckpt: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ckpt / MODEL_DIR)
    except (OSError, ValueError) as err:
        raise ckpt_lib.CheckpointError(f"{ckpt / MODEL_DIR} has no usable tokenizer ({one_line(err)[:120]}); pre-training "
                              "saves it next to the model: copy the run's tokenizer files (tokenizer.json, "
                              "tokenizer_config.json) there, or use a checkpoint written by bertnas pretrain") from None


def check_vocab(tokenizer, model, folder) -> None:
    """The tokenizer belongs to the model: a tokenizer with more tokens than the embeddings gives
    out-of-range ids, one with far fewer (a stand-in built from special tokens alone) scores
    every text as a few [UNK]s, and either way a score would be reported as if nothing was wrong."""
    size, vocab = len(tokenizer), int(model.config.vocab_size)
    # Some BERTs pad their embeddings a little past the tokenizer (to a multiple of 8 or 64).
    if size > vocab or size < 0.99 * vocab:
        raise ckpt_lib.CheckpointError(f"the tokenizer in {folder} has {size} tokens but the model's embeddings hold {vocab}: "
                              "they do not belong together; put the tokenizer the model was trained with next to it")


class BertTask(Task):
    """Shared by the MLM and ELECTRA tasks: tokenizer, packed LM rows, a BertNas supernet."""

    model_class_name = "BertNasForMaskedLM"

    def __init__(self):
        super().__init__()
        self.val_data = None
        self.data_options: dict = {}
        self.run_options: dict = {}  # batch_size, mlm_probability, eval_batches of the run

    @property
    def tokenizer(self):
        """The task's processing class, a tokenizer."""
        return self.processing_class

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self.processing_class = value

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def check_sources(cls, cfg) -> None:
        check_corpus(cfg.data, "--data")
        check_corpus(cfg.val_data, "--val-data")

    def setup(self, cfg, resume_from: Path | None = None) -> None:
        self.setup_data(cfg, resume_from)
        self._build_models(cfg)
        self._finish_setup()

    def setup_data(self, cfg, resume_from: Path | None = None) -> None:
        """Tokenizer and packed training / held-out rows of `cfg` (no model)."""
        self.data_options = {"source": absolute_if_local(cfg.data), "val_data": absolute_if_local(cfg.val_data),
                             "seq_len": cfg.seq_len, "val_fraction": cfg.val_fraction, "split_seed": cfg.data_seed,
                             "tokenizer": cfg.tokenizer}
        for key, value, default in (("split", cfg.data_split, "train"), ("text_column", cfg.text_column, "text")):
            if value != default:  # only when set: checkpoints of earlier runs keep their data signature
                self.data_options[key] = value
        if getattr(cfg, "streaming", False):  # held out: the first texts packing into one score's rows
            self.data_options.update(streaming=True, val_rows=cfg.eval_batches * cfg.batch_size)
        self.run_options = {"batch_size": cfg.batch_size, "mlm_probability": cfg.mlm_probability,
                            "eval_batches": cfg.eval_batches}
        # A resumed run reads the tokenizer its checkpoint saved: a WordPiece trained again on the
        # same text is not guaranteed to give the same vocabulary (tokenizers trains in parallel).
        source = cfg.tokenizer or cfg.init_from_bert
        if source is None and resume_from is not None:
            source = str(resume_from / MODEL_DIR)
        self.tokenizer, self.train_data, self.val_data = load_lm_data(self.data_options, source,
                                                                      cfg.tokenizer_vocab_size)
        if isinstance(self.train_data, StreamSource):
            self.data_options["val_texts"] = self.train_data.skip  # search rebuilds the held-out set from them

    def batch_stream(self, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0, **loader):
        """A streamed corpus: micro-batches packed on the fly, resumable to the token
        (`text_data.PackedTextStream`); else the map-style stream of the packed rows."""
        if not isinstance(self.train_data, StreamSource):
            return super().batch_stream(batch_size, world_size, rank, seed, **loader)
        return data_lib.PackedTextStream(self.train_data.open, self.tokenizer, self.data_options["seq_len"],
                                         batch_size, world_size, rank, seed, skip=self.train_data.skip,
                                         pin_memory=loader.get("pin_memory", False))

    def _finish_setup(self) -> None:
        self.space = BertSpace(self.model.config)  # a fixed-arch model's space is its one arch
        arch = self.model.config.arch
        self.fixed_arch = self.space.arch(arch) if arch is not None else None

    def _supernet_config(self, cfg):
        tok = self.tokenizer
        model_kwargs = dict(cfg.model)
        if cfg.arch is not None:
            model_kwargs["arch"] = list(cfg.arch)
        return BertNasConfig(**{**model_kwargs, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id})

    def _build_models(self, cfg) -> None:
        raise NotImplementedError

    def signature(self) -> dict:
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "candidates", "intermediate_size", "ffn_wide_size",
                "max_position_embeddings", "type_vocab_size")
        config = self.model.config
        sig = {k: getattr(config, k) for k in keys}
        sig["candidates"] = list(sig["candidates"])
        sig["objective"] = self.name
        if config.arch is not None:
            sig["arch"] = list(config.arch)
        return sig

    def data_state(self) -> dict:
        # "seed" is the split seed under its pre-0.2 name, read by older bertnas versions.
        return {**self.data_options, "seed": self.data_options["split_seed"]}

    @classmethod
    def from_checkpoint(cls, ckpt: Path, state: dict, device="cpu") -> BertTask:
        import json


        folder = ckpt / MODEL_DIR
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder} has no config.json: the checkpoint's model is missing")
        saved = (json.loads(config_path.read_text()).get("architectures") or [cls.model_class_name])[0]
        if saved != cls.model_class_name:  # the saved head decides (checkpoints without a "task" entry)
            other = {c.model_class_name: c for c in (MLMTask, ElectraTask)}.get(saved)
            if other is None:
                raise ValueError(f"{config_path} names the model class {saved!r}, which is not a bertnas model")
            return other.from_checkpoint(ckpt, state, device)
        task = cls()
        model_class = getattr(models, cls.model_class_name)
        task.model = model_class.from_pretrained(folder).to(device).eval()
        task.modules = {MODEL_DIR: task.model}
        task.tokenizer = load_tokenizer(ckpt)
        check_vocab(task.tokenizer, task.model, folder)
        data = dict(state.get("data") or {})
        data.setdefault("split_seed", int(data.get("seed", 0)))
        task.data_options = data
        run = state.get("config") or {}
        task.run_options = {"batch_size": run.get("batch_size"), "mlm_probability": run.get("mlm_probability"),
                            "eval_batches": run.get("eval_batches")}
        task.ckpt = ckpt
        task._finish_setup()
        return task

    # -- training ---------------------------------------------------------------------------
    def collate(self, dataset, indices) -> dict:
        rows = dataset[list(indices)]
        batch = {}
        for key in INPUT_KEYS:
            if key in rows:
                value = rows[key]
                batch[key] = value if isinstance(value, torch.Tensor) else torch.stack([torch.as_tensor(v) for v in value])
        return batch

    def compute(self, batch, arch, generator):
        if getattr(arch, "discrete", None) is not None:  # a MixedArch (search strategies): the mixed ops
            return self.objective.compute(batch, None, generator, arch_weights=dict(arch))
        return self.objective.compute(batch, arch, generator)

    def count_items(self, batch: dict) -> int:
        mask = batch.get("attention_mask")
        return int(mask.sum()) if mask is not None else batch["input_ids"].numel()

    def short_name(self, op) -> str:
        return short_op_name(op)

    # -- scoring ----------------------------------------------------------------------------
    def heldout_rows(self, data: str | None = None, seq_len: int | None = None):
        """(held-out rows, their options): the run's, or rebuilt from another source / seq_len."""
        options = dict(self.data_options)
        if data is not None:
            options["source"], options["val_data"] = data, None
            options.pop("val_texts", None)  # a streamed run's held-out count belongs to its own corpus
        elif "source" not in options:
            raise ValueError("the run records no training data; pass --data SOURCE for the held-out set")
        options["seq_len"] = seq_len or options.get("seq_len") or 128
        if options["seq_len"] > self.model.config.max_position_embeddings:
            raise ValueError(f"seq_len {options['seq_len']} exceeds the model's max_position_embeddings "
                             f"{self.model.config.max_position_embeddings}")
        options.setdefault("val_fraction", 0.05)
        same = all(options.get(k) == self.data_options.get(k) for k in ("source", "val_data", "seq_len"))
        if self.val_data is not None and same:
            return self.val_data, options
        _, _, val = load_lm_data(options, str(self.ckpt / MODEL_DIR) if hasattr(self, "ckpt") else None)
        return val, options

    def heldout(self, *, data: str | None = None, seq_len: int | None = None, batch_size: int | None = None,
                eval_batches: int | None = None, mlm_probability: float | None = None, device=None):
        val, options = self.heldout_rows(data, seq_len)
        batch_size = batch_size or self.run_options.get("batch_size") or 8
        eval_batches = eval_batches or self.run_options.get("eval_batches") or 8
        mlm_probability = mlm_probability or self.run_options.get("mlm_probability") or 0.15
        mask_seed = int(options["split_seed"]) + MASK_SEED_OFFSET
        batches = self._heldout_batches(val, batch_size, eval_batches, mask_seed, mlm_probability)
        info = {"source": options["source"], "seq_len": options["seq_len"], "val_fraction": options["val_fraction"],
                "split_seed": options["split_seed"], "mask_seed": mask_seed, "batch_size": batch_size,
                "batches": len(batches), "rows": sum(int(b["input_ids"].shape[0]) for b in batches),
                "val_rows": len(val), "mlm_probability": mlm_probability, "metric": self.metric}
        if options.get("val_data"):
            info["val_data"] = options["val_data"]
        return batches, info

    def _heldout_batches(self, val, batch_size, eval_batches, mask_seed, mlm_probability) -> list[dict]:
        raise NotImplementedError

    # -- MAGIC-A, block-wise scoring ----------------------------------------------------------
    def align_model(self) -> nn.Module:
        return self.model.bert  # hidden states are all MAGIC-A needs: no head in the base's pass

    def choice_layers(self) -> list[nn.Module]:
        return list(self.model.bert.encoder.layers)

    def randomness_modules(self) -> list[nn.Module]:
        return Aligner.randomness_modules(self.model)  # the embeddings' dropout, then the chain

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        for name, module in self.modules.items():
            ckpt_lib.save_model(module, self.tokenizer, Path(folder) / name)


class MLMTask(BertTask):
    """Masked-LM pre-training of a `BertNasForMaskedLM` supernet."""

    metric = "mlm_loss"
    model_class_name = "BertNasForMaskedLM"
    supports_streaming = True

    def _build_models(self, cfg) -> None:
        if cfg.init_from_bert:
            # Sizes come from the BERT; only the search space and dropout come from the config.
            kept = ("candidates", "hidden_dropout_prob", "attention_probs_dropout_prob")
            model = BertNasForMaskedLM.from_bert(cfg.init_from_bert, **{k: v for k, v in cfg.model.items() if k in kept})
            if model.config.vocab_size != len(self.tokenizer):
                raise ValueError(
                    f"the BERT at {cfg.init_from_bert} has vocab {model.config.vocab_size} but the tokenizer has "
                    f"{len(self.tokenizer)}; use that BERT's tokenizer (--tokenizer {cfg.init_from_bert})"
                )
            arch = cfg.arch if cfg.arch is not None else cfg.model.get("arch")
            if arch is not None:  # stand-alone training of one path, started from the BERT
                model = model.extract(arch)
        else:
            model = BertNasForMaskedLM(self._supernet_config(cfg))
        self.model = model
        self.objective = MLMObjective(model, self.tokenizer, cfg.mlm_probability)
        self.modules = {MODEL_DIR: model}

    def loss_fn(self, model, batch, ops):
        return mlm_loss(model, batch, ops)

    def chain_head(self):
        return mlm_head if hasattr(self.model, "cls") else None

    def _heldout_batches(self, val, batch_size, eval_batches, mask_seed, mlm_probability):
        return mlm_heldout(val, self.tokenizer, batch_size, eval_batches, mask_seed, mlm_probability)


class ElectraTask(BertTask):
    """ELECTRA replaced-token detection: the supernet is the discriminator
    (`BertNasForPreTraining`); a small fixed-arch generator shares its token embeddings."""

    metric = "electra_disc_loss"
    model_class_name = "BertNasForPreTraining"
    supports_streaming = True
    heldout_moves_with_weights = True

    def _build_models(self, cfg) -> None:
        if cfg.init_from_bert:
            raise ValueError("--init-from-bert works with --task mlm (a BERT checkpoint has no ELECTRA discriminator)")
        model_config = self._supernet_config(cfg)
        self.model = BertNasForPreTraining(model_config)
        # The generator: a fixed BERT-like path [mha, ffn] x L/2 that shares the discriminator's
        # token embeddings (so the same hidden size; make it shallower).
        gen_kwargs = {**cfg.generator, "vocab_size": len(self.tokenizer), "pad_token_id": self.tokenizer.pad_token_id}
        gen_kwargs.setdefault("hidden_size", model_config.hidden_size)
        gen_layers = gen_kwargs.setdefault("num_hidden_layers", 2)
        mha = f"mha{_heads(gen_kwargs['hidden_size'])}"
        gen_kwargs.setdefault("arch", ([mha, "ffn"] * gen_layers)[:gen_layers])
        gen_kwargs.setdefault("candidates", sorted(set(gen_kwargs["arch"])))
        for key in ("max_position_embeddings", "type_vocab_size", "hidden_dropout_prob", "attention_probs_dropout_prob"):
            gen_kwargs.setdefault(key, getattr(model_config, key))
        self.generator_model = BertNasForMaskedLM(BertNasConfig(**gen_kwargs))
        self.objective = ElectraObjective(self.model, self.generator_model, self.tokenizer,
                                          disc_weight=cfg.disc_weight, mlm_probability=cfg.mlm_probability)
        self.modules = {MODEL_DIR: self.model, GENERATOR_DIR: self.generator_model}

    def signature(self) -> dict:
        sig = super().signature()
        sig["generator"] = {k: getattr(self.generator_model.config, k)
                            for k in ("hidden_size", "num_hidden_layers", "intermediate_size")}
        return sig

    @classmethod
    def from_checkpoint(cls, ckpt: Path, state: dict, device="cpu") -> ElectraTask:
        task = super().from_checkpoint(ckpt, state, device)
        gen_dir = ckpt / GENERATOR_DIR
        if not gen_dir.is_dir():
            raise FileNotFoundError(f"{ckpt} is an ELECTRA checkpoint without {GENERATOR_DIR}/: the generator is "
                                    "needed to corrupt the held-out set")
        task.generator_model = BertNasForMaskedLM.from_pretrained(gen_dir).to(device).eval()
        task.objective = ElectraObjective(task.model, task.generator_model, task.tokenizer,
                                          mlm_probability=task.run_options.get("mlm_probability") or 0.15)
        task.modules[GENERATOR_DIR] = task.generator_model
        return task

    def loss_fn(self, model, batch, ops):
        return electra_loss(model, batch, ops)

    def chain_head(self):
        return electra_head

    def _heldout_batches(self, val, batch_size, eval_batches, mask_seed, mlm_probability):
        self.objective.mlm_probability = mlm_probability
        return electra_heldout(self.objective, val, batch_size, eval_batches, mask_seed)


__all__ = ["MLMTask", "ElectraTask", "BertTask", "mlm_heldout", "electra_heldout", "load_lm_data", "load_tokenizer",
           "absolute_if_local", "load_stream_data", "StreamSource"]
