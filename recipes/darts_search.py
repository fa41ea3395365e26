"""Train a supernet under a search strategy and score what it found, in one run (default
`--strategy darts`); for `accelerate launch` (one GPU, several GPUs, or CPU processes).

    accelerate launch recipes/darts_search.py --space nb201 --max-steps 300 --output-dir runs/nb201-darts
    accelerate launch recipes/darts_search.py --space nb201 --strategy gaea-darts --strategy-option bilevel=false \
        --space-option C=16 --space-option N=5 --max-steps 3000 --output-dir runs/nb201-gaea-erm
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/darts_search.py \
        --space bert --strategy reinforce --max-steps 200 --output-dir runs/bert-reinforce

Same options as `bertnas search --strategy NAME` (see --help and docs/search.md): writes
OUT/results.json, OUT/log.jsonl (architecture weights and entropy per step), OUT/entropy.png.
Every rank takes the same architecture step (gradients all-reduced; RL rewards are computed on
the same held-out batch with the same weights), so the ranks never diverge.
"""

import sys

from bertnas.cli.search import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.split("=")[0] in ("--strategy", "--checkpoint") for a in argv):
        argv = ["--strategy", "darts", *argv]
    sys.exit(main(argv))
