"""Train a DARTS genotype's evaluation network from scratch (the DARTS CIFAR-10 protocol, scaled).

    python recipes/train_eval_network.py --genotype DARTS_V2 --output-dir runs/darts_v2
    accelerate launch recipes/train_eval_network.py --genotype PC_DARTS_cifar --C 36 --layers 20 --epochs 600

The DARTS recipe: SGD (momentum 0.9, weight decay 3e-4), cosine learning rate from 0.025,
gradient clipping at 5, auxiliary loss weight 0.4, drop-path probability rising linearly to 0.2
over the epochs, random crop + flip. Defaults are tiny (C=8, 5 cells, 2 epochs on the local
CIFAR-10 subset: minutes on a CPU); pass the published settings for a real run. `--genotype`
is a name in `GENOTYPES` or a JSON file holding a genotype / an arch (e.g. a search result).
Writes `OUT/model` (save_pretrained: reloads with AutoModelForImageClassification and
trust_remote_code=True) and `OUT/metrics.json`.
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.nn import functional as F

from bertnas.spaces.darts import GENOTYPES, DartsSpace, Genotype, build_eval_network
from bertnas.tasks.vision import augment, channel_stats, load_images, normalise, resolve_source


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--genotype", default="DARTS_V2", help=f"one of {', '.join(GENOTYPES)}, or a JSON file")
    p.add_argument("--data", default=None, help="an .npz / image folder / datasets name (default: the CIFAR-10 subset)")
    p.add_argument("--output-dir", default="runs/eval_network")
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=3e-4)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--auxiliary-weight", type=float, default=0.4, help="0 drops the auxiliary head")
    p.add_argument("--drop-path-prob", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_genotype(value: str) -> Genotype:
    if value in GENOTYPES:
        return GENOTYPES[value]
    data = json.loads(Path(value).read_text())
    data = data.get("genotype", data.get("arch", data)) if isinstance(data, dict) else data
    if isinstance(data, dict) and "normal" in data:
        return Genotype(**{k: [tuple(x) if isinstance(x, list) else x for x in v] for k, v in data.items()})
    return DartsSpace().genotype(data)


def rank_slice(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s share of an epoch's permutation: every world-th index from its own offset, cut
    to equal lengths (ranks must take the same number of steps)."""
    usable = len(order) - len(order) % world
    return order[:usable][rank::world]


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator()
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    genotype = load_genotype(args.genotype)
    train, test = load_images(resolve_source(args.data), "train"), load_images(resolve_source(args.data), "test")
    mean, std = channel_stats(train.images)
    num_classes = max(len(train.classes), int(train.labels.max()) + 1)
    model = build_eval_network(genotype, C=args.C, layers=args.layers, num_classes=num_classes,
                               auxiliary=args.auxiliary_weight > 0, auxiliary_weight=args.auxiliary_weight,
                               image_size=train.images.shape[-1], num_channels=train.images.shape[1])
    model.config.image_mean, model.config.image_std = mean, std
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = math.ceil((len(train.labels) // world) / args.batch_size)
    total = steps_per_epoch * args.epochs if not args.max_steps else min(args.max_steps, steps_per_epoch * args.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    # Every rank draws the same permutation and trains on its own slice of it (ranks see different
    # images, every image once per epoch); augmentation draws per rank. One process keeps one
    # generator for both, as before.
    generator = torch.Generator().manual_seed(args.seed)
    augment_generator = generator if world == 1 else torch.Generator().manual_seed(args.seed + 7_919 * (rank + 1))
    step, start, losses = 0, time.time(), []
    for epoch in range(args.epochs):
        unwrapped.drop_path_prob = args.drop_path_prob * epoch / args.epochs  # DARTS' linear schedule
        model.train()
        order = rank_slice(torch.randperm(len(train.labels), generator=generator), rank, world)
        for i in range(0, len(order), args.batch_size):
            if step >= total:
                break
            idx = order[i: i + args.batch_size]
            x = normalise(augment(train.images[idx], augment_generator), mean, std).to(accelerator.device)
            loss = model(x, labels=train.labels[idx].to(accelerator.device)).loss
            optimizer.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
        accelerator.print(f"epoch {epoch}: step {step}, train loss {sum(losses[-steps_per_epoch:]) / max(1, len(losses[-steps_per_epoch:])):.4f}")
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test.labels), 256):
            x = normalise(test.images[i: i + 256], mean, std).to(accelerator.device)
            correct += int((model(x).logits.argmax(-1).cpu() == test.labels[i: i + 256]).sum())
    params = sum(p.numel() for k, p in unwrapped.named_parameters() if not k.startswith("auxiliary_head"))
    metrics = {"genotype": genotype._asdict(), "C": args.C, "layers": args.layers, "steps": step,
               "params": params, "train_loss_last": losses[-1] if losses else None,
               "test_accuracy": correct / len(test.labels), "test_rows": len(test.labels),
               "seconds": round(time.time() - start, 1)}
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        accelerator.print(json.dumps({k: v for k, v in metrics.items() if k != "genotype"}))
    return metrics


if __name__ == "__main__":
    main()
