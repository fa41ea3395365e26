"""MAGIC-A collapse check at toy scale (docs/training.md, "MAGIC-A"). Not a test.

SPOS vs MAGIC-T(+A) variants on a 4-layer {mha12, ffn, conv3} supernet (81 archs), dropout 0.1,
driving the model and the Aligner directly (no trainer): train MLM loss of the last 200 steps and
the held-out MLM loss of all 81 archs (mean, std: a collapsed supernet scores them all alike).

    .venv/bin/python bench/align_collapse.py new_delay --steps 2000 [--out result.json]
"""
import argparse
import contextlib
import itertools
import json
import random
import time
import warnings
from pathlib import Path

import torch

from bertnas import BertNasConfig, BertNasForMaskedLM, BertSpace
from bertnas.supernet.align import Aligner, step_seed
from bertnas.supernet.sampling import build_sampler
from bertnas.tasks.text_data import load_texts, build_tokenizer, build_lm_splits
from bertnas.tasks.objectives import mask_tokens

VARIANTS = {
    "spos": dict(sampler="uniform", align=False),
    "walk": dict(sampler="walk", align=False),
    # the old behaviour: weight 1, every layer, raw MSE, eval-mode base, no cap
    "old": dict(sampler="walk", align=True, weight=1.0, block_size=1, normalize=False, max_ratio=None, crn=False),
    # the old loss with only CRN
    "old_crn": dict(sampler="walk", align=True, weight=1.0, block_size=1, normalize=False, max_ratio=None, crn=True),
    # fixes alone at the bad setting
    "w1_norm_cap": dict(sampler="walk", align=True, weight=1.0, block_size=1, normalize=True, max_ratio=0.5, crn=True),
    "w1_cap": dict(sampler="walk", align=True, weight=1.0, block_size=1, normalize=False, max_ratio=0.5, crn=True),
    "w1_norm": dict(sampler="walk", align=True, weight=1.0, block_size=1, normalize=True, max_ratio=None, crn=True),
    # the new defaults
    "new": dict(sampler="walk", align=True, weight=0.1, block_size=2, normalize=True, max_ratio=0.5, crn=True),
    "new_delay": dict(sampler="walk", align=True, weight=0.1, block_size=2, normalize=True, max_ratio=0.5, crn=True, start=800, ramp=400),
    "new_raw_delay": dict(sampler="walk", align=True, weight=0.1, block_size=2, normalize=False, max_ratio=0.5, crn=True, start=800, ramp=400),
    "new_raw": dict(sampler="walk", align=True, weight=0.1, block_size=2, normalize=False, max_ratio=0.5, crn=True),
    "new_nocap": dict(sampler="walk", align=True, weight=0.1, block_size=2, normalize=True, max_ratio=None, crn=True),
}

p = argparse.ArgumentParser()
p.add_argument("variant", choices=VARIANTS)
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--replacement", default="population")
p.add_argument("--every", type=int, default=100)
p.add_argument("--out", default=None)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the clone
p.add_argument("--text", default=str(DATA / "text" / "gutenberg" / "austen-emma.txt"))
p.add_argument("--cache", default="runs/align-collapse")
a = p.parse_args()
v = VARIANTS[a.variant]
torch.set_num_threads(1)
torch.manual_seed(a.seed)
texts = load_texts(a.text)
tok = build_tokenizer(None, texts, vocab_size=2000)
train, val = build_lm_splits(texts, tok, 64, 0.05, seed=0, cache_dir=a.cache)
cfg = BertNasConfig(vocab_size=len(tok), hidden_size=96, num_hidden_layers=4, intermediate_size=192,
                    ffn_wide_size=288, max_position_embeddings=64, candidates=["mha12", "ffn", "conv3"],
                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
model = BertNasForMaskedLM(cfg).train()
space = BertSpace(cfg)
sampler = build_sampler(v["sampler"], space, a.seed)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
B = 16
mg = torch.Generator().manual_seed(a.seed + 1)
order = torch.randperm(len(train), generator=torch.Generator().manual_seed(a.seed))
aligner = None
if v["align"]:
    base = space.sample(random.Random(a.seed + 7))
    aligner = Aligner(space, base, block_size=v["block_size"], weight=v["weight"], normalize=v["normalize"],
                      max_ratio=v["max_ratio"], start=v.get("start", 0), ramp=v.get("ramp", 0), replacement=a.replacement, every=a.every, population=8)
warnings.simplefilter("ignore")

@torch.no_grad()
def evaluate(arch, nb=8):
    g = torch.Generator().manual_seed(12345)
    model.eval()
    out = []
    for i in range(nb):
        rows = val[i * 16:(i + 1) * 16]
        masked, labels = mask_tokens(rows["input_ids"], tok, g)
        out.append(float(model(input_ids=masked, attention_mask=rows["attention_mask"], labels=labels, arch=arch).loss))
    model.train()
    return out

log = []
t0 = time.time()
decisions = []
for step in range(a.steps):
    idx = order[(step * B) % (len(order) - B):][:B]
    rows = train[idx]
    arch = sampler.next()
    masked, labels = mask_tokens(rows["input_ids"], tok, mg)
    ctx = aligner.shared_randomness(aligner.randomness_modules(model), step_seed(a.seed, step)) if aligner and v["crn"] else None
    with ctx or contextlib.nullcontext():
        out = model(input_ids=masked, attention_mask=rows["attention_mask"], labels=labels, arch=arch, output_hidden_states=True)
        loss = out.loss
        al = 0.0
        if aligner is not None:
            align = aligner.align_loss(model.bert, {"input_ids": masked, "attention_mask": rows["attention_mask"]}, out.hidden_states)
            term = aligner.weighted(align, out.loss, step)
            loss = loss + term
            al = float(align)
        opt.zero_grad(set_to_none=True)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    log.append((float(out.loss), al))
    if aligner is not None and aligner.due(step + 1):
        rng = random.Random(a.seed * 7919 + step)
        aligner.maybe_replace(step + 1, evaluate, [space.sample(rng) for _ in range(8)])
        d = aligner.last_decision
        decisions.append((d["step"], d["replaced"], d["significant"], round(d["base_score"], 3)))
    if (step + 1) % 200 == 0:
        m = sum(x for x, _ in log[-200:]) / len(log[-200:])
        ma = sum(y for _, y in log[-200:]) / len(log[-200:])
        print(f"{a.variant} step {step+1} mlm {m:.3f} align {ma:.4f} ({time.time()-t0:.0f}s)", flush=True)
allarch = [space.arch(list(c)) for c in itertools.product(["mha12", "ffn", "conv3"], repeat=4)]
scores = {tuple(x.ops): sum(evaluate(x, 4)) / 4 for x in allarch}
vals = torch.tensor(list(scores.values()))
res = {"variant": a.variant, "seed": a.seed, "steps": a.steps, "train_mlm_last200": sum(x for x, _ in log[-200:]) / len(log[-200:]),
       "align_last200": sum(y for _, y in log[-200:]) / len(log[-200:]),
       "heldout_mean": float(vals.mean()), "heldout_std": float(vals.std()), "heldout_min": float(vals.min()),
       "heldout_max": float(vals.max()), "replacements": aligner.replacements if aligner else None,
       "checks": aligner.checks if aligner else None, "decisions": decisions, "time_s": time.time() - t0, "scores": {",".join(k): v for k, v in scores.items()}}
print(json.dumps({k: v for k, v in res.items() if k != "scores"}))
if a.out:
    json.dump(res, open(a.out, "w"))
