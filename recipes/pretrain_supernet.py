"""Pre-train a hybrid BERT supernet (MLM or ELECTRA; uniform / MAGIC-T walk sampling; MAGIC-A).

    accelerate launch recipes/pretrain_supernet.py --config recipes/configs/toy.yaml --output-dir runs/toy
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/pretrain_supernet.py \
        --config recipes/configs/toy.yaml --output-dir runs/toy2
    accelerate launch --config_file recipes/configs/accelerate_deepspeed_zero2.yaml recipes/pretrain_supernet.py \
        --config recipes/configs/bert_base_magic.yaml
    ... --resume-from-checkpoint latest      # continue a stopped run exactly

Same options as `bertnas pretrain` (see --help and docs/training.md).
"""

import sys

from bertnas.cli.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
