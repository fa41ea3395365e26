"""Pre-training text: sources, tokenizer, packed fixed-length rows, held-out split.

Sources: the embedded default corpus (docstrings of the Python standard library, read with
`ast` from the installed sources: about 1.4 MB of English prose, no download), local text
files (.txt, .raw, .tokens, ...) and .jsonl/.json files or folders of them, or any `datasets`
name[:config] with a "text" column. Built corpora and trained tokenizers are cached under
`BERTNAS_CACHE` (default ~/.cache/bertnas).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bertnas.core.errors import UserError, UserFileError

if TYPE_CHECKING:
    import datasets

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Suffixes picked up in folders (a single file may have any suffix; .json/.jsonl read as JSON).
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".tokens")
JSON_SUFFIXES = (".jsonl", ".json")
EMBEDDED_CORPUS_BYTES = 2_000_000
# Parts of the standard library whose docstrings are tests, demos or generated tables.
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip", "pydoc_data", "encodings"}


def _docstring_paragraphs(source: str):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in nodes:
        doc = ast.get_docstring(node)
        if not doc:
            continue
        for paragraph in doc.split("\n\n"):
            lines = [line.strip() for line in paragraph.splitlines()]
            if any(line.startswith((">>>", "...")) for line in lines):
                continue  # doctest code, not prose
            text = " ".join(line for line in lines if line)
            if len(text.split()) >= 6:
                yield text


def cache_dir() -> Path:
    """Where built corpora and trained tokenizers are kept (`BERTNAS_CACHE`, default ~/.cache/bertnas)."""
    return Path(os.environ.get("BERTNAS_CACHE", Path.home() / ".cache" / "bertnas"))


def embedded_corpus(max_bytes: int = EMBEDDED_CORPUS_BYTES) -> list[str]:
    """English paragraphs from the standard library's docstrings, in a fixed file order: the same
    text for the same Python version, about 1.4 MB. Built once (~10 s), then read from the cache."""
    version = ".".join(map(str, sys.version_info[:3]))
    cached = cache_dir() / f"embedded-corpus-py{version}-{max_bytes}.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8").splitlines()
    texts = _harvest_docstrings(max_bytes)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=cached.parent, delete=False) as f:
        f.write("\n".join(texts))
    os.replace(f.name, cached)  # atomic: a concurrent reader never sees half a file
    return texts


def _harvest_docstrings(max_bytes: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in _SKIP_DIRS]  # never descend into them
        files.extend(Path(folder) / name for name in names if name.endswith(".py"))
    texts, size = [], 0
    for path in sorted(files):
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for text in _docstring_paragraphs(source):
            texts.append(text)
            size += len(text)
            if size >= max_bytes:
                return texts
    if not texts:
        raise RuntimeError(f"No docstrings found under {root}; pass --data with a text file instead")
    return texts


def _local_files(path: Path) -> list[Path]:
    """The file itself, or the text and JSON files under a folder (by suffix, sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES + JSON_SUFFIXES and p.is_file())
    if not files:
        raise UserFileError(
            f"The folder {path} holds no text files to train on (looked for {', '.join(TEXT_SUFFIXES + JSON_SUFFIXES)})",
            "put .txt or .jsonl files there, or give a file"
        )
    return files


NOT_TEXT_SHARE = 0.05  # more undecodable / NUL bytes than this in a file's first 64 KiB: not text


def not_text_share(path: Path, sample_bytes: int = 1 << 16) -> float:
    """Share of a file's first bytes that are not UTF-8 text (undecodable sequences, NUL and other
    control bytes but tab / newline / carriage return / form feed)."""
    with path.open("rb") as f:
        data = f.read(sample_bytes)
    if not data:
        return 0.0
    text = data.decode("utf-8", errors="replace")
    if len(data) == sample_bytes:  # a character cut at the end of the sample is not an error
        text = text.rstrip("\ufffd")
    bad = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f"))
    return bad / max(len(text), 1)


def check_text_files(files: list[Path], source: str) -> None:
    """Refuse binary files (they would train on replacement characters and cache a garbage
    tokenizer) and a corpus whose files are all empty."""
    for path in files:
        share = not_text_share(path)
        if share > NOT_TEXT_SHARE:
            raise UserError(f"{path} is not text ({share:.0%} of its first bytes are not UTF-8 text)",
                            "give UTF-8 text files (one text per line) or .jsonl with a 'text' field")
        if share > 0:  # text in another encoding (Latin-1, cp1252): trains on U+FFFD in place of its letters
            logging.getLogger("bertnas.data").warning(
                "%s is not all UTF-8 (%.2f%% of its first bytes are not): those characters are read as U+FFFD "
                "replacement characters; convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)", path,
                100 * share)
    if all(path.stat().st_size == 0 for path in files):
        raise UserError(f"the corpus {source} is empty", "give a file with text in it, one text per line")


def _load_local(files: list[Path], source: str, text_column: str = "text") -> datasets.Dataset:
    """JSON files by their "text" field, every other file one row per line (UTF-8; a stray byte
    in another encoding becomes U+FFFD instead of failing the whole corpus)."""
    import datasets

    parts = []
    json_files = [str(f) for f in files if f.suffix in JSON_SUFFIXES]
    text_files = [str(f) for f in files if f.suffix not in JSON_SUFFIXES]
    check_text_files(list(files), source)
    for kind, group, options in (("text", text_files, {"encoding_errors": "replace"}), ("json", json_files, {})):
        group = [f for f in group if Path(f).stat().st_size > 0]  # datasets fails on empty files
        if not group:
            continue
        try:
            ds = datasets.load_dataset(kind, data_files=group, split="train", **options)
        except Exception as err:  # noqa: BLE001 - malformed JSON and the like: name the files
            if kind == "text":
                raise
            raise UserError(f"{source} could not be read as JSON lines ({type(err).__name__})",
                            "give one JSON object with a 'text' field per line") from None
        column = text_column if kind == "json" else "text"
        if column not in ds.column_names:
            raise UserError(f"{source} has columns {ds.column_names}, no {column!r}",
                            "a 'text' column is needed, or name yours with --text-column COL")
        parts.append(_as_text(ds, column))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _looks_local(source: str) -> bool:
    return (source.startswith((".", "/", "~")) or source.endswith(TEXT_SUFFIXES + JSON_SUFFIXES)
            or (os.sep in source and Path(source).suffix != ""))


def check_corpus(source: str | None, option: str = "--data") -> None:
    """A local corpus exists, is text and is not empty (checked before a run loads anything)."""
    if source is None:
        return
    path = Path(source).expanduser()
    if path.exists():
        check_text_files(_local_files(path), source)
    elif _looks_local(source):
        raise UserFileError(f"{option} {source} does not exist", "give a .txt/.jsonl file, a folder, or a datasets name")
    else:
        from bertnas.core.errors import hub_offline

        if hub_offline() or os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise UserError(f"{option} {source} is not a local file or folder and the Hub is offline "
                            "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)",
                            "give a local .txt/.jsonl file or folder, or go online for a datasets name")


def _as_text(ds, column: str):
    """The one column `column` of `ds`, named "text"."""
    ds = ds.select_columns([column])
    return ds.rename_column(column, "text") if column != "text" else ds


def load_texts(source: str | None = None, split: str = "train", text_column: str = "text") -> datasets.Dataset:
    """A Dataset with one "text" column of non-empty texts. `source`: None (the embedded corpus); a
    text file (one row per non-empty line; any suffix but .json/.jsonl, e.g. .txt, .raw,
    .tokens); a .jsonl/.json file with a "text" field; a folder of those (sorted, read
    recursively); or a `datasets` name with optional ":config" (its `split`, default train).
    `text_column`: the field of JSON rows / the column of a datasets corpus that holds the text."""
    import datasets

    if source is None:
        return datasets.Dataset.from_dict({"text": embedded_corpus()})
    path = Path(source).expanduser()
    if path.exists():
        ds = _load_local(_local_files(path), source, text_column)
    else:
        ds = _load_named(source, split, streaming=False)
    if "text" not in ds.column_names:
        if text_column not in ds.column_names:
            raise UserError(f"{source} has columns {ds.column_names}, no {text_column!r}",
                            "a 'text' column is needed, or name yours with --text-column COL")
        ds = _as_text(ds, text_column)
    ds = ds.select_columns(["text"]).filter(lambda row: bool(row["text"] and row["text"].strip()))
    if len(ds) == 0:
        raise UserError(f"the corpus {source} holds no non-empty text", "give a file with text in it, one text per line")
    return ds


def build_tokenizer(name_or_path: str | None, texts: datasets.Dataset | None = None, vocab_size: int = 8000):
    """A Hugging Face tokenizer by folder / Hub id, or (None) a lower-cased WordPiece tokenizer
    trained on `texts` with `tokenizers`, with BERT's special tokens ([PAD] = 0, [UNK], [CLS],
    [SEP], [MASK]).

    `tokenizers` breaks ties between equally frequent merges differently from run to run, so two
    trainings on the same text can give different vocabularies. The trained tokenizer is
    therefore cached (under `cache_dir()`, keyed by the text and `vocab_size`) and every later
    call, and every other process on the machine, loads that one; a run's checkpoints also hold
    the tokenizer it trained with."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name_or_path is not None:
        try:
            return AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise UserFileError(f"Could not load a tokenizer from {name_or_path!r} ({str(err).splitlines()[0]})",
                                "give a folder holding tokenizer.json / vocab.txt, or a Hub id while online") from None
    if texts is None:
        raise ValueError("Training a tokenizer needs texts")
    digest = hashlib.sha1(f"wordpiece-v1-{vocab_size}".encode())
    for text in texts["text"]:
        digest.update(text.encode())
        digest.update(b"\0")
    cached = cache_dir() / "tokenizers" / digest.hexdigest()[:16]
    if cached.exists():
        return PreTrainedTokenizerFast.from_pretrained(cached)
    tokenizer = _train_wordpiece(texts, vocab_size)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent))
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(cached)
    except OSError:  # another process cached its tokenizer first: use that one, so all agree
        shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(cached)


def _train_wordpiece(texts: datasets.Dataset, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator((row for row in texts["text"]), trainer=trainer, length=len(texts))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )


def _splits_key(texts: datasets.Dataset, tokenizer, seq_len: int, val_fraction: float, seed: int) -> str:
    """Names the packed splits of these texts, tokenizer and options (bump v1 when packing changes)."""
    digest = hashlib.sha1(f"lm-splits-v1|{texts._fingerprint}|{seq_len}|{val_fraction}|{seed}".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    digest.update(vocab.encode())
    return digest.hexdigest()[:16]


def build_lm_splits(texts: datasets.Dataset, tokenizer, seq_len: int, val_fraction: float = 0.05, seed: int = 0,
                    cache_dir: str | Path | None = None):
    """(train, val) Datasets of packed rows `[CLS] tokens... [SEP]` of exactly `seq_len` tokens, with
    `attention_mask` and `token_type_ids`, in torch format. The texts are split (by `seed`)
    before packing, so no held-out text leaks into training; documents are joined with [SEP].

    Caching: file-backed corpora reuse datasets' fingerprinted cache of each `map`. With
    `cache_dir`, the packed splits are also saved there (keyed by the texts' fingerprint, the
    tokenizer and the options) and a later call with the same inputs loads them instead of
    tokenising again; this covers in-memory corpora such as the embedded one."""
    import datasets

    if seq_len < 4:
        raise ValueError(f"seq_len={seq_len} is too short to pack; use at least 4")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(texts) < 2:
        raise UserError("The corpus needs at least two texts to hold one out for validation", "add more lines of text")
    target = Path(cache_dir) / _splits_key(texts, tokenizer, seq_len, val_fraction, seed) if cache_dir else None
    if target is not None and (target / "dataset_dict.json").exists():
        saved = datasets.load_from_disk(str(target))
        return saved["train"].with_format("torch"), saved["val"].with_format("torch")
    split = texts.train_test_split(test_size=val_fraction, seed=seed, shuffle=True)
    out = [pack_lm_rows(split[name], tokenizer, seq_len, "validation" if name == "test" else "training")
           for name in ("train", "test")]
    train, val = out
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent))
        datasets.DatasetDict({"train": train, "val": val}).save_to_disk(str(tmp))
        try:
            tmp.rename(target)  # atomic: readers never see a half-written cache
        except OSError:  # another process saved the same splits first
            shutil.rmtree(tmp, ignore_errors=True)
    return train.with_format("torch"), val.with_format("torch")


def pack_lm_rows(texts: datasets.Dataset, tokenizer, seq_len: int, what: str = "held-out"):
    """Packed rows `[CLS] tokens... [SEP]` of exactly `seq_len` tokens of every text (documents
    joined with [SEP]), with `attention_mask` and `token_type_ids` (no torch format set)."""
    if seq_len < 4:
        raise ValueError(f"seq_len={seq_len} is too short to pack; use at least 4")
    body = seq_len - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    def tokenize(batch):
        # verbose=False: texts longer than the model's maximum are fine here, packing cuts them.
        return {"ids": tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]}

    def pack(batch):
        stream = []
        for ids in batch["ids"]:
            stream.extend(ids)
            stream.append(sep_id)  # document boundary
        rows = [[cls_id] + stream[i:i + body] + [sep_id] for i in range(0, len(stream) - body + 1, body)]
        return {
            "input_ids": rows,
            "attention_mask": [[1] * seq_len for _ in rows],
            "token_type_ids": [[0] * seq_len for _ in rows],
        }

    short = "train" if what == "training" else "test" if what == "validation" else what
    part = texts.map(tokenize, batched=True, remove_columns=texts.column_names, desc=f"tokenise {short}")
    part = part.map(pack, batched=True, batch_size=1000, remove_columns=["ids"], desc=f"pack {short}")
    if len(part) == 0:
        raise UserError(
            f"The {what} split packs into 0 rows of {seq_len} tokens",
            "use more text, a larger val_fraction or a shorter --seq-len"
        )
    return part


# ----------------------------------------------------------------------------------------
# Streaming corpora (--streaming): read in order, tokenised on the fly, resumable position
# ----------------------------------------------------------------------------------------

STREAM_TOKENIZER_TEXTS = 10_000  # a streamed corpus trains its WordPiece on its first texts
STREAM_READ_AHEAD = 256  # texts tokenised per call


def stream_corpus(source: str | None, split: str = "train", text_column: str = "text"):
    """The corpus as a `datasets.IterableDataset` read lazily (`streaming=True`): local text / JSON
    files or folders, a `datasets` name[:config] (its `split`), or None (the embedded corpus).
    Rows keep their columns; `iter_texts` reads `text_column` from them."""
    import datasets

    if source is None:
        return datasets.Dataset.from_dict({"text": embedded_corpus()}).to_iterable_dataset()
    path = Path(source).expanduser()
    if path.exists():
        files = _local_files(path)
        check_text_files(files, source)
        parts = []
        json_files = [str(f) for f in files if f.suffix in JSON_SUFFIXES and f.stat().st_size > 0]
        text_files = [str(f) for f in files if f.suffix not in JSON_SUFFIXES and f.stat().st_size > 0]
        if text_files:
            parts.append(datasets.load_dataset("text", data_files=text_files, split="train", streaming=True,
                                               encoding_errors="replace"))
        if json_files:
            part = datasets.load_dataset("json", data_files=json_files, split="train", streaming=True)
            if text_files:  # one "text" column for both kinds of file
                part = part.select_columns([text_column])
                part = part.rename_column(text_column, "text") if text_column != "text" else part
            parts.append(part)
        if not parts:
            raise UserError(f"the corpus {source} is empty", "give a file with text in it, one text per line")
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return _load_named(source, split, streaming=True)


def _load_named(source: str, split: str, streaming: bool):
    """A `datasets` corpus by name (`name[:config]`), read whole or as a stream; a path-like name
    that does not exist, or a name that cannot be loaded (offline, unknown), is one clear error."""
    import datasets

    if _looks_local(source):
        raise UserFileError(f"Training text {source!r} does not exist", "give a .txt/.jsonl file, a folder, or a datasets name")
    name, _, config = source.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split, streaming=streaming)
    except Exception as err:  # offline, unknown name, ...: say what was tried
        raise UserFileError(
            f"{source!r} is not a local file or folder and could not be {'streamed' if streaming else 'loaded'} with "
            f"datasets.load_dataset ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
            "give a local .txt/.jsonl file or folder (or go online for a datasets name)"
        ) from err


def iter_texts(corpus, text_column: str = "text", start: int = 0, source: str = "the corpus"):
    """The texts of a streamed corpus from row `start` on (blank or missing ones give ""), one
    per row, so a row count is a position in the stream. `text_column`: the column of JSON rows
    and datasets corpora (plain text files have only "text")."""
    rows = corpus.skip(start) if start else corpus
    for i, row in enumerate(rows):
        if text_column in row:
            text = row[text_column]
        elif "text" in row:
            text = row["text"]
        else:
            if i == 0 and not start:
                raise UserError(f"{source} has columns {sorted(row)}, no {text_column!r}",
                                "a 'text' column is needed, or name yours with --text-column COL")
            text = None
        yield text if isinstance(text, str) else ""


def first_texts(corpus, count: int, text_column: str = "text", source: str = "the corpus") -> list[str]:
    """The non-blank texts among the first `count` rows of a streamed corpus."""
    import itertools

    return [t for t in itertools.islice(iter_texts(corpus, text_column, source=source), count) if t.strip()]


def stream_heldout(corpus, tokenizer, seq_len: int, rows: int, text_column: str = "text",
                   source: str = "the corpus"):
    """(packed held-out rows, texts taken): the fewest first rows of the stream, in steps of 64,
    128, 256, ... rows, that pack into at least `rows` rows of `seq_len` tokens (as
    `pack_lm_rows`); training reads on after them."""
    import datasets

    texts, taken, want, ended = [], 0, 64, False
    reader = iter_texts(corpus, text_column, source=source)
    while not ended:
        for text in reader:
            taken += 1
            if text.strip():
                texts.append(text)
            if taken >= want:
                break
        else:
            ended = True
        if texts and _token_rows(texts, tokenizer, seq_len) >= rows:
            packed = pack_lm_rows(datasets.Dataset.from_dict({"text": texts}), tokenizer, seq_len, "validation")
            if len(packed) >= rows:
                return packed.select(range(rows)), taken
        want *= 2
    raise UserError(f"the streamed corpus {source} holds fewer than {rows} held-out rows of {seq_len} tokens "
                    "and training text after them",
                    "use more text, a shorter --seq-len, fewer eval_batches, or --val-data FILE")


def _token_rows(texts: list[str], tokenizer, seq_len: int) -> int:
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return sum(len(x) + 1 for x in ids) // (seq_len - 2)


class PackedTextStream:
    """Training micro-batches of a streamed corpus, built on the fly.

    The texts are read in corpus order (`open_texts(start)` iterates them from training text
    `start`), tokenised in groups of `STREAM_READ_AHEAD` and packed exactly as `pack_lm_rows`
    packs a map-style corpus: `[CLS] tokens... [SEP]` rows of `seq_len`, documents joined with
    [SEP]. Global micro-batch i is the next B x W rows and rank r takes its r-th slice of B. The
    position is (epoch, text, offset): the training text whose tokens come next and how many of
    its tokens are already in rows. A checkpoint holds it, and a resumed run reads on from that
    very token, so it sees the batches an uninterrupted run would. At the end of the corpus the
    partial global batch is dropped and the next epoch starts again from the first training text
    (no shuffling: a streamed corpus trains in its own order)."""

    def __init__(self, open_texts, tokenizer, seq_len: int, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, skip: int = 0, pin_memory: bool = False, **_loader):
        if seq_len < 4:
            raise ValueError(f"seq_len={seq_len} is too short to pack; use at least 4")
        self.open_texts, self.tokenizer, self.seq_len = open_texts, tokenizer, seq_len
        self.batch_size, self.world_size, self.rank, self.seed, self.skip = batch_size, world_size, rank, seed, skip
        self.global_batch = batch_size * world_size
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pin_memory = pin_memory
        self.epoch = self.text = self.offset = self.position = 0
        self._reset()

    def _reset(self) -> None:
        self._iter = None
        self._ahead: list[list[int]] = []  # token ids of texts self.text, self.text + 1, ...

    def _current(self) -> list[int] | None:
        """Token ids (+ [SEP]) of text `self.text`, skipping blank texts; None at the corpus's end."""
        import itertools

        while True:
            if not self._ahead:
                if self._iter is None:
                    self._iter = iter(self.open_texts(self.text))
                chunk = list(itertools.islice(self._iter, STREAM_READ_AHEAD))
                if not chunk:
                    return None
                blank = [not t.strip() for t in chunk]
                ids = self.tokenizer([t for t, b in zip(chunk, blank) if not b], add_special_tokens=False,
                                     verbose=False)["input_ids"] if not all(blank) else []
                found = iter(ids)
                self._ahead = [[] if b else [*next(found), self.sep_id] for b in blank]
                self._ahead.reverse()  # pop() from the end: the next text
            if self._ahead[-1]:
                return self._ahead[-1]
            self._ahead.pop()  # a blank text: no tokens, no [SEP] (as the map-style corpus drops it)
            self.text += 1
            self.offset = 0

    def _row(self) -> list[int] | None:
        body, out = self.seq_len - 2, []
        while len(out) < body:
            ids = self._current()
            if ids is None:
                return None
            take = ids[self.offset:self.offset + body - len(out)]
            out.extend(take)
            self.offset += len(take)
            if self.offset >= len(ids):
                self._ahead.pop()
                self.text += 1
                self.offset = 0
        return [self.cls_id, *out, self.sep_id]

    def next(self) -> dict:
        import torch

        rows: list = []
        fresh = self.text == 0 and self.offset == 0
        while len(rows) < self.global_batch:
            row = self._row()
            if row is None:  # the corpus ended: drop the partial batch, start the next epoch
                if fresh:
                    raise UserError(f"the streamed corpus packs into fewer than one global batch of "
                                    f"{self.batch_size} x {self.world_size} rows of {self.seq_len} tokens",
                                    "use more text, a smaller --batch-size or --seq-len")
                self.epoch, self.text, self.offset, rows, fresh = self.epoch + 1, 0, 0, [], True
                self._reset()
                continue
            rows.append(row)
        self.position += 1
        mine = torch.tensor(rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size], dtype=torch.long)
        batch = {"input_ids": mine, "attention_mask": torch.ones_like(mine), "token_type_ids": torch.zeros_like(mine)}
        if self.pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def state_dict(self) -> dict:
        return {"kind": "streaming", "epoch": self.epoch, "text": self.text, "offset": self.offset,
                "position": self.position, "skip": self.skip, "seq_len": self.seq_len, "seed": self.seed,
                "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state) -> None:
        from bertnas.storage.checkpoint import CheckpointError

        if state.get("kind") != "streaming":
            raise CheckpointError("the checkpoint's data came from a map-style corpus and this run streams it; "
                                  "resume with the run's own streaming setting")
        mine = self.state_dict()
        for key in ("batch_size", "world_size", "skip", "seq_len"):
            if state.get(key) != mine[key]:
                raise CheckpointError(
                    f"the checkpoint's data stream had {key}={state.get(key)}, this run has {mine[key]}; resume with "
                    "the same data, --batch-size, --seq-len and number of processes to continue exactly")
        self.epoch, self.text, self.offset = int(state["epoch"]), int(state["text"]), int(state["offset"])
        self.position = int(state.get("position", 0))
        self._reset()
