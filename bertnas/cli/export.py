"""`bertnas export`: subnets of a supernet checkpoint as stand-alone models (`bertnas/export.py`)."""

from __future__ import annotations

import argparse

from bertnas.cli import result_stream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--checkpoint", required=True, help="pre-training output dir (latest checkpoint) or a checkpoint-<step> folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help='the arch: JSON list/object (\'["mha12","ffn"]\'), comma-separated ops, '
                                      "or a .json file")
    which.add_argument("--results", help="a search's results.json (or its folder): export its top-k entries")
    a("--top-k", type=int, default=1, help="entries of --results to export (rank-1, rank-2, ...)")
    a("--output-dir", required=True)
    a("--overwrite", action="store_true", help="replace non-empty output folders")
    a("--trust-checkpoint", action="store_true",
      help="read a checkpoint that has no manifest.json (its files cannot be verified)")
    a("--seq-len", type=int, help="sequence length of the FLOPs in the model card (default: the run's)")
    a("--push-to-hub", metavar="REPO_ID", help="upload the exported folder (needs `hf auth login` or HF_TOKEN)")
    a("--private", action="store_true", help="create the Hub repo private")
    a("--no-verify", dest="verify", action="store_false",
      help="skip the check that the export reproduces the supernet path")


def run(args: argparse.Namespace) -> int:
    from bertnas.export import export

    out = result_stream(args)
    folders = export(args.checkpoint, args.output_dir, arch=args.arch, results=args.results, top_k=args.top_k,
                     push_to_hub=args.push_to_hub, private=args.private, seq_len=args.seq_len,
                     overwrite=args.overwrite, verify=args.verify, trust_checkpoint=args.trust_checkpoint)
    for folder in folders:
        print(folder, file=out)
    if args.push_to_hub:
        print(f"pushed {folders[0]} -> https://huggingface.co/{args.push_to_hub}", file=out)
    return 0


__all__ = ["add_arguments", "run"]
