"""`bertnas export`: subnets of a supernet checkpoint as stand-alone models (`bertnas/export.py`)."""

from __future__ import annotations

import argparse

from bertnas.cli import result_stream
from bertnas.core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bertnas.cli.options import add_hf_aliases, add_hub_options

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
    a("--license", help="license in the model card (default: the initial BERT's, from its card)")
    add_hub_options(parser.add_argument_group("the Hub"))
    a("--no-verify", dest="verify", action="store_false",
      help="skip the check that the export reproduces the supernet path")
    add_hf_aliases(parser)


def run(args: argparse.Namespace) -> int:
    from bertnas.cli.options import hub_repo
    from bertnas.export import complete_card, export, push_model_folder

    out = result_stream(args)
    repo = hub_repo(args)
    if repo is not None and (args.results is not None and args.top_k != 1):
        raise UserError(f"--push-to-hub uploads one model; --top-k {args.top_k} would export {args.top_k}",
                        "use --top-k 1 or --arch")
    folders = export(args.checkpoint, args.output_dir, arch=args.arch, results=args.results, top_k=args.top_k,
                     seq_len=args.seq_len, overwrite=args.overwrite, verify=args.verify,
                     trust_checkpoint=args.trust_checkpoint)
    args.result = folders  # what bertnas.export() returns
    for folder in folders:
        if args.license:
            complete_card(folder, {"license": args.license})
        print(folder, file=out)
    if repo is not None:  # after the card is complete
        push_model_folder(folders[0], repo, private=bool(args.private))
        print(f"pushed {folders[0]} -> https://huggingface.co/{repo}", file=out)
    return 0


__all__ = ["add_arguments", "run"]
