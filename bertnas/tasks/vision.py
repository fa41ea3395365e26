"""Image classification (task `classification`): the task of every vision space.

`bertnas pretrain --space nb201 --data cifar10_subset_5k_1k.npz` trains an NB201 supernet
with this task; the DARTS-cell and CNN spaces plug in the same way.

Interface for a vision space
----------------------------
    register_vision_model("darts", "bertnas.spaces.darts:build_supernet", result_info=None)

registers the space name for `--space darts` (`SPACES` in `bertnas/tasks/registry.py`) and its builder,
given as a function or as a lazy "module:function" string (imported on first use):

    build_fn(space_options: dict, num_classes: int, arch: list | None = None,
             image_shape: tuple = (3, 32, 32)) -> (model, space)

- `space_options`: the run's `space_options` minus the task's own keys (`TASK_OPTIONS`:
  metric, augment, calibration_batches, padding, partial_channels, channels_last, compile);
  unknown keys should raise ValueError.
- `arch`: None for the supernet, else one value per choice in the space's order (JSON form:
  strings, lists for input choices): a fixed-arch model for stand-alone training (`--arch`).
- `model`: an `nn.Module` (a transformers `PreTrainedModel` with `register_for_auto_class`, so
  checkpoints and exports reload with `AutoModelForImageClassification`) whose
  `model(pixel_values=x, labels=None, arch=a, output_hidden_states=False)` returns an object
  with `.loss` (cross-entropy when labels are given), `.logits` and `.hidden_states` (a tuple
  whose shapes do not depend on the arch: MAGIC-A aligns them). `a` is an `Arch` or a tuple of
  values in choice order. Every searchable layer is a choice module (`bertnas/spaces/choices.py`
  protocol); `extract(arch)` returns a stand-alone model with copies of the path's weights.
  BatchNorm layers are recalibrated per arch before every score (the Evaluator does it).
- `space`: its `SearchSpace` with `params(arch)` and `flops(arch, seq_len=None)`.
- `result_info(arch) -> dict` (optional): extra fields of every search result entry (NB201:
  `{"benchmark": {"cifar10": ..., "cifar100": ..., "imagenet16-120": ..., "rank_cifar10": ...}}`).

Data
----
`--data`: an `.npz` (keys x_train / y_train / x_test / y_test, uint8 images NHWC or NCHW;
optional class_names; a `manifest.tsv` beside it is checked), an image folder
(`root/[train|test]/<class>/*.png|jpg`), a zip of such a folder (decoded once, then cached as
uint8 under `$BERTNAS_CACHE`, default ~/.cache/bertnas: the complete CIFAR-10,
`vision/cifar10_jpeg/cifar10-jpeg.zip`), or a `datasets` name (columns img|image and
label|labels|fine_label). Default: `$BERTNAS_DATA_DIR/vision/cifar10_subset/...npz`, else
`../shared/data/...`. Training rows: the train split minus `val_fraction` held out by
`data_seed` (or all of it with `--val-data SOURCE`, whose test split is then held out).
Images stay uint8 in memory; each batch is augmented (random crop with 4-pixel zero padding +
horizontal flip, whole-batch tensor ops) with draws from the generator the trainer passes to
`compute` and checkpoints, so a resumed run sees the same images; then per-channel
normalisation with the training split's mean / std.

Speed (`bench/bench_vision.py`)
-------------------------------
`space_options: {channels_last: true}` feeds the model NHWC batches (the convolutions and
BatchNorm then run channels-last; the default of spaces registered with `channels_last=True`:
NB201); `{compile: true}` runs each candidate op with parameters through one `torch.compile`
per op class (`compile_candidate_ops`). Both leave the weights and checkpoints as they are.

Scoring
-------
Subnets are ranked by held-out top-1 accuracy (`metric: accuracy`, higher is better; the
default; `space_options: {metric: cross_entropy}` ranks by loss), after BatchNorm recalibration
on `calibration_batches` (default 4) fixed, un-augmented training batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from bertnas.core.registry import Registry, resolve
from bertnas.models.configuration_nb201 import Nb201Config
from bertnas.models.modeling_nb201 import Nb201ForImageClassification
from bertnas.spaces.choices import _is_choice
from bertnas.spaces.nb201 import Nb201Benchmark, Nb201Space, default_benchmark_path
from bertnas.storage.checkpoint import MODEL_DIR, load_model_weights
from bertnas.supernet.scoring import Evaluator, recalibrate
from bertnas.tasks.base import Task
from bertnas.tasks.objectives import ObjectiveOutput
from bertnas.tasks.registry import register_space

logger = logging.getLogger("bertnas.vision")

DEFAULT_DATA = Path("vision") / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
# partial_channels: PC-DARTS search networks (k > 1: cell edges run 1/k of the channels; nb201, darts)
# channels_last: NHWC activations (None: the space's default, `register_vision_model(channels_last=)`);
# compile: torch.compile every candidate op with parameters, once per op class (training steps)
TASK_OPTIONS = {"metric": "accuracy", "augment": True, "calibration_batches": 4, "padding": 4, "partial_channels": 1,
                "channels_last": None, "compile": False}
PARTIAL_CHANNEL_SPACES = ("nb201", "darts")
METRICS = ("accuracy", "cross_entropy")
_DATA_CACHE: dict = {}


# ----------------------------------------------------------------------------------------
# Registry of vision spaces
# ----------------------------------------------------------------------------------------


@dataclass
class VisionModel:
    build: Callable | str  # (space_options, num_classes, arch=None, image_shape=(3, 32, 32)) -> (model, space)
    result_info: Callable | str | None = None  # arch -> dict of extra result fields
    channels_last: bool = False  # the default of space_options.channels_last (where it was measured to pay)

    def builder(self) -> Callable:
        if isinstance(self.build, str):  # "module:function", imported on first use
            self.build = resolve(self.build)
        return self.build

    def info_fn(self) -> Callable | None:
        if isinstance(self.result_info, str):
            self.result_info = resolve(self.result_info)
        return self.result_info


VISION_MODELS = Registry("vision space")


def register_vision_model(name: str, build: Callable | str, result_info: Callable | str | None = None,
                          channels_last: bool = False) -> None:
    """`--space name` trains `build`'s supernet with the classification task (see the module doc);
    `channels_last`: the space's default memory format (NHWC activations) when the run's
    `space_options` do not say."""
    VISION_MODELS.register(name, VisionModel(build, result_info, channels_last), replace=True)
    register_space(name, "classification")


def vision_model(name: str) -> VisionModel:
    return VISION_MODELS.get(name)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    classes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


class ImageRows:
    """Map-style rows of an `ImageSet` (a subset by `indices`): `rows[list]` -> dict of tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


def data_root() -> Path:
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("BERTNAS_DATA_DIR", repo.parent / "shared" / "data"))


def resolve_source(source: str | None) -> str:
    """A local path as an absolute path; None: the CIFAR-10 subset of the shared data."""
    if source is None:
        path = data_root() / DEFAULT_DATA
        if not path.is_file():
            raise FileNotFoundError(f"no --data given and the default CIFAR-10 subset {path} does not exist: pass "
                                    "--data (an .npz, an image folder or a datasets name) or set BERTNAS_DATA_DIR")
        return str(path.resolve())
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if source.endswith((".npz", ".zip")) or source.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"image data {source} does not exist")
    return source  # a datasets name (owner/name)


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:  # grey N x H x W
        return x[:, None]
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def _check_manifest(path: Path, split: str, labels: torch.Tensor) -> dict:
    """The manifest.tsv beside an .npz (split, index, label, ...): its rows of `split` must
    match the array's length and labels."""
    manifest = path.parent / "manifest.tsv"
    if not manifest.is_file():
        return {}
    rows = [line.split("\t") for line in manifest.read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    try:
        s, i, lab = header.index("split"), header.index("index"), header.index("label")
    except ValueError:
        return {"manifest": manifest.name}
    mine = sorted((int(r[i]), int(r[lab])) for r in rows if r[s] == split)
    if mine:
        ok = len(mine) == len(labels) and all(int(labels[k]) == v for k, v in mine)
        if not ok:
            raise ValueError(f"{manifest} does not match {path.name}'s {split} split ({len(mine)} rows listed, "
                             f"{len(labels)} in the array, or other labels): the data files are out of step")
    return {"manifest": manifest.name, "manifest_rows": len(mine)}


def _load_npz(path: Path, split: str) -> ImageSet:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        xk, yk = (f"x_{split}", f"y_{split}") if f"x_{split}" in keys else ("x", "y")
        if xk not in keys or yk not in keys:
            raise KeyError(f"{path} has no {split!r} split (keys {sorted(keys)}; expected x_{split} / y_{split})")
        images = _to_nchw(torch.from_numpy(np.ascontiguousarray(data[xk])))
        labels = torch.from_numpy(np.asarray(data[yk]).astype("int64"))
        classes = [str(c) for c in data["class_names"]] if "class_names" in keys else []
    if images.dtype != torch.uint8:
        raise ValueError(f"{path}: images must be uint8 (0..255), got {images.dtype}")
    return ImageSet(images, labels, classes, {"split": split, **_check_manifest(path, split, labels)})


def _load_folder(root: Path, split: str) -> ImageSet:
    import numpy as np
    from PIL import Image

    folder = root / split if (root / split).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{folder} holds no class folders (expected <class>/<image files>)")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(file) as img:
                    images.append(np.asarray(img.convert("RGB")))
                labels.append(label)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: images have different sizes {sorted(shapes)[:4]}; resize them first")
    x = _to_nchw(torch.from_numpy(np.stack(images)))
    return ImageSet(x, torch.tensor(labels), classes, {"split": split})


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def cache_dir() -> Path:
    """Where decoded image arrays are kept between runs (`BERTNAS_CACHE`, else ~/.cache/bertnas)."""
    return Path(os.environ.get("BERTNAS_CACHE", Path.home() / ".cache" / "bertnas"))


def _decode_zip(path: Path, split: str) -> tuple:
    """uint8 N x H x W x C images, labels and class names of the `split/<class>/<image>` entries
    of a zip (an optional top folder above `split` is allowed); classes sorted by name."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    with zipfile.ZipFile(path) as archive:
        entries = {}
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) >= 3 and parts[-3] == split and parts[-1].lower().endswith(IMAGE_SUFFIXES):
                entries.setdefault(parts[-2], []).append(name)
        classes = sorted(entries)
        if not classes:
            raise ValueError(f"{path} holds no {split}/<class>/<image> entries (an image-folder layout in a zip)")
        images, labels = [], []
        for label, cls in enumerate(classes):
            for name in sorted(entries[cls]):
                with Image.open(io.BytesIO(archive.read(name))) as img:
                    images.append(np.asarray(img.convert("RGB")))
                labels.append(label)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{path} ({split}): images have different sizes {sorted(shapes)[:4]}; resize them first")
    return np.stack(images), np.asarray(labels, dtype="int64"), classes


def _load_zip(path: Path, split: str) -> ImageSet:
    """A zip of class folders, decoded once into a cached uint8 array keyed by the zip's path,
    size and modification time (decoding 60,000 JPEGs takes tens of seconds; loading the cache
    well under one)."""
    import hashlib

    import numpy as np

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{split}".encode()).hexdigest()[:16]
    cached = cache_dir() / "images" / f"{path.stem}-{split}-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                x, y, classes = data["x"], data["y"], [str(c) for c in data["class_names"]]
        except (OSError, ValueError, KeyError):  # a damaged cache is rebuilt, never trusted
            cached.unlink(missing_ok=True)
            return _load_zip(path, split)
    else:
        x, y, classes = _decode_zip(path, split)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + f".{os.getpid()}.tmp.npz")
        np.savez(partial, x=x, y=y, class_names=np.asarray(classes))
        os.replace(partial, cached)  # atomic: a concurrent run sees the whole file or none
    images = _to_nchw(torch.from_numpy(np.ascontiguousarray(x)))
    return ImageSet(images, torch.from_numpy(y), classes, {"split": split, "cache": str(cached)})


def _load_datasets(name: str, split: str) -> ImageSet:
    import numpy as np
    from datasets import load_dataset

    ds = load_dataset(name, split=split)
    image_col = next((c for c in ("img", "image") if c in ds.column_names), None)
    label_col = next((c for c in ("label", "labels", "fine_label") if c in ds.column_names), None)
    if image_col is None or label_col is None:
        raise ValueError(f"datasets {name!r} ({split}): no image (img/image) or label (label/labels/fine_label) "
                         f"column among {ds.column_names}")
    images = [np.asarray(im.convert("RGB")) for im in ds[image_col]]
    x = _to_nchw(torch.from_numpy(np.stack(images)))
    feature = ds.features[label_col]
    classes = list(getattr(feature, "names", []) or [])
    return ImageSet(x, torch.tensor(ds[label_col], dtype=torch.long), classes, {"split": split})


def load_images(source: str | None, split: str = "train") -> ImageSet:
    """The `split` of an image source (.npz, image folder or datasets name), cached per process."""
    source = resolve_source(source)
    key = (source, split)
    if key not in _DATA_CACHE:
        path = Path(source)
        if path.suffix == ".npz":
            data = _load_npz(path, split)
        elif path.suffix == ".zip":
            data = _load_zip(path, split)
        elif path.is_dir():
            data = _load_folder(path, split)
        else:
            data = _load_datasets(source, split)
        data.info["source"] = source
        if len(_DATA_CACHE) > 4:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = data
    return _DATA_CACHE[key]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) row indices of n rows; held-out: `val_fraction` of them, drawn by `seed`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:].sort().values, order[:n_val].sort().values


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4, *, scale: bool = True,
            channels_last: bool = False) -> torch.Tensor:
    """CIFAR augmentation of a whole batch of uint8 / float images (B x C x H x W) as tensor ops:
    a random crop of the image zero-padded by `padding` and a horizontal flip with probability
    1/2, drawn from `generator` (on the images' device; three draws per batch). Returns floats in
    [0, 1] (uint8 input; `scale=False`: the uint8 crops themselves, the values unchanged).
    The crop is one gather on the NHWC view (uint8 images are gathered before the conversion:
    a quarter of the bytes); `channels_last` keeps that layout instead of copying to NCHW."""
    b, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded.permute(0, 2, 3, 1)[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)  # NCHW sizes, NHWC memory (channels_last)
    if scale and out.dtype == torch.uint8:
        out = out.float() / 255.0  # keeps the memory format
    return out if channels_last else out.contiguous()


def normalise(images: torch.Tensor, mean, std, channels_last: bool = False) -> torch.Tensor:
    """(x / 255 - mean) / std per channel (uint8 input; floats are taken as already in [0, 1]);
    `channels_last`: the result in NHWC memory, else NCHW-contiguous."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    out = (x - mean) / std
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def channel_stats(images: torch.Tensor) -> tuple[list, list]:
    """Per-channel mean and std of uint8 images, pixels scaled to [0, 1]."""
    x = images.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


# ----------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------


class ClassificationTask(Task):
    """Cross-entropy training of a vision supernet; held-out accuracy after BN recalibration."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self):
        super().__init__()
        self.space_name = None
        self.space_options: dict = {}  # the builder's options
        self.options = dict(TASK_OPTIONS)  # the task's own (metric, augment, ...)
        self.data_options: dict = {}
        self.run_options: dict = {}
        self._train_rows = None
        self._val_rows = None

    # -- building ---------------------------------------------------------------------------
    def _split_options(self, space_options: dict) -> None:
        options = dict(space_options or {})
        for key, default in TASK_OPTIONS.items():
            self.options[key] = options.pop(key, default)
        if self.options["metric"] not in METRICS:
            raise ValueError(f"space_options.metric must be one of {', '.join(METRICS)}, got {self.options['metric']!r}")
        self.metric = self.options["metric"]
        self.higher_is_better = self.metric == "accuracy"
        for key in ("channels_last", "compile"):
            if self.options[key] not in (None, True, False):
                raise ValueError(f"space_options.{key} must be true or false, got {self.options[key]!r}")
        if self.options["channels_last"] is None and self.space_name in VISION_MODELS:
            self.options["channels_last"] = vision_model(self.space_name).channels_last
        self.channels_last = bool(self.options["channels_last"])
        self.space_options = options

    def _build(self, arch) -> None:
        d = self.data_options
        model, space = vision_model(self.space_name).builder()(
            dict(self.space_options), d["num_classes"], arch, tuple(d["image_shape"]))
        k = self.options["partial_channels"]
        if k != 1:  # the same network with PC-DARTS edges (the models read config.partial_channels)
            if self.space_name not in PARTIAL_CHANNEL_SPACES:
                raise ValueError(f"space_options.partial_channels={k!r}: the {self.space_name!r} supernet has no "
                                 "channel edges to split; partial channels apply to "
                                 f"{', '.join(PARTIAL_CHANNEL_SPACES)}")
            model.config.partial_channels = k
            model = type(model)(model.config)
        config = getattr(model, "config", None)
        if config is not None:  # the normalisation the model expects, on record in its config
            config.image_mean, config.image_std = d["mean"], d["std"]
        if self.options["compile"]:
            compile_candidate_ops(model)
        self.model, self.space = model, space
        self.modules = {MODEL_DIR: model}
        self.fixed_arch = space.arch(arch) if arch is not None else None
        self.processing_class = image_processor(d["mean"], d["std"])

    def setup(self, cfg, resume_from: Path | None = None) -> None:
        self.space_name = cfg.space
        self._split_options(cfg.space_options)
        source = resolve_source(cfg.data)
        val_source = resolve_source(cfg.val_data) if cfg.val_data else None
        self.data_options = {"source": source, "val_data": val_source, "val_fraction": cfg.val_fraction,
                             "split_seed": cfg.data_seed}
        self.run_options = {"batch_size": cfg.batch_size, "eval_batches": cfg.eval_batches}
        self._load_data()
        self._build(list(cfg.arch) if cfg.arch is not None else None)
        self.train_data = self._train_rows

    def _load_data(self) -> None:
        """Training and held-out rows of `data_options`; fills in classes, image shape and stats."""
        d = self.data_options
        train = load_images(d["source"])
        if d.get("val_data"):
            val_set = load_images(d["val_data"], "test")
            self._train_rows = ImageRows(train.images, train.labels)
            self._val_rows = ImageRows(val_set.images, val_set.labels)
        else:
            tr, va = split_indices(len(train.labels), d["val_fraction"], d["split_seed"])
            self._train_rows = ImageRows(train.images[tr], train.labels[tr])
            self._val_rows = ImageRows(train.images[va], train.labels[va])
        num_classes = max(len(train.classes), int(train.labels.max()) + 1)
        mean, std = channel_stats(self._train_rows.images)
        found = {"num_classes": num_classes, "image_shape": list(train.images.shape[1:]), "mean": mean, "std": std,
                 "classes": train.classes, "train_rows": len(self._train_rows), "val_rows": len(self._val_rows),
                 **{k: v for k, v in train.info.items() if k.startswith("manifest")}}
        for key in ("num_classes", "image_shape"):
            if key in d and d[key] != found[key]:
                raise ValueError(f"the data now has {key} {found[key]}, the run was trained with {d[key]}")
        d.update({k: v for k, v in found.items() if k not in ("mean", "std") or k not in d})

    @classmethod
    def from_checkpoint(cls, ckpt: Path, state: dict, device="cpu") -> ClassificationTask:
        config = state.get("config") or {}
        task = cls()
        task.space_name = config.get("space")
        task._split_options(config.get("space_options") or {})
        task.data_options = dict(state.get("data") or {})
        task.run_options = {"batch_size": config.get("batch_size"), "eval_batches": config.get("eval_batches")}
        if "num_classes" not in task.data_options:
            raise ValueError(f"{ckpt}/state.json records no image data (num_classes): not a classification run")
        task._build(config.get("arch"))
        load_model_weights(task.model, Path(ckpt) / MODEL_DIR)
        task.model.to(device).eval()
        task.ckpt = ckpt
        return task

    def signature(self) -> dict:
        d = self.data_options
        return {"task": self.name, "space": self.space_name, "space_options": self.space_options,
                "num_classes": d.get("num_classes"), "image_shape": d.get("image_shape"),
                "arch": list(self.fixed_arch.to_list()) if self.fixed_arch is not None else None,
                **({"partial_channels": self.options["partial_channels"]} if self.options["partial_channels"] != 1 else {})}

    def data_state(self) -> dict:
        return dict(self.data_options)

    def _data(self):
        if self._train_rows is None:
            try:
                self._load_data()
            except (FileNotFoundError, KeyError) as err:
                raise FileNotFoundError(f"the run's image data is not available here ({err}); pass data= / --data "
                                        "for the held-out set") from None
        return self._train_rows, self._val_rows

    # -- training ---------------------------------------------------------------------------
    def collate(self, dataset, indices) -> dict:
        return dataset[list(indices)]

    def inputs(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images -> the model's input: augmented (with `generator`) and normalised, as whole
        batches of tensor ops; in NHWC memory with `channels_last` (the convolutions then run
        channels-last end to end: every op keeps its input's memory format)."""
        if generator is not None and self.options["augment"]:
            pixel_values = augment(pixel_values, generator, int(self.options["padding"]),
                                   channels_last=self.channels_last)
        return normalise(pixel_values, self.data_options["mean"], self.data_options["std"], self.channels_last)

    def compute(self, batch, arch, generator):
        x = self.inputs(batch["pixel_values"], generator)
        # a MixedArch (search strategies: {label: weights}, with .discrete) runs the mixed ops
        path = {"arch_weights": dict(arch)} if getattr(arch, "discrete", None) is not None else {"arch": arch}
        out = self.model(pixel_values=x, labels=batch["labels"], output_hidden_states=True, **path)
        accuracy = (out.logits.detach().argmax(-1) == batch["labels"]).float().mean()
        return ObjectiveOutput(out.loss, out.hidden_states, {"accuracy": float(accuracy)}, inputs={"pixel_values": x})

    def count_items(self, batch: dict) -> int:
        return int(batch["labels"].shape[0])

    # -- scoring ----------------------------------------------------------------------------
    def _batches(self, rows, batch_size: int, limit: int | None) -> list[dict]:
        batches = []
        for start in range(0, len(rows), batch_size):
            if limit and len(batches) >= limit:
                break
            part = rows[list(range(start, min(start + batch_size, len(rows))))]
            batches.append({"pixel_values": self.inputs(part["pixel_values"]), "labels": part["labels"]})
        return batches

    def heldout(self, *, data: str | None = None, batch_size: int | None = None, eval_batches: int | None = None,
                **_) -> tuple[list[dict], dict]:
        """The held-out images (normalised, not augmented) in fixed batches: the first
        `eval_batches` (0 / None: all) of `batch_size`. `data`: another source's test split."""
        batch_size = batch_size or self.run_options.get("batch_size") or 64
        eval_batches = self.run_options.get("eval_batches") if eval_batches is None else eval_batches
        if data is not None:
            test = load_images(data, "test")
            rows, source = ImageRows(test.images, test.labels), f"{resolve_source(data)} (test split)"
        else:
            _, rows = self._data()
            d = self.data_options
            source = (f"{d['val_data']} (test split)" if d.get("val_data")
                      else f"{d['source']} ({d['val_fraction']:g} of train, split seed {d['split_seed']})")
        batches = self._batches(rows, batch_size, eval_batches)
        info = {"source": source, "batch_size": batch_size, "batches": len(batches),
                "rows": sum(len(b["labels"]) for b in batches), "val_rows": len(rows), "metric": self.metric,
                "calibration_batches": int(self.options["calibration_batches"]),
                "calibration": "BatchNorm statistics recomputed per arch on fixed un-augmented training batches"}
        return batches, info

    def calibration_batches(self) -> list[dict]:
        """Fixed training batches (an order drawn by the split seed), normalised, not augmented."""
        train, _ = self._data()
        batch_size = self.run_options.get("batch_size") or 64
        n = min(len(train), batch_size * int(self.options["calibration_batches"]))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(
            int(self.data_options.get("split_seed", 0)) + 777))[:n].tolist()
        picked = ImageRows(train[order]["pixel_values"], train[order]["labels"])
        return self._batches(picked, batch_size, None)

    def evaluator(self, batches: list[dict], cache: bool = True):
        return Evaluator(self.model, batches, loss_fn=self.loss_fn, metric=self.metric,
                         higher_is_better=self.higher_is_better, space=self.space, cache=cache,
                         calibration_batches=self.calibration_batches())

    def loss_fn(self, model, batch, ops):
        logits = model(pixel_values=batch["pixel_values"], arch=ops).logits
        if self.metric == "accuracy":
            return (logits.argmax(-1) == batch["labels"]).sum(), batch["labels"].numel()
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum"), batch["labels"].numel()

    def result_info(self, arch) -> dict:
        fn = vision_model(self.space_name).info_fn()
        return fn(arch) if fn is not None else {}

    # -- MAGIC-A ----------------------------------------------------------------------------
    def choice_layers(self) -> list:
        return [m for m in self.model.modules() if _is_choice(m)]

    def randomness_modules(self) -> list:
        return [self.align_model()]  # one forward = one shared RNG state for student and base

    # -- export -----------------------------------------------------------------------------
    def prepare_export(self, arch) -> None:
        """Recalibrate BatchNorm for `arch` so that `extract` copies the path's own statistics."""
        try:
            batches = self.calibration_batches()
        except FileNotFoundError as err:
            logger.warning("BatchNorm statistics not recalibrated for the export: %s", err)
            return
        device = next(self.model.parameters()).device
        recalibrate(self.model, self.space.arch(arch), [{k: v.to(device) for k, v in b.items()} for b in batches])


_COMPILED: dict = {}  # op class -> its compiled forward: one per process, shared by every instance and path


def compile_candidate_ops(model: torch.nn.Module, backend: str = "inductor") -> int:
    """`space_options: {compile: true}`: every candidate op with parameters (conv-BN blocks; ops
    without parameters are left eager) runs its forward through one `torch.compile` of its class,
    shared by every instance: a path reuses the graphs of the ops' shapes (one per op class and
    shape, compiled when first met), so no arch recompiles anything. Compiled in training mode
    with gradients on (the training step); scoring and BatchNorm recalibration run eager, so
    held-out batches of other sizes compile nothing. Returns the number of ops wrapped."""
    import types

    import torch._dynamo

    # one graph per op class and shape (NB201: 2 conv kinds x 3 stages); the default limit of 8
    # graphs per function would fall back to eager on larger spaces
    torch._dynamo.config.recompile_limit = max(int(torch._dynamo.config.recompile_limit), 64)
    wrapped = 0
    for module in model.modules():
        ops = getattr(module, "ops", None) if _is_choice(module) else None
        for op in (ops.values() if isinstance(ops, torch.nn.ModuleDict) else ()):
            if next(op.parameters(), None) is None or "forward" in vars(op):
                continue
            cls = type(op)
            if (cls, backend) not in _COMPILED:
                _COMPILED[(cls, backend)] = torch.compile(cls.forward, backend=backend, dynamic=False)
            op.forward = types.MethodType(_training_compiled(_COMPILED[(cls, backend)], cls.forward), op)
            wrapped += 1
    return wrapped


def _training_compiled(compiled, eager):
    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            return compiled(self, *args, **kwargs)
        return eager(self, *args, **kwargs)

    return forward


def image_processor(mean, std):
    """A transformers image processor with the run's normalisation (no resize), saved next to
    exported models; None when transformers' image processors are unavailable."""
    try:
        import transformers

        # transformers 5 splits the PIL and torchvision backends; the PIL one needs no torchvision
        ViTImageProcessor = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
        return ViTImageProcessor(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                 image_mean=list(mean), image_std=list(std))
    except Exception:  # optional: an export without a processor still loads
        return None


# ----------------------------------------------------------------------------------------
# NAS-Bench-201
# ----------------------------------------------------------------------------------------

NB201_OPTIONS = {"C": "init_channels", "N": "cells_per_stage", "init_channels": "init_channels",
                 "cells_per_stage": "cells_per_stage", "candidates": "candidates", "bn_affine": "bn_affine",
                 "bn_track_running_stats": "bn_track_running_stats"}


def build_nb201(space_options: dict, num_classes: int, arch=None, image_shape=(3, 32, 32)):
    """The NB201 supernet (or fixed cell) of `space_options` {C | init_channels, N |
    cells_per_stage, candidates, bn_affine}; defaults C=16, N=5 (NAS-Bench-201's network)."""
    unknown = sorted(set(space_options) - set(NB201_OPTIONS))
    if unknown:
        raise ValueError(f"unknown nb201 space_options {unknown}; known: {', '.join(NB201_OPTIONS)} "
                         f"(and the task's {', '.join(TASK_OPTIONS)})")
    kwargs = {NB201_OPTIONS[k]: v for k, v in space_options.items()}
    if arch is not None:
        arch = list(Nb201Space.parse_string(arch)) if isinstance(arch, str) else list(arch)
        if len(arch) == 1 and isinstance(arch[0], str) and arch[0].startswith("|"):
            arch = list(Nb201Space.parse_string(arch[0]))  # --arch '|op~0|+...' arrives as one item
    config = Nb201Config(num_labels=num_classes, num_channels=image_shape[0], image_size=image_shape[-1],
                         arch=arch, **kwargs)
    model = Nb201ForImageClassification(config)
    return model, Nb201Space.from_config(config)


_BENCHMARKS: dict = {}  # the table of the current default path, read once


def nb201_benchmark_info(arch) -> dict:
    """`{"benchmark": {cifar10, cifar100, imagenet16-120, rank_cifar10, index}}` from the NB201
    table; {} when the table is absent (see `bertnas.spaces.nb201.Nb201Benchmark`)."""
    path = default_benchmark_path()
    if _BENCHMARKS.get("path") != path:
        try:
            _BENCHMARKS.update(path=path, bench=Nb201Benchmark(path))
        except FileNotFoundError:
            return {}
    bench = _BENCHMARKS["bench"]
    entry = bench.lookup(arch)
    entry["rank_cifar10"] = bench.rank(arch, "cifar10")
    return {"benchmark": entry}


register_vision_model("nb201", build_nb201, nb201_benchmark_info, channels_last=True)  # bench/bench_vision.py


__all__ = ["ClassificationTask", "register_vision_model", "VISION_MODELS", "VisionModel", "load_images", "augment",
           "normalise", "compile_candidate_ops", "split_indices", "build_nb201", "nb201_benchmark_info", "ImageSet",
           "ImageRows"]

# DARTS cells and the CNN chain (ProxylessNAS / SPOS ShuffleNetV2): builders imported on first use.
register_vision_model("darts", "bertnas.spaces.darts:build_supernet")
register_vision_model("cnn", "bertnas.spaces.cnn:build_supernet")
