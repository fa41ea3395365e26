"""Distil a BERT into small searched BERTs, one per budget of non-embedding parameters.

    python recipes/compress.py --teacher bert-base-uncased --budgets 5M,10M,30M,60M --corpus wikitext:wikitext-103-raw-v1 \
        --steps 100000 --output-dir runs/compress --config recipes/compress.yaml
    accelerate launch recipes/compress.py --teacher ... --output-dir runs/compress --config recipes/compress.yaml
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/compress.py ...
    ... --resume-from-checkpoint latest      # continue a stopped distillation exactly

Same options as `bertnas compress` (see --help and docs/compress.md). Under accelerate every
process distils; the search and the exports run on the main process.
"""

import sys

from bertnas.cli.compress import main

if __name__ == "__main__":
    sys.exit(main())
