"""`bertnas demo` (`make demo`): the whole flow on the embedded toy default, no download.

1. pre-train the 2-layer toy supernet with MAGIC-T (walk) + MAGIC-A (alignment) on the
   embedded corpus (standard-library docstrings, WordPiece tokenizer trained on the fly);
2. search it by progressive shrinking under a parameter budget;
3. export the best subnet with `save_pretrained` (weights, config, tokenizer, model card);
4. reload the export with plain `AutoModelForMaskedLM` and check it reproduces the supernet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="runs/demo", help="where the run, search and export go")
    parser.add_argument("--max-steps", type=int, default=60, help="pre-training steps of the toy supernet")
    parser.add_argument("--seed", type=int, default=42)


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from bertnas.export import export
    from bertnas.search import search
    from bertnas.storage.checkpoint import find_checkpoint
    from bertnas.pipelines.pretrain import pretrain

    out = Path(args.output_dir)
    print(f"[1/4] pre-training the toy supernet (MAGIC-T walk + MAGIC-A), {args.max_steps} steps -> {out / 'pretrain'}")
    summary = pretrain(
        None, output_dir=str(out / "pretrain"), max_steps=args.max_steps, save_steps=args.max_steps // 2,
        seed=args.seed, sampler="walk", align=True, base_replacement="beat", base_every=10,
        overwrite=True,  # a rerun of the demo starts over (only bertnas's own files are replaced)
    )
    print(f"      final loss {summary['loss']:.3f}, base subnet {summary.get('base_arch')}")

    print(f"[2/4] progressive-shrinking search -> {out / 'search'}")
    results = search(out / "pretrain", method="shrinking", output_dir=out / "search", seed=args.seed)
    best = results[0]
    print(f"      {len(results)} ranked subnets; best {best['arch']} (MLM loss {best['score']:.3f}, "
          f"{best['params']:,} params)")

    print(f"[3/4] exporting the best subnet -> {out / 'export'}")
    folder = export(out / "pretrain", out / "export", results=out / "search" / "results.json", top_k=1,
                    overwrite=True)[0]

    print("[4/4] reloading the export with AutoModelForMaskedLM and comparing with the supernet")
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    supernet = AutoModelForMaskedLM.from_pretrained(find_checkpoint(out / "pretrain") / "model").eval()
    batch = tokenizer(["A supernet shares weights between subnets.", "Search finds the best one."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        exported = model(**batch).logits
        reference = supernet(**batch, arch=best["arch"]).logits
    diff = (exported - reference).abs().max().item()
    print(f"      exported model: {type(model).__name__}, max |logit diff| vs supernet path = {diff:.2e}")
    if diff > 1e-5:
        raise SystemExit(f"the exported subnet does not reproduce the supernet path (max diff {diff})")
    (out / "demo.json").write_text(json.dumps({"pretrain": summary, "best": best, "export": str(folder),
                                               "max_logit_diff": diff}, indent=2, default=str))
    print(f"done: {out / 'demo.json'}")
    return 0
