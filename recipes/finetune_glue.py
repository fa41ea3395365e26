"""Fine-tune one checkpoint on several GLUE tasks (and/or SQuAD); combined table with the GLUE average.

    python recipes/finetune_glue.py --tasks sst2,mrpc,rte,cola,stsb --model PATH_OR_ID --output-dir OUT \
        --max-train-samples 4000 --epochs 2 --override rte:epochs=3

Same options as `bertnas finetune` (see --help), plus `--tasks` and `--override TASK:option=value`.
Writes OUT/<task>/results.json for each task, OUT/summary.json and OUT/results.md.
"""

import sys

from glue.suite import run_recipe

if __name__ == "__main__":
    sys.exit(run_recipe())
