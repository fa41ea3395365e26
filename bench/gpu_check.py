"""Everything a GPU loan should check, in one command. Not a test (but `--dry-run` is one).

    python bench/gpu_check.py --output-dir bench/results/gpu          # on a CUDA machine, ~5 min
    python bench/gpu_check.py --dry-run --output-dir runs/gpu_check   # every step, tiny, on the CPU

Prints a table and writes `gpu_check.json` (+ `gpu_check.md`, the table) to --output-dir. Checks, in
order (each runs even when an earlier one failed; a failure is a row with its error):

  env              torch / transformers / deepspeed / flash-attn versions, the GPU, bf16 support
  parity           supernet path, extract() and to_bert() vs BertModel on the same padded batch,
                   fp32 (target <= 1e-5; sdpa and eager), and under bf16 autocast: the gap next to
                   BertModel's own bf16-vs-fp32 gap (target: no more than 2x BERT's)
  attention        sdpa / eager / flash_attention_2 (when flash-attn is installed) / flex_attention
                   on the same padded batch: max |diff| vs sdpa and ms per forward
  train_step       SupernetTrainer's step on the BERT path vs a plain BertForMaskedLM step (AdamW,
                   clipping), bf16, batch 32 x 128 at BERT-base size; alternating rounds. Target
                   ratio <= 1.05; tokens/s and model FLOPs utilisation (6N + 12 L T H per token over
                   the GPU's dense bf16 peak; goal >= 45 %)
  magic_vs_spos    MAGIC-A (walk + alignment) step / SPOS step on the same subnets (<= 1.35)
  host_syncs       device-to-host synchronisations per training step (CUDA: counted with
                   torch.cuda.set_sync_debug_mode; target: the one read of the step's log vector)
  evaluator        held-out scoring of random subnets (bf16 autocast + TF32 on CUDA): archs/s
  nb201            NB201 supernet (C=16, N=5) SPOS step, batch 64 of 32x32 images: images/s
  deepspeed        ZeRO-2 on one device through accelerate (20 steps): off-path candidates
                   bit-identical, and a run resumed at step 10 ends with the uninterrupted run's
                   weights (same hash)

`--dry-run` runs all of it on the CPU at toy sizes (tests/test_gpu_ready.py runs it, with
`--skip deepspeed`: DeepSpeed's CPU ops take a minute to build; tests/test_distributed.py covers
ZeRO on the CPU). Its numbers say nothing about speed; the run says the script works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Dense bf16 peak FLOP/s (no sparsity) of the GPUs a loan may give.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
REAL = dict(layers=12, hidden=768, heads=12, intermediate=3072, seq=128, batch=32, vocab=30522,
            rounds=5, steps=4, warmup=3, small_layers=4, eval_archs=20, nb201_steps=10, nb201_batch=64, ds_steps=20)
TINY = dict(layers=2, hidden=48, heads=4, intermediate=96, seq=16, batch=4, vocab=300,
            rounds=2, steps=2, warmup=1, small_layers=2, eval_archs=3, nb201_steps=2, nb201_batch=4, ds_steps=4)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def padded_batch(vocab: int, batch: int, seq: int, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    for i in range(1, batch, 2):  # every other row padded to a different length
        mask[i, seq // 2 + i % (seq // 2):] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = 1
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}.items()}


def max_diff(a, b, mask) -> float:
    keep = mask.bool()
    return float((a.float() - b.float())[keep].abs().max())


# ----------------------------------------------------------------------------------------
# The checks: each takes (dims, device, workdir) and returns a list of rows
# {"check", "what", "value", "target", "ok", "note"}.
# ----------------------------------------------------------------------------------------


def row(check, what, value, target=None, ok=None, note=""):
    return {"check": check, "what": what, "value": value, "target": target, "ok": ok, "note": note}


def check_env(d, device, work):
    import transformers

    rows = [row("env", "torch", torch.__version__), row("env", "transformers", transformers.__version__),
            row("env", "device", torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                or "cpu")]
    for package in ("deepspeed", "flash_attn", "accelerate"):
        try:
            module = __import__(package)
            rows.append(row("env", package, getattr(module, "__version__", "installed")))
        except Exception as err:  # noqa: BLE001 - any import failure is 'not usable'
            rows.append(row("env", package, None, note=f"not usable: {type(err).__name__}"))
    if device.type == "cuda":
        rows.append(row("env", "bf16 supported", torch.cuda.is_bf16_supported()))
    return rows


def _bert_pair(d, device, attn):
    from transformers import BertConfig, BertModel

    from bertnas import BertNasModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                        num_attention_heads=d["heads"], intermediate_size=d["intermediate"],
                        max_position_embeddings=max(512, d["seq"]), attn_implementation=attn)
    bert = BertModel(config).eval().to(device)
    supernet = BertNasModel.from_bert(bert, candidates=[f"mha{d['heads']}", "ffn", "conv3"]).eval().to(device)
    supernet.config._attn_implementation = attn
    return bert, supernet


def check_parity(d, device, work):
    rows = []
    path = [f"mha{d['heads']}", "ffn"] * d["layers"]
    batch = padded_batch(d["vocab"], min(d["batch"], 8), d["seq"], device)
    mask = batch["attention_mask"]
    for attn in ("sdpa", "eager"):
        bert, supernet = _bert_pair(d, device, attn)
        fixed = supernet.extract(path).eval()
        back = fixed.to_bert().eval()
        with torch.no_grad():
            ref = bert(**batch).last_hidden_state
            outs = {"supernet path": supernet(**batch, arch=path).last_hidden_state,
                    "extract()": fixed(**batch).last_hidden_state, "to_bert()": back(**batch).last_hidden_state}
            for name, out in outs.items():
                diff = max_diff(out, ref, mask)
                rows.append(row("parity", f"fp32 {attn}: {name} vs BertModel", diff, "<= 1e-5", diff <= 1e-5))
            if device.type == "cuda" or attn == "sdpa":  # bf16 autocast (CPU: once, it is slow there)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    ref16 = bert(**batch).last_hidden_state
                    path16 = supernet(**batch, arch=path).last_hidden_state
                bert_gap = max_diff(ref16, ref, mask)
                ours = max_diff(path16, ref, mask)
                rows.append(row("parity", f"bf16 {attn}: BertModel bf16 vs fp32", bert_gap))
                rows.append(row("parity", f"bf16 {attn}: supernet path bf16 vs BertModel fp32", ours,
                                "<= 2x BertModel's gap", ours <= 2 * bert_gap + 1e-6))
        del bert, supernet, fixed, back
    return rows


def check_attention(d, device, work):
    from transformers import BertConfig

    from bertnas import BertNasModel

    rows = []
    torch.manual_seed(0)
    heads = d["heads"]
    config_kwargs = dict(vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=2 * d["small_layers"],
                         candidates=[f"mha{heads}", "ffn"], intermediate_size=d["intermediate"],
                         max_position_embeddings=max(512, d["seq"]))
    from bertnas import BertNasConfig

    base = BertNasModel(BertNasConfig(**config_kwargs)).eval().to(device)
    path = [f"mha{heads}", "ffn"] * d["small_layers"]
    batch = padded_batch(d["vocab"], d["batch"], d["seq"], device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ref = None
    backends = ["sdpa", "eager", "flex_attention"]
    with contextlib.suppress(ImportError):
        import flash_attn  # noqa: F401

        if device.type == "cuda":
            backends.insert(1, "flash_attention_2")
    del BertConfig
    for attn in backends:
        if attn == "flex_attention" and device.type != "cuda":
            rows.append(row("attention", attn, None, note="not on the CPU dry run: its first call compiles for minutes"))
            continue
        try:
            base.config._attn_implementation = attn
            model = base.to(dtype)
            with torch.no_grad():
                out = model(**batch, arch=path).last_hidden_state
                ms = 1000 * statistics.median(timed(lambda: model(**batch, arch=path), device) for _ in range(3))
            if ref is None:
                ref = out
            diff = max_diff(out, ref, batch["attention_mask"])
            tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-4
            rows.append(row("attention", f"{attn} ({str(dtype)[6:]}): max |diff| vs sdpa", diff, f"<= {tolerance:g}",
                            diff <= tolerance, note=f"{ms:.2f} ms / forward"))
        except Exception as err:  # noqa: BLE001 - a backend that does not run is a row, not a crash
            rows.append(row("attention", f"{attn}", None, ok=False, note=f"{type(err).__name__}: {str(err)[:160]}"))
    base.config._attn_implementation = "sdpa"
    return rows


def _trainer(d, work, name, device, layers=None, **overrides):
    from bertnas.pipelines.pretrain import build_trainer
    from bertnas.train.config import load_config

    heads = d["heads"]
    layers = layers or d["layers"]
    options = dict(
        output_dir=str(work / name), progress=False, max_steps=10**6, save_steps=0, seed=0,
        model=dict(num_hidden_layers=2 * layers, hidden_size=d["hidden"], intermediate_size=d["intermediate"],
                   max_position_embeddings=max(512, d["seq"]), candidates=[f"mha{heads}", "mha6", "ffn", "ffn_wide",
                                                                          "conv3"],
                   hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
        seq_len=d["seq"], batch_size=d["batch"], tokenizer_vocab_size=d["vocab"], task="mlm",
        sampler="uniform", align=False, base_replacement="none", warmup_steps=10, lr=1e-4,
        align_start=0, align_ramp=0, mixed_precision="bf16" if device.type == "cuda" else "no",
    )
    options.update(overrides)
    return build_trainer(load_config(options))


def _bert_mlm_step(d, vocab, device):
    """A plain BertForMaskedLM training step: what a transformers user runs (AdamW, clipping, bf16)."""
    from transformers import BertConfig, BertForMaskedLM

    from bertnas.tasks.objectives import mask_tokens

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                        num_attention_heads=d["heads"], intermediate_size=d["intermediate"],
                        max_position_embeddings=max(512, d["seq"]))
    model = BertForMaskedLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (d["batch"], d["seq"]), generator=g)
    special = type("Tok", (), {"mask_token_id": 4, "all_special_ids": [0, 1, 2, 3, 4], "__len__": lambda s: vocab})()
    masked, labels = mask_tokens(ids, special, g)
    batch = {"input_ids": masked.to(device), "labels": labels.to(device)}
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext)

    def step():
        with autocast if device.type == "cuda" else contextlib.nullcontext():
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def check_train_step(d, device, work):
    trainer = _trainer(d, work, "path", device)
    path = trainer.space.arch([f"mha{d['heads']}", "ffn"] * d["layers"])
    vocab = trainer.model.config.vocab_size
    bert, bert_step = _bert_mlm_step(d, vocab, device)
    variants = {"supernet": lambda: trainer._train_step(path), "bert": bert_step}
    for fn in variants.values():
        for _ in range(d["warmup"]):
            fn()
    times = {k: [] for k in variants}
    ratios = []
    for r in range(d["rounds"]):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        medians = {}
        for name in order:
            medians[name] = statistics.median(timed(variants[name], device) for _ in range(d["steps"]))
            times[name].append(medians[name])
        ratios.append(medians["supernet"] / medians["bert"])
    step_s = {k: statistics.median(v) for k, v in times.items()}
    tokens = d["batch"] * d["seq"]
    n_params = sum(p.numel() for p in bert.parameters())
    flops_per_token = 6 * n_params + 12 * d["layers"] * d["seq"] * d["hidden"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    ratio = statistics.median(ratios)
    rows = [row("train_step", "supernet path step / BertForMaskedLM step", ratio, "<= 1.05", ratio <= 1.05,
                note=f"[{min(ratios):.3f}, {max(ratios):.3f}] over {len(ratios)} rounds; "
                     f"{1000 * step_s['supernet']:.1f} vs {1000 * step_s['bert']:.1f} ms")]
    for key in ("supernet", "bert"):
        per_s = tokens / step_s[key]
        mfu = per_s * flops_per_token / peak if peak else None
        rows.append(row("train_step", f"{key}: tokens/s", per_s))
        rows.append(row("train_step", f"{key}: model FLOPs utilisation", mfu, ">= 0.45" if peak else None,
                        None if mfu is None else mfu >= 0.45, note="" if peak else "peak FLOP/s unknown here"))
    trainer.close()
    del bert
    return rows


def check_magic_vs_spos(d, device, work):
    layers = d["small_layers"]
    spos = _trainer(d, work, "spos", device, layers=layers)
    magic = _trainer(d, work, "magic", device, layers=layers, sampler="walk", align=True,
                     base_arch=[f"mha{d['heads']}", "ffn"] * layers)
    rng = random.Random(0)
    for t in (spos, magic):
        for _ in range(d["warmup"]):
            t._train_step(spos.space.sample(rng))
    ratios = []
    for r in range(d["rounds"]):
        archs = [spos.space.sample(rng) for _ in range(d["steps"])]
        order = [spos, magic] if r % 2 == 0 else [magic, spos]
        med = {}
        for t in order:
            med[id(t)] = statistics.median(timed(lambda a=a: t._train_step(a), device) for a in archs)
        ratios.append(med[id(magic)] / med[id(spos)])
    ratio = statistics.median(ratios)
    rows = [row("magic_vs_spos", "MAGIC-A step / SPOS step", ratio, "<= 1.35", ratio <= 1.35,
                note=f"[{min(ratios):.3f}, {max(ratios):.3f}], {2 * layers} chain layers")]
    rows += check_host_syncs(spos, magic, device)
    rows += check_evaluator(d, spos, device)
    spos.close()
    magic.close()
    return rows


def check_host_syncs(spos, magic, device):
    """Synchronisations per step: CUDA's sync debug mode warns at each; on the CPU nothing syncs
    (the row says so)."""
    if device.type != "cuda":
        return [row("host_syncs", "syncs per training step", None, note="CUDA only (sync debug mode)")]
    import warnings

    rows = []
    for name, t in (("SPOS", spos), ("MAGIC-A", magic)):
        arch = t.space.sample(random.Random(5))
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                t._train_step(arch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        where = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})
        rows.append(row("host_syncs", f"{name}: syncs in one training step", len(syncs), "<= 2", len(syncs) <= 2,
                        note=", ".join(where[:6])))
    return rows


def check_evaluator(d, trainer, device):
    evaluator = trainer.evaluator()
    seen = {}
    real_loss = evaluator.loss_fn

    def spy(model, batch, ops):  # what precision scoring runs under
        if device.type == "cuda":
            seen["autocast"] = torch.is_autocast_enabled("cuda")
            seen["tf32"] = torch.backends.cuda.matmul.allow_tf32
        return real_loss(model, batch, ops)

    evaluator.loss_fn = spy
    rng = random.Random(3)
    archs = [trainer.space.sample(rng) for _ in range(d["eval_archs"])]
    evaluator(archs[0])
    seconds = timed(lambda: [evaluator(a) for a in archs[1:]], device)
    scores = [evaluator(a) for a in archs]
    finite = all(s == s and abs(s) != float("inf") for s in scores)
    fast = device.type != "cuda" or (seen.get("autocast") and seen.get("tf32"))
    return [row("evaluator", "held-out scoring: archs/s", (len(archs) - 1) / seconds, ok=bool(finite and fast),
                note=f"{len(evaluator.batches)} batches of {d['batch']} x {d['seq']}; scores finite: {finite}; "
                     f"autocast / TF32 while scoring: {seen or 'CPU, none'}")]


def check_nb201(d, device, work):
    from bertnas.models.configuration_nb201 import Nb201Config
    from bertnas.models.modeling_nb201 import Nb201ForImageClassification
    from bertnas.spaces.nb201 import Nb201Space

    torch.manual_seed(0)
    config = Nb201Config(init_channels=16 if device.type == "cuda" else 4,
                         cells_per_stage=5 if device.type == "cuda" else 1, num_labels=10)
    model = Nb201ForImageClassification(config).to(device).train()
    space = Nb201Space()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    batch = d["nb201_batch"]
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    labels = torch.randint(0, 10, (batch,), generator=g).to(device)
    rng = random.Random(0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step():
        with autocast:
            loss = model(pixel_values=images, labels=labels, arch=space.sample(rng)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    seconds = timed(lambda: [step() for _ in range(d["nb201_steps"])], device)
    return [row("nb201", "NB201 supernet SPOS step: images/s", batch * d["nb201_steps"] / seconds,
                note=f"C={config.init_channels}, N={config.cells_per_stage}, batch {batch}, bf16 on CUDA")]


DS_WORKER = """
import json, sys
import torch
from deepspeed.utils import safe_get_full_fp32_param
from bertnas.train.config import load_config
from bertnas.pipelines.pretrain import build_trainer

options = json.loads(sys.argv[1])
t = build_trainer(load_config(options))
heads = options["model"]["candidates"][0]
a_only = ("encoder.layers.0.ops.conv3.", f"encoder.layers.1.ops.{heads}.")
named = list(t.model.named_parameters())
t._train_step(t.space.arch(["conv3", heads] * (len(t.space.choices) // 2)))
snap = lambda: {n: (p.detach().clone(), safe_get_full_fp32_param(p).clone()) for n, p in named if any(s in n for s in a_only)}
before = snap()
for _ in range(options["max_steps"] - 1):
    ops = ["ffn", "ffn_wide"] * (len(t.space.choices) // 2)
    t._train_step(t.space.arch(ops))
after = snap()
result = {"a_only": len(before), "unchanged": sum(torch.equal(before[n][0], after[n][0]) for n in before),
          "master_unchanged": sum(torch.equal(before[n][1], after[n][1]) for n in before)}
if t.rank == 0:
    with open(options["output_dir"] + ".json", "w") as f:
        json.dump(result, f)
t.close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_deepspeed(d, device, work):
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return [row("deepspeed", "ZeRO-2", None, ok=False, note=f"deepspeed not usable: {type(err).__name__}")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if device.type != "cuda":
        env["DS_ACCELERATOR"] = "cpu"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(ROOT / "recipes/configs/accelerate_deepspeed_zero2.yaml"), "--num_processes", "1"]
    heads = f"mha{d['heads']}"
    layers = d["small_layers"]
    model = dict(num_hidden_layers=2 * layers, hidden_size=d["hidden"], intermediate_size=d["intermediate"],
                 max_position_embeddings=max(512, d["seq"]), candidates=[heads, "ffn", "ffn_wide", "conv3"],
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    options = dict(output_dir=str(work / "ds_offpath"), progress=False, max_steps=d["ds_steps"], save_steps=0,
                   seed=0, model=model, seq_len=d["seq"], batch_size=d["batch"], tokenizer_vocab_size=d["vocab"],
                   align=False, warmup_steps=1, deepspeed=str(ROOT / "recipes/configs/deepspeed_zero2.json"),
                   mixed_precision="bf16" if device.type == "cuda" else "no")
    script = work / "ds_offpath.py"
    script.write_text(DS_WORKER)
    rows = []

    def launch(args, timeout=420):
        done = subprocess.run([*accelerate, "--main_process_port", str(_free_port()), *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr[-600:]}")
        return done

    launch([str(script), json.dumps(options)])
    result = json.loads(Path(options["output_dir"] + ".json").read_text())
    ok = result["a_only"] > 0 and result["unchanged"] == result["master_unchanged"] == result["a_only"]
    rows.append(row("deepspeed", f"ZeRO-2, {d['ds_steps']} steps: off-path tensors bit-identical",
                    f"{result['unchanged']}/{result['a_only']} (fp32 masters {result['master_unchanged']})",
                    "all", ok))

    # Resume: an uninterrupted run and one resumed from its step-half checkpoint end with one hash.
    half = d["ds_steps"] // 2
    cli = ["-m", "bertnas.cli", "pretrain", "--no-progress", "--seq-len", str(d["seq"]), "--batch-size",
           str(d["batch"]), "--max-steps", str(d["ds_steps"]), "--save-steps", str(half), "--verify-ranks",
           "--no-align", "--deepspeed", str(ROOT / "recipes/configs/deepspeed_zero2.json"),
           "--set", f"model.num_hidden_layers={2 * layers}", "--set", f"model.hidden_size={d['hidden']}",
           "--set", f"model.intermediate_size={d['intermediate']}", "--set", f"tokenizer_vocab_size={d['vocab']}"]
    if device.type == "cuda":
        cli += ["--mixed-precision", "bf16"]
    full, resumed = work / "ds_full", work / "ds_resumed"
    launch([*cli, "--output-dir", str(full)])
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns(f"checkpoint-{d['ds_steps']:08d}", "summary*.json",
                                                                 "*.lock", "lock"))
    log = resumed / "log.jsonl"
    if log.is_file():  # the resumed run writes steps half+1.. again
        log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:half]))
    launch([*cli, "--output-dir", str(resumed), "--resume-from-checkpoint", "latest"])
    a = json.loads((full / "summary.json").read_text())["param_sha256"]
    b = json.loads((resumed / "summary.json").read_text())["param_sha256"]
    rows.append(row("deepspeed", f"ZeRO-2 resumed at step {half}: final weights equal the uninterrupted run's",
                    a == b, True, a == b, note=f"{a[:12]} vs {b[:12]}"))
    return rows


SPEED_CHECKS = ("train_step", "magic_vs_spos")  # their targets mean something on the GPU only
CHECKS = {"env": check_env, "parity": check_parity, "attention": check_attention, "train_step": check_train_step,
          "magic_vs_spos": check_magic_vs_spos, "nb201": check_nb201, "deepspeed": check_deepspeed}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(rows) -> str:
    lines = ["| check | what | value | target | ok | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        ok = {True: "yes", False: "**NO**", None: ""}[r["ok"]]
        lines.append(f"| {r['check']} | {r['what']} | {fmt(r['value'])} | {fmt(r['target'])} | {ok} | {r['note']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every check on the CPU at toy sizes")
    parser.add_argument("--output-dir", default="bench/results/gpu", help="where gpu_check.json / .md go")
    parser.add_argument("--skip", action="append", default=[], choices=list(CHECKS), help="leave a check out")
    parser.add_argument("--only", action="append", default=[], choices=list(CHECKS), help="run only these")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", torch.cuda.current_device())
    dims = TINY if args.dry_run else REAL
    if args.dry_run:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in (args.only or CHECKS) if n not in args.skip]
    rows, started = [], time.time()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name in names:
            t0 = time.time()
            try:
                (Path(tmp) / name).mkdir()
                got = CHECKS[name](dims, device, Path(tmp) / name)
            except Exception as err:  # noqa: BLE001 - the other checks still run
                got = [row(name, "error", None, ok=False, note=f"{type(err).__name__}: {str(err)[:300]}")]
                traceback.print_exc()
            for r in got:
                r.setdefault("seconds", round(time.time() - t0, 1))
                if args.dry_run and name in SPEED_CHECKS and r["ok"] is not None and r["what"] != "error":
                    r["ok"], r["note"] = None, f"dry run: speed not judged; {r['note']}"
            rows += got
            print(f"[{time.time() - started:6.1f} s] {name}: {len(got)} rows", file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    result = {"dry_run": args.dry_run, "device": str(device), "seconds": round(time.time() - started, 1),
              "host": socket.gethostname(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "dims": dims, "rows": rows,
              "failed": [f"{r['check']}: {r['what']}" for r in rows if r["ok"] is False]}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = table(rows)
    (out / "gpu_check.md").write_text(text + "\n")
    print(text)
    print(f"\n{len(rows)} rows, {len(result['failed'])} failed, {result['seconds']} s; "
          f"{out / 'gpu_check.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
