"""`bertnas export` and `export(...)`: subnets of a supernet checkpoint as `save_pretrained` folders.

    bertnas export --checkpoint runs/toy --arch '["mha12", "ffn"]' --output-dir exports/bert
    bertnas export --checkpoint runs/toy --results runs/toy-search/results.json --top-k 3 --output-dir exports
    bertnas export ... --push-to-hub my-user/my-subnet          # after `hf auth login` or HF_TOKEN=...

Each folder holds the subnet's weights (safetensors), its config (with the arch), the
tokenizer of the pre-training run, and a model card (README.md: arch table, params, FLOPs,
search provenance and score).

Layout: an arch `[mha<h>, ffn] x L` is a plain BERT: it is written as a transformers
`BertForMaskedLM` (`fixed.to_bert()`) and loads with `AutoModelForMaskedLM` anywhere, without
bertnas and without remote code (the arch is kept in config.json as `bertnas_arch`). Any other
arch is written as the fixed-arch bertnas model with its modeling code next to the weights
(`AutoModelForMaskedLM.from_pretrained(dir, trust_remote_code=True)`). ELECTRA checkpoints
export the discriminator (`BertNasForPreTraining`, remote code) whatever the arch.

`--arch` exports into `--output-dir` itself; `--results` exports the top-k entries into
`--output-dir/rank-<r>/`.

Safety: every folder export writes holds `.bertnas-export.json`, the list of the files it wrote.
`--overwrite` replaces only such folders, and only when they hold nothing else; any other
non-empty folder (and the current folder or one above it) is refused. All target folders are
checked before anything is written; each is written into a temporary folder beside it and
renamed into place only when complete. The model card holds no local absolute paths.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bertnas.core.errors import UserError, UserFileExistsError, hub_offline

CARD_FILE = "README.md"
MARKER_FILE = ".bertnas-export.json"  # in every folder export writes: the files it wrote


def is_bert_arch(ops) -> bool:
    """True for `[mha<h>, ffn] x L` (L >= 1): the archs that are a plain transformers BERT."""
    from bertnas.models.configuration_bertnas import parse_op

    ops = list(ops)
    if not ops or len(ops) % 2:
        return False
    try:
        kind, _ = parse_op(ops[0])
    except ValueError:
        return False
    return kind == "mha" and ops == [ops[0], "ffn"] * (len(ops) // 2)


def parse_arch(value, space):
    """An arch from a JSON list / object, a comma-separated string of ops, a path to a JSON file
    holding either, or a list; validated against `space` (clear errors for unknown ops)."""
    if isinstance(value, (str, os.PathLike)):
        text = str(value).strip()
        path = Path(text)
        if not text.startswith(("[", "{")) and path.suffix == ".json":
            if not path.is_file():
                from bertnas.core.errors import UserFileError

                raise UserFileError(f"Arch file {path} does not exist", "give an existing .json file or the ops")
            text = path.read_text().strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise UserError(f"--arch is not valid JSON ({err}): {text!r}",
                                'write a JSON list such as \'["mha12", "ffn"]\' or comma-separated ops') from None
            if isinstance(value, dict) and "arch" in value:  # a results entry
                value = value["arch"]
        else:
            value = [op.strip() for op in text.split(",") if op.strip()]
    try:
        return space.arch(value)
    except (ValueError, TypeError) as err:
        raise UserError(f"{err}", "give one op per choice of this supernet's space") from None


TAGS = ["bertnas", "neural-architecture-search"]


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hub's endpoint answers at all (any HTTP status) within `timeout` seconds: a
    probe before anything that would otherwise retry an unreachable Hub for minutes."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if hub_offline():
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def _hub_id(value) -> str | None:
    """`value` when it names a Hub repo (`owner/name` or `name`), not a local path; else None. The
    metadata spec wants Hub ids in base_model and datasets."""
    from bertnas.core.errors import looks_like_path

    if not value or not isinstance(value, str) or looks_like_path(value) or Path(value).expanduser().exists():
        return None
    return value.split(":", 1)[0]  # a datasets `name:config`


def card_data_of(source) -> dict:
    """The metadata of `source`'s own model card (a local folder's README.md, or a Hub repo's when
    the Hub answers): {} when there is none."""
    from huggingface_hub import ModelCard

    if not source:
        return {}
    try:
        local = Path(str(source)).expanduser()
        if local.is_dir():
            return ModelCard.load(local / CARD_FILE).data.to_dict() if (local / CARD_FILE).is_file() else {}
        if _hub_id(source) and hub_reachable():
            return ModelCard.load(source).data.to_dict()
    except Exception:  # noqa: BLE001 - a card we cannot read inherits nothing
        return {}
    return {}


def card_metadata(*, pipeline_tag: str | None = None, base_model=None, datasets=None, license: str | None = None,
                  language="en", tags=(), eval_results=None, model_name: str | None = None,
                  inherit_from=None) -> str:
    """YAML front matter by the Hub's model card metadata spec (huggingface_hub's `ModelCardData`):
    license (given, else inherited from `inherit_from`'s card), base_model (Hub ids only),
    datasets, language, pipeline_tag, tags, and a model-index when `eval_results` are given
    (`huggingface_hub.EvalResult`s)."""
    from huggingface_hub import ModelCardData

    inherited = card_data_of(inherit_from) if inherit_from and not license else {}
    datasets = [d for d in ([datasets] if isinstance(datasets, str) else list(datasets or [])) if _hub_id(d)]
    data = ModelCardData(
        license=license or inherited.get("license"), base_model=_hub_id(base_model),
        datasets=[_hub_id(d) for d in datasets] or None, language=language, library_name="transformers",
        pipeline_tag=pipeline_tag, tags=list(dict.fromkeys([*TAGS, *tags])),
        eval_results=eval_results or None, model_name=model_name if eval_results else None,
    )
    return f"---\n{data.to_yaml()}\n---"


def complete_card(folder, info: dict) -> Path:
    """Fill the metadata of the card in `folder` from `info` (base_model, datasets, license, tags,
    language, pipeline_tag; a license is inherited from the base model's card when not given)."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    card = ModelCard.load(path)
    data = card.data
    base = info.get("base_model")
    license_ = info.get("license") or card_data_of(base).get("license")
    if license_:
        data.license = license_
    if _hub_id(base):
        data.base_model = _hub_id(base)
    datasets = [_hub_id(d) for d in ([info["datasets"]] if isinstance(info.get("datasets"), str)
                                     else info.get("datasets") or []) if _hub_id(d)]
    if datasets:
        data.datasets = datasets
    data.language = data.language or info.get("language", "en")
    data.library_name = data.library_name or "transformers"
    if info.get("pipeline_tag"):
        data.pipeline_tag = info["pipeline_tag"]
    data.tags = list(dict.fromkeys([*(data.tags or []), *TAGS, *info.get("tags", [])]))
    card.save(path)
    return path


def push_model_folder(folder, repo_id: str, private: bool = False, card_info: dict | None = None,
                      token: str | None = None) -> str:
    """Upload a model folder (an export, a fine-tuned model, a run's supernet) to the Hub: copied
    first, so a card written for the upload (`card_info`, when the folder has none) never touches
    a checkpoint. One line when the Hub is offline or unreachable."""
    import tempfile

    folder = Path(folder)
    if not hub_reachable():
        raise UserError(f"--push-to-hub {repo_id}: the Hugging Face Hub is offline or unreachable",
                        f"go online and run the command again, or upload {folder} yourself (hf upload)")
    with tempfile.TemporaryDirectory(prefix="bertnas-push-") as tmp:
        staged = Path(tmp) / folder.name
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(MARKER_FILE, ".*"))
        if card_info is not None and not (staged / CARD_FILE).is_file():
            kind = card_info.get("kind", "model")
            (staged / CARD_FILE).write_text(
                f"{card_metadata(base_model=card_info.get('base_model'), datasets=card_info.get('datasets'), inherit_from=card_info.get('base_model'), pipeline_tag=card_info.get('pipeline_tag'), tags=card_info.get('tags', ['supernet']))}\n\n"
                f"# bertnas {kind}\n\nUploaded by bertnas ({card_info.get('objective') or 'training'} run). "
                "A supernet holds every candidate op of every chain layer; cut a subnet with "
                "`bertnas export` before use.\n")
        return push_folder(staged, repo_id, private=private, token=token,
                           commit_message=f"Upload bertnas {card_info.get('kind', 'model') if card_info else 'model'}")


def model_card(ops, *, layout: str, space, params_total: int, seq_len: int, provenance: dict,
               base_class: str, name: str = "PATH_OR_REPO") -> str:
    """README.md: front matter, how to load, the arch table, sizes, and where it came from."""
    from bertnas.search.constraints import human

    remote = layout == "remote-code"
    load_args = ", trust_remote_code=True" if remote else ""
    rows = "\n".join(
        f"| {i} | `{op}` | {space.op_params(op):,} | {space.op_flops(op, seq_len):,} |" for i, op in enumerate(ops)
    )
    prov = "\n".join(f"- {k}: {_card_value(_portable(v))}" for k, v in provenance.items() if v is not None)
    pipeline = "fill-mask" if base_class.endswith("MaskedLM") else None
    params, flops, c = space.params(list(ops)), space.flops(list(ops), seq_len), space.config
    base = provenance.get("teacher") or provenance.get("initial BERT")
    front = [card_metadata(pipeline_tag=pipeline, base_model=base, datasets=provenance.get("corpus"),
                           license=provenance.get("license"), inherit_from=base,
                           tags=["distillation"] if provenance.get("teacher") else ["supernet-subnet"])]
    layout_text = (
        "a fixed-arch bertnas model; its modeling code (`modeling_bertnas.py`, `configuration_bertnas.py`) ships "
        "in this folder and runs with `trust_remote_code=True` (read it before trusting it)"
        if remote else
        f"a plain transformers `{base_class}` (the arch is `[mha, ffn] x L`, i.e. a BERT); no remote code"
    )
    return f"""{chr(10).join(front)}

# bertnas subnet: {len(ops)} chain layers

A subnet cut from a weight-sharing hybrid BERT supernet trained with bertnas
(search space: per chain layer one of
{", ".join(f"`{c}`" for c in space.config.candidates)}). Layout: {layout_text}.

```python
from transformers import AutoModelForMaskedLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{name}"{", trust_remote_code=False" if remote else ""})  # no remote code
model = AutoModelForMaskedLM.from_pretrained("{name}"{load_args})
```

## Architecture

Each chain layer is one post-LN residual sublayer `x = LayerNorm(x + op(x))`.

| layer | op | params | FLOPs / sequence ({seq_len} tokens) |
|---|---|---|---|
{rows}

- arch: `{json.dumps(list(ops))}`
- backbone parameters (embeddings + chain): {params:,} ({human(params)})
- parameters of this model (with its head): {params_total:,} ({human(params_total)})
- chain FLOPs per sequence of {seq_len} tokens (2 x multiply-adds): {flops:,} ({human(flops)})
- hidden size {c.hidden_size}, FFN inner size {c.intermediate_size}, vocabulary {c.vocab_size}

## Search provenance

{prov}

Scores are measured with the supernet's inherited weights on the pre-training run's held-out
split (before any stand-alone training or fine-tuning); fine-tune before use.
"""


def generic_model_card(ops, *, layout: str, space, params_total: int, seq_len: int, provenance: dict,
                       base_class: str, name: str = "PATH_OR_REPO") -> str:
    """README.md of a subnet of a non-BERT space (vision: NB201, DARTS, CNN): how to load it,
    its choices, sizes and provenance."""
    from bertnas.search.constraints import human

    auto = "AutoModelForImageClassification" if "ImageClassification" in base_class else "AutoModel"
    rows = "\n".join(f"| `{label}` | `{_card_value(op)}` |" for label, op in zip(space.choices, ops))
    prov = "\n".join(f"- {k}: {_card_value(_portable(v))}" for k, v in provenance.items() if v is not None)
    params = space.params(list(ops))
    try:
        flops = f"{space.flops(list(ops), seq_len):,}"
    except (NotImplementedError, TypeError):
        flops = "n/a"
    pipeline = "image-classification" if "ImageClassification" in base_class else None
    return f"""{card_metadata(pipeline_tag=pipeline, datasets=provenance.get("corpus"), license=provenance.get("license"),
                          language=None, tags=["supernet-subnet"])}

# bertnas subnet ({type(space).__name__})

A subnet cut from a weight-sharing supernet trained with bertnas. Its modeling code ships in
this folder and runs with `trust_remote_code=True` (read it before trusting it).

```python
from transformers import {auto}

model = {auto}.from_pretrained("{name}", trust_remote_code=True)
```

## Architecture

| choice | value |
|---|---|
{rows}

- arch: `{json.dumps(list(ops))}`
- parameters: {params:,} ({human(params)}); of this model: {params_total:,}
- FLOPs per input (2 x multiply-adds): {flops}

## Search provenance

{prov}

Scores are measured with the supernet's inherited weights (BatchNorm recalibrated per subnet
where the model has BatchNorm), before any stand-alone training; retrain before use.
"""


def _card_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def _portable(value):
    """Provenance without local absolute paths (a card may be pushed to the Hub): an absolute
    path keeps its last two parts (`toy/checkpoint-00000010`); dicts and lists are cleaned inside."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    if isinstance(value, Path) or (isinstance(value, str) and (value.startswith(("/", "~")) or value[1:3] == ":\\")):
        parts = Path(str(value)).parts
        return "/".join(parts[-2:]) if len(parts) > 1 else str(value)
    return value


def check_target(folder: Path, overwrite: bool) -> None:
    """Refuse a target that is not safe to write: the current folder or one above it, a file, a
    non-empty folder without --overwrite, and with --overwrite a folder bertnas export did not
    write (no marker) or one holding files it did not write."""
    folder = Path(folder)
    resolved, cwd = folder.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UserError(f"--output-dir {folder} is the current folder or one above it",
                        "give a new folder for the export, e.g. exports/subnet")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserFileExistsError(f"--output-dir {folder} is a file", "give a folder path")
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    if not present:
        return
    if not overwrite:
        raise UserFileExistsError(f"{folder} exists and is not empty",
                                  "pass --overwrite (overwrite=True) to replace an earlier bertnas export there, "
                                  "or another --output-dir")
    marker = folder / MARKER_FILE
    try:
        written = set(json.loads(marker.read_text())["files"]) | {MARKER_FILE}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserFileExistsError(
            f"{folder} was not written by bertnas export (no valid {MARKER_FILE}); --overwrite replaces only "
            "bertnas exports", "move its files away or give another --output-dir") from None
    foreign = [p for p in present if p not in written]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserFileExistsError(f"{folder} holds files bertnas export did not write ({shown})",
                                  "move them away or give another --output-dir")


def _write_marker(folder: Path) -> None:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    (folder / MARKER_FILE).write_text(json.dumps({"written_by": "bertnas export", "files": files}, indent=2) + "\n")


def _temp_folder(folder: Path, kind: str) -> Path:
    return folder.parent / f".{kind}-{folder.name}-{os.getpid()}"


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Replace `folder` (absent, empty, or an export checked by `check_target`) by `tmp`."""
    from bertnas.storage.checkpoint import swap_folder

    swap_folder(tmp, folder, _temp_folder(folder, "old-export"))


def _check_same_outputs(supernet, exported, ops, vocab_size: int) -> float:
    """Max |difference| of the exported model's logits and the supernet path's on a random batch."""
    import torch

    with torch.no_grad():
        return _max_diff(torch, supernet, exported, ops, vocab_size)


def _max_diff(torch, supernet, exported, ops, vocab_size: int) -> float:
    g = torch.Generator().manual_seed(0)
    device = next(supernet.parameters()).device
    if getattr(supernet, "main_input_name", "input_ids") != "input_ids":  # images: the model's own dummy inputs
        inputs = supernet.dummy_inputs
    else:
        ids = torch.randint(5, vocab_size, (2, 12), generator=g).to(device)
        mask = torch.ones_like(ids)
        mask[1, 8:] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
    was = supernet.training, exported.training
    supernet.eval()
    exported.eval()
    ref = supernet(**inputs, arch=list(ops)).logits
    out = exported(**inputs).logits
    supernet.train(was[0])
    exported.train(was[1])
    return float((ref - out).abs().max())


def export_arch(model, space, processing_class, arch, folder: Path, provenance: dict, seq_len: int,
                overwrite: bool = False, verify: bool = True, name: str | None = None) -> Path:
    """Write one subnet of the in-memory supernet `model` into `folder` (checked by `check_target`,
    written into a temporary folder, then renamed into place)."""
    folder = Path(folder)
    check_target(folder, overwrite)
    tmp = _write_subnet(model, space, processing_class, arch, folder, provenance, seq_len, verify, name)
    _move_into_place(tmp, folder)
    return folder


def _write_subnet(model, space, processing_class, arch, folder: Path, provenance: dict, seq_len: int, verify: bool,
                  name: str | None) -> Path:
    """The export of one subnet in a temporary folder beside `folder`; returns that folder."""
    from bertnas.storage.checkpoint import save_model

    ops = list(arch.ops)
    fixed = model.extract(ops)
    base_class = type(fixed).__name__
    layout = "remote-code"
    out = fixed
    # factorised embeddings (bertnas compress students) have no plain-BERT counterpart
    plain_embeddings = getattr(fixed.config, "embedding_size", None) in (None, getattr(fixed.config, "hidden_size", None))
    if is_bert_arch(ops) and getattr(type(fixed), "_bert_class_name", None) and plain_embeddings:
        out = fixed.to_bert()
        out.config.bertnas_arch = ops  # the arch stays on record in config.json
        layout, base_class = "bert", type(out).__name__
    if verify:
        diff = _check_same_outputs(model, out, ops, getattr(model.config, "vocab_size", 0))
        if diff > 1e-4:
            raise RuntimeError(f"The exported subnet {ops} does not reproduce the supernet path "
                               f"(max |diff| {diff:.2e})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    positions = getattr(out.config, "max_position_embeddings", None)
    if isinstance(positions, int) and hasattr(processing_class, "model_max_length"):
        # a tokenizer longer than the position table makes a pipeline on long text index past it
        processing_class.model_max_length = positions
    tmp = _temp_folder(folder, "tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_model(out, processing_class, tmp)
        total = sum(p.numel() for p in out.parameters())
        shown = name or (str(folder) if not folder.is_absolute() else folder.name)
        card = (model_card if hasattr(space, "op_params") else generic_model_card)(ops, layout=layout, space=space, params_total=total, seq_len=seq_len,
                          provenance={**provenance, "layout": layout}, base_class=base_class, name=shown)
        (tmp / CARD_FILE).write_text(card)
        _write_marker(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def push_folder(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> str:
    """Upload an exported folder to the Hugging Face Hub in one commit (create the repo if needed).

    Authentication is huggingface_hub's: `hf auth login` once, or the
    HF_TOKEN environment variable, or `token=`. Returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo.repo_id, repo_type="model",
                             ignore_patterns=[MARKER_FILE],
                             commit_message=commit_message or "Upload bertnas subnet")
    return str(getattr(info, "commit_url", info))


def export(
    checkpoint,
    output_dir,
    *,
    arch=None,
    results=None,
    top_k: int = 1,
    push_to_hub: str | None = None,
    private: bool = False,
    token: str | None = None,
    seq_len: int | None = None,
    overwrite: bool = False,
    verify: bool = True,
    device: str | None = None,  # None: a GPU when one is visible
    trust_checkpoint: bool = False,
) -> list[Path]:
    """Export `arch`, or the `top_k` best entries of a search's `results` (results.json or its
    folder), from the supernet of `checkpoint` (a run dir or a checkpoint folder). Returns the
    written folders (`output_dir` for `arch`; `output_dir/rank-<r>` for results)."""
    if (arch is None) == (results is None):
        raise UserError("Give exactly one of arch (--arch) and results (--results)")
    if top_k < 1:
        raise UserError(f"top_k must be >= 1, got {top_k}", "pass --top-k 1 or more")
    from bertnas.storage.checkpoint import check_output_dir, sibling_lock

    check_output_dir(output_dir)
    if arch is not None:
        check_target(Path(output_dir), overwrite)  # before torch and the model are loaded
    # Two exports into one folder would both report success and one output would be gone:
    # the second is refused while the first holds the lock.
    with sibling_lock(output_dir):
        return _export(checkpoint, output_dir, arch=arch, results=results, top_k=top_k, push_to_hub=push_to_hub,
                       private=private, token=token, seq_len=seq_len, overwrite=overwrite, verify=verify,
                       device=device, trust_checkpoint=trust_checkpoint)


def _export(checkpoint, output_dir, *, arch, results, top_k, push_to_hub, private, token, seq_len, overwrite, verify,
            device, trust_checkpoint) -> list[Path]:
    from bertnas.storage.results import SEARCH_FILE, load_results
    from bertnas.tasks import load_task
    from bertnas.storage.checkpoint import verified_checkpoint

    task = load_task(verified_checkpoint(checkpoint, trust=trust_checkpoint), device)
    model, ckpt, state, space = task.model, task.ckpt, task.run_state, task.space
    processing_class = task.processing_class
    given_seq_len = seq_len
    seq_len = int(seq_len or (state.get("data") or {}).get("seq_len") or 128)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and seq_len > positions:  # the card's FLOPs would describe impossible inputs
        where = f"--seq-len {seq_len}" if given_seq_len else f"the run's seq_len {seq_len}"
        raise UserError(f"{where} is longer than the model's {positions} positions (model card FLOPs)",
                        f"pass --seq-len {positions} or less")
    run_cfg = state.get("config") or {}
    base = {"initial BERT": run_cfg.get("init_from_bert"), "corpus": run_cfg.get("data"),
            "supernet checkpoint": str(ckpt), "pre-training step": state.get("step"),
            "pre-training objective": state.get("task") or run_cfg.get("task") or run_cfg.get("objective")}
    jobs = []
    if arch is not None:
        jobs.append((parse_arch(arch, space), Path(output_dir), {**base, "source": "given arch"}))
    else:
        entries = load_results(results)
        results_path = Path(results) / "results.json" if Path(results).is_dir() else Path(results)
        meta_path = results_path.parent / SEARCH_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("checkpoint") and Path(meta["checkpoint"]).resolve() != ckpt.resolve():
            base["note"] = f"the search scored checkpoint {meta['checkpoint']}; exported from {ckpt}"
        for i, entry in enumerate(entries[:top_k]):
            r = entry.get("rank", i + 1)
            try:
                parsed = space.arch(entry["arch"])
            except (ValueError, TypeError, KeyError) as err:
                raise UserError(f"{results_path} entry {i} is not an arch of this supernet: {err}",
                                "export with the checkpoint the search scored (--checkpoint)") from None
            prov = {**base, "search method": meta.get("method"), "search results": str(results_path),
                    "rank": r, "metric": entry.get("metric", meta.get("metric")), "score": entry.get("score"),
                    "held-out set": meta.get("heldout"), "constraints": meta.get("constraints")}
            jobs.append((parsed, Path(output_dir) / f"rank-{r}", prov))
    if push_to_hub and len(jobs) != 1:
        raise UserError(f"--push-to-hub uploads one model; {len(jobs)} would be exported", "use --top-k 1 or --arch")
    for _, folder, _ in jobs:  # every target before anything is written
        check_target(folder, overwrite)
    written = []
    prepare = getattr(task, "prepare_export", None)  # e.g. BatchNorm recalibration of the path
    try:
        for a, folder, prov in jobs:
            if prepare is not None:
                prepare(a)
            written.append((_write_subnet(model, space, processing_class, a, folder, prov, seq_len, verify, push_to_hub),
                            folder))
    except BaseException:
        for tmp, _ in written:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for tmp, folder in written:
        _move_into_place(tmp, folder)
    folders = [folder for _, folder, _ in jobs]
    if push_to_hub:
        try:
            push_folder(folders[0], push_to_hub, private=private, token=token)
        except Exception as err:
            if hub_offline() or type(err).__name__ == "OfflineModeIsEnabled":
                raise UserError(f"exported to {folders[0]} but --push-to-hub needs the Hugging Face Hub and "
                                "HF_HUB_OFFLINE is set", f"go online and upload {folders[0]} (push_folder)") from None
            raise
    return folders


__all__ = ["export", "export_arch", "check_target", "MARKER_FILE", "push_folder", "is_bert_arch", "parse_arch", "model_card",
           "generic_model_card", "card_metadata", "complete_card", "push_model_folder", "card_data_of", "hub_reachable"]
