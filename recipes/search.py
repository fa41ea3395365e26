"""Search a pre-trained supernet for the best subnets under a budget, then (optionally) export them.

    python recipes/search.py --checkpoint runs/toy --method shrinking --max-params 70k --output-dir runs/toy-search
    python recipes/search.py --checkpoint runs/toy --method evolution --max-latency-ms 0.4 \
        --latency-table runs/latency.json --output-dir runs/toy-evo
    python recipes/search.py --checkpoint runs/toy --build-latency-table runs/latency.json --seq-len 32
    bertnas export --checkpoint runs/toy --results runs/toy-search/results.json --top-k 3 --output-dir exports

Same options as `bertnas search` (see --help and docs/search.md).
"""

import sys

from bertnas.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
