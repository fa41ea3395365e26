"""A task is data + objective + evaluator + model builder for one search space.

The trainer (`bertnas/train/trainer.py`), search (`bertnas/search/api.py`) and export speak to
a `Task` and its `space`; only task files know model classes. A new kind of supernet training
(another space, another loss) is a `Task` subclass registered with `@register_task(name)`
(`bertnas/tasks/registry.py`); `tests/test_new_space.py` trains a space written in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from bertnas.storage.checkpoint import load_model_weights, save_model
from bertnas.supernet.scoring import Evaluator
from bertnas.supernet.stream import collate_rows
from bertnas.tasks.registry import TASKS


class Task:
    """Hooks the trainer, the evaluator, search and export call. Subclasses fill them.

    After `setup(cfg)` (training) or `from_checkpoint(...)` (search, export) a task holds:
      space       the `SearchSpace` whose archs the supernet runs;
      model       the supernet: `model(**inputs, arch=...)` runs one path;
      modules     every trained module by checkpoint folder name ({"model": ..., ...});
      fixed_arch  the one arch of a fixed-arch (stand-alone) model, else None;
      train_data  a map-style dataset of training rows (training only);
      processing_class  what turns raw inputs into model inputs (a tokenizer, an image
                  processor; transformers' name), saved next to exported models, or None.
    """

    name: ClassVar[str] = "task"
    metric: ClassVar[str] = "loss"  # what held-out scores measure
    higher_is_better: ClassVar[bool] = False
    # True when the held-out set itself depends on trained weights (ELECTRA's generator
    # corrupts it): the trainer rebuilds it at each base-replacement check.
    heldout_moves_with_weights: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = TASKS.name_of(cls) or cls.name  # a built-in knows its registry name

    def __init__(self):
        self.space = None
        self.model: nn.Module | None = None
        self.modules: dict[str, nn.Module] = {}
        self.fixed_arch = None
        self.train_data = None
        self.processing_class = None

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def check_sources(cls, cfg) -> None:
        """The data sources of `cfg` exist, checked before the run creates its folder."""

    def setup(self, cfg, resume_from: Path | None = None) -> None:
        """Load data and build models for a training run of `cfg` (a `PretrainConfig`).
        `resume_from` is the checkpoint a resumed run will load (e.g. to read its tokenizer)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, ckpt: Path, state: dict, device="cpu") -> Task:
        """The task of a saved run with its trained model loaded, for search and export."""
        raise NotImplementedError

    def signature(self) -> dict:
        """What must match for a checkpoint to resume into this run (sizes, space, objective)."""
        return {"task": self.name}

    def data_state(self) -> dict:
        """The data options recorded in `state.json` (search rebuilds the held-out set from them)."""
        return {}

    # -- training ---------------------------------------------------------------------------
    # True when `batch_stream` can read `cfg.data` as a stream (`--streaming`): the BERT MLM /
    # ELECTRA tasks; a run of another task refuses the option.
    supports_streaming: ClassVar[bool] = False

    def batch_stream(self, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0, **loader):
        """The trainer's micro-batches: a deterministic, resumable stream over `train_data`
        (`state_dict` / `load_state_dict` / `next`)."""
        from bertnas.supernet.stream import BatchStream

        return BatchStream(self.train_data, batch_size, world_size, rank, seed, collate=self.collate, **loader)

    def collate(self, dataset, indices) -> dict:
        return collate_rows(dataset, indices)

    def compute(self, batch: dict, arch, generator):
        """The objective on one micro-batch for `arch` -> `ObjectiveOutput` (loss, hidden states
        for MAGIC-A, metrics, the inputs the subnet saw). All randomness from `generator`."""
        raise NotImplementedError

    def count_items(self, batch: dict) -> int:
        """Items in a batch, for throughput (tokens for language models)."""
        return int(next(iter(batch.values())).shape[0])

    def short_name(self, op: Any) -> str:
        """Compact op name for the progress bar."""
        return "+".join(op) if isinstance(op, tuple) else str(op)

    # -- scoring ----------------------------------------------------------------------------
    def heldout(self, **options) -> tuple[list[dict], dict]:
        """(fixed held-out batches, their description). Training's evaluation and search's
        `Evaluator` both score subnets on these batches with `loss_fn`: the same number."""
        raise NotImplementedError

    def loss_fn(self, model: nn.Module, batch: dict, ops: tuple) -> tuple:
        """(sum of the score over the batch, number of items) for the path `ops`."""
        raise NotImplementedError

    def chain_head(self):
        """`(model, batch, last hidden state) -> (sum, count)`: `loss_fn` from a chain path's last
        hidden state, which lets the evaluator share layer prefixes between archs
        (`Evaluator(head_fn=...)`); None (the default): every arch is scored whole."""
        return None

    def evaluator(self, batches: list[dict], cache: bool = True):
        return Evaluator(self.model, batches, loss_fn=self.loss_fn, metric=self.metric,
                         higher_is_better=self.higher_is_better, space=self.space, cache=cache,
                         head_fn=self.chain_head())

    def result_info(self, arch) -> dict:
        """Extra fields of `arch`'s search result entry (e.g. a benchmark's real accuracy); {} by default."""
        return {}

    def prepare_export(self, arch) -> None:
        """Called by export before `model.extract(arch)` (vision: BatchNorm recalibration of the path)."""

    # -- MAGIC-A ----------------------------------------------------------------------------
    def align_model(self) -> nn.Module:
        """The module the base subnet runs on (no head needed: MAGIC-A aligns hidden states)."""
        return self.model

    def choice_layers(self) -> list[nn.Module]:
        """The searchable layers in path order (block-wise scoring, per-candidate optimizer groups)."""
        raise NotImplementedError

    def randomness_modules(self) -> list[nn.Module]:
        """The modules whose dropout MAGIC-A's student and base share (`Aligner.shared_randomness`)."""
        return self.choice_layers()

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Every module into `folder/<name>/` (`save_pretrained` when the module has it)."""
        for name, module in self.modules.items():
            save_model(module, None, Path(folder) / name)

    def load(self, folder: Path) -> None:
        """Weights saved by `save` into the modules, in place (optimizer references stay valid)."""
        for name, module in self.modules.items():
            load_model_weights(module, Path(folder) / name)


__all__ = ["Task"]
