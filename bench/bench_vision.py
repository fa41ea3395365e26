"""Vision supernet throughput, side by side in one run (issue 24). Not a test.

    .venv/bin/python bench/bench_vision.py                 # C=16, N=5, batch 64, 1 thread (~25 min)
    .venv/bin/python bench/bench_vision.py --quick         # tiny dims, the CIFAR subset, ~3 min

Every pair alternates its two sides call by call (the side that starts flips each round) so that
neighbouring calls see the same load; a ratio is the median of per-round ratios, [min, max] with
it, and the ratio of the best (minimum) times as a second estimate (other jobs only add time).
The load average is recorded beside every section. Sections:

- `path_vs_standalone`: one optimizer step of a supernet path (`model(arch=...)`, AdamW over
  the supernet) / the same arch as a stand-alone module (`extract(arch)`) in a plain PyTorch
  loop (logits -> cross-entropy -> backward -> AdamW), same batch in memory. Target <= 1.05.
- `trainer_vs_bare`: `SupernetTrainer._train_step` (SPOS: batch from the stream, uint8 ->
  augmentation -> normalisation, forward with hidden states, backward, clipping, AdamW, the
  step's one host read) / the model's bare step on an augmented, normalised batch already in
  memory. Target <= 1.05.
- `spos_vs_reference`: the bertnas trainer's SPOS step / NNI 3.0's NB201 space (`NasBench201`)
  made a supernet by its random one-shot strategy (`RandomOneShot().mutate_model`, one
  `resample()` per step as its Lightning module does; the Lightning loop itself left out, which
  only favours NNI), same C, N, batch, threads and optimizer. NNI is installed by this script into
  a side virtual environment (`--nni-env`, never a project dependency) that sees this
  environment's torch; if it cannot be installed or run, the JSON says why and a hand-written
  reference NB201 supernet (below) takes its place. Target < 1.0.
- `model_variants`: the bare step with each speed-up taken away: NCHW instead of channels_last,
  NCHW with `nn.AvgPool2d` as avg_pool_3x3 (the old op), and channels_last with compiled ops
  (`space_options.compile`); ratios to the default (channels_last, box-filter pool, eager).
- `pretrain`: images/s of `bertnas pretrain --space nb201` (C, N, batch, 1 thread, uniform
  sampler), this tree against `--base` (default c25cae7, the commit before issue 24, checked out
  as a `git worktree` under runs/), alternating short runs of each (`--pretrain-steps` steps; a
  run's figure is batch / median `step_time_s` of its log after its first 2 steps, so start-up
  and data loading are not counted). Target >= 2.0.

Results: bench/results/bench_vision.json (bench_vision_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
FULL_CIFAR10 = REPO.parent / "shared" / "data" / "vision" / "cifar10_jpeg" / "cifar10-jpeg.zip"
SUBSET = REPO.parent / "shared" / "data" / "vision" / "cifar10_subset" / "cifar10_subset_5k_1k.npz"
BASE = "c25cae7"
NNI_PACKAGES = ["nni==3.0", "pytorch-lightning>=2.0,<2.1", "setuptools<81"]  # lightning_fabric needs pkg_resources
TARGETS = {"path_vs_standalone": ("<=", 1.05), "trainer_vs_bare": ("<=", 1.05), "spos_vs_reference": ("<", 1.0),
           "pretrain_speedup": (">=", 2.0)}


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def summarise(a: list[float], b: list[float]) -> dict:
    """Per-round medians a / b: {"ratio": median, "min", "max", "best_ratio": min(a) / min(b), ...}."""
    ratios = [x / y for x, y in zip(a, b)]
    return {"ratio": round(statistics.median(ratios), 4), "min": round(min(ratios), 4), "max": round(max(ratios), 4),
            "best_ratio": round(min(a) / min(b), 4), "a_median_s": round(statistics.median(a), 5),
            "b_median_s": round(statistics.median(b), 5), "rounds": len(ratios)}


def alternate(sides: dict, rounds: int, calls: int, archs) -> dict:
    """sides: name -> fn(arch) -> seconds. Each round: one arch, `calls` calls per side,
    alternating call by call, the first side rotating by round. Returns name -> per-round medians."""
    names = list(sides)
    out = {n: [] for n in names}
    for r in range(rounds):
        arch = archs[r % len(archs)]
        order = names[r % len(names):] + names[:r % len(names)]
        times = {n: [] for n in names}
        for c in range(calls):
            for n in (order if c % 2 == 0 else order[::-1]):
                times[n].append(sides[n](arch))
        for n in names:
            out[n].append(statistics.median(times[n]))
    return out


# ----------------------------------------------------------------------------------------
# bertnas side
# ----------------------------------------------------------------------------------------


def make_trainer(args, output_dir: str, **space_options):
    from bertnas.pipelines.pretrain import build_trainer
    from bertnas.train.config import load_config

    cfg = load_config(dict(output_dir=output_dir, space="nb201", data=str(args.data), seed=0, max_steps=10_000,
                           batch_size=args.batch_size, lr=3e-3, warmup_steps=0, val_fraction=0.5, data_seed=0,
                           eval_batches=1, progress=False, sampler="uniform",
                           space_options={"C": args.channels, "N": args.cells, "calibration_batches": 1,
                                          **space_options}))
    return build_trainer(cfg)


def bare_step_fn(model, x, y):
    """The model's own step on tensors in memory: forward (loss inside), backward, AdamW, zero."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

    def step(arch):
        t0 = time.perf_counter()
        out = model(pixel_values=x, labels=y, arch=arch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def section_path_vs_standalone(args, trainer, x, y, archs) -> dict:
    import torch
    from torch.nn import functional as F

    model = trainer.model
    supernet = bare_step_fn(model, x, y)
    extracted = {}

    def standalone(arch):
        key = tuple(arch.ops)
        if key not in extracted:
            extracted.clear()
            sub = model.extract(arch).train()
            extracted[key] = (sub, torch.optim.AdamW(sub.parameters(), lr=3e-3, weight_decay=0.01))
            standalone(arch)  # warm-up of a fresh module and optimizer: not timed
        sub, opt = extracted[key]
        t0 = time.perf_counter()
        logits = sub(pixel_values=x).logits
        F.cross_entropy(logits, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    before = load()
    times = alternate({"supernet_path": supernet, "standalone": standalone}, args.rounds, args.calls, archs)
    return {**summarise(times["supernet_path"], times["standalone"]), "load_before": before, "load_after": load(),
            "times_s": times, "what": "supernet path step / extract(arch) in a plain PyTorch loop, same batch"}


def section_trainer_vs_bare(args, trainer, x, y, archs) -> dict:
    bare = bare_step_fn(trainer.model, x, y)

    def trainer_step(arch):
        t0 = time.perf_counter()
        trainer._train_step(arch)
        return time.perf_counter() - t0

    before = load()
    times = alternate({"trainer": trainer_step, "bare": bare}, args.rounds, args.calls, archs)
    return {**summarise(times["trainer"], times["bare"]), "load_before": before, "load_after": load(),
            "times_s": times, "what": "SupernetTrainer._train_step / the model's bare step on a batch in memory"}


def section_model_variants(args, trainer, x, y, archs) -> dict:
    """The default bare step against copies of the same weights with one speed-up taken away."""
    import copy

    import torch
    from torch import nn

    from bertnas.models.modeling_nb201 import AvgPool3x3
    from bertnas.tasks.vision import compile_candidate_ops

    base = trainer.model
    nchw = x.contiguous()

    def clone():
        return copy.deepcopy(base)

    old_pool = clone()
    for module in old_pool.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, AvgPool3x3):
                setattr(module, name, nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
    sides = {"default": bare_step_fn(clone(), x, y), "nchw": bare_step_fn(clone(), nchw, y),
             "nchw_avgpool2d": bare_step_fn(old_pool, nchw, y)}
    compile_s = None
    if not args.skip_compile:
        compiled = clone()
        compile_candidate_ops(compiled)
        sides["compiled"] = bare_step_fn(compiled, x, y)
        t0 = time.perf_counter()
        warm = [a for a in archs if {"nor_conv_1x1", "nor_conv_3x3"} <= set(a.ops)][:1] or archs[:1]
        for arch in warm:  # compiles every conv graph of every stage (both kinds are on the path)
            sides["compiled"](arch)
        compile_s = round(time.perf_counter() - t0, 1)
    before = load()
    times = alternate(sides, args.rounds, args.calls, archs)
    out = {"load_before": before, "load_after": load(), "times_s": times, "compile_warmup_s": compile_s,
           "torch_threads": torch.get_num_threads()}
    for name in sides:
        if name != "default":
            out[f"{name}_over_default"] = summarise(times[name], times["default"])
    return out


# ----------------------------------------------------------------------------------------
# reference supernets: NNI 3.0 in a side environment, or a hand-written one
# ----------------------------------------------------------------------------------------


def nni_python(args) -> tuple[str | None, str]:
    """The side environment's python with NNI 3.0 importable (installed on first use), or None
    and why not."""
    env = Path(args.nni_env)
    python = env / "bin" / "python"
    check = [str(python), "-W", "ignore", "-c",
             "import nni, torch; from nni.nas.hub.pytorch import NasBench201; "
             "from nni.nas.strategy import RandomOneShot; print(nni.__version__, torch.__version__)"]
    if python.is_file():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0:
            return str(python), done.stdout.strip()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True, text=True)
        site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        env_site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
        # this environment's torch (and numpy, ...) after the side environment's own packages
        Path(env_site, "zz_bertnas_torch.pth").write_text(site + "\n")
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", *NNI_PACKAGES], capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            return None, f"pip install {' '.join(NNI_PACKAGES)} failed: {done.stderr.strip()[-800:]}"
    except (subprocess.SubprocessError, OSError) as err:
        return None, f"the side environment {env} could not be made: {err}"
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"NNI installed but does not import on this torch: {done.stderr.strip()[-800:]}"
    return str(python), done.stdout.strip()


def nni_worker(batch_path: str, channels: int, cells: int, threads: int) -> None:
    """Runs in the side environment: NNI's NB201 supernet under its random one-shot strategy;
    reads 'n' lines from stdin, answers n step times (JSON) per line."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    from nni.nas.hub.pytorch import NasBench201
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
    from nni.nas.strategy import RandomOneShot

    x, y = torch.load(batch_path)
    torch.manual_seed(0)
    space = NasBench201(stem_out_channels=channels, num_modules_per_stack=cells, num_labels=10)
    RandomOneShot().mutate_model(space)  # in place: every LayerChoice a PathSamplingLayer
    space.train()
    modules = [m for m in space.modules() if isinstance(m, BaseSuperNetModule)]
    opt = torch.optim.AdamW(space.parameters(), lr=3e-3, weight_decay=0.01)

    def step():
        t0 = time.perf_counter()
        sample = {}
        for m in modules:  # RandomSamplingLightningModule.resample()
            sample.update(m.resample(memo=sample))
        F.cross_entropy(space(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    step()
    print(json.dumps({"ready": True, "params": sum(p.numel() for p in space.parameters()),
                      "supernet_modules": len(modules)}), flush=True)
    for line in sys.stdin:
        n = int(line)
        print(json.dumps([step() for _ in range(n)]), flush=True)


def reference_nb201(channels: int, cells: int, classes: int = 10):
    """A hand-written NB201 supernet as the NB201 authors' code writes it (NCHW, nn.AvgPool2d,
    every edge a ModuleList of the five ops, a random op index per edge per step)."""
    if True:  # (one indentation level for the nested classes)
        import torch
        from torch import nn

        def relu_conv_bn(c, k, stride=1):
            return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, stride, k // 2, bias=False), nn.BatchNorm2d(c))

        class Zero(nn.Module):
            def forward(self, x):
                return x.mul(0.0)

        def ops(c):
            return nn.ModuleList([Zero(), nn.Identity(), relu_conv_bn(c, 1), relu_conv_bn(c, 3),
                                  nn.AvgPool2d(3, 1, 1, count_include_pad=False)])

        class Cell(nn.Module):
            def __init__(self, c):
                super().__init__()
                self.edges = nn.ModuleList([ops(c) for _ in range(6)])

            def forward(self, x, arch):
                nodes, e = [x], 0
                for j in range(1, 4):
                    total = 0
                    for i in range(j):
                        total = total + self.edges[e][arch[e]](nodes[i])
                        e += 1
                    nodes.append(total)
                return nodes[-1]

        class Reduce(nn.Module):
            def __init__(self, c_in, c_out):
                super().__init__()
                self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out))
                self.b = relu_conv_bn(c_out, 3)
                self.down = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

            def forward(self, x, arch):
                return self.down(x) + self.b(self.a(x))

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                c = channels
                self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
                blocks = []
                for stage, width in enumerate((c, 2 * c, 4 * c)):
                    if stage:
                        blocks.append(Reduce(width // 2, width))
                    blocks += [Cell(width) for _ in range(cells)]
                self.cells = nn.ModuleList(blocks)
                self.last = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU())
                self.classifier = nn.Linear(4 * c, classes)

            def forward(self, x, arch):
                h = self.stem(x)
                for block in self.cells:
                    h = block(h, arch)
                return self.classifier(self.last(h).mean((2, 3)))

        torch.manual_seed(0)
        return Net()


def section_spos_vs_reference(args, trainer, x, y, archs) -> dict:
    import torch
    from torch.nn import functional as F

    def bertnas_step(arch):
        t0 = time.perf_counter()
        trainer._train_step(arch)
        return time.perf_counter() - t0

    info: dict = {}
    python, why = (None, "--skip-nni") if args.skip_nni else nni_python(args)
    worker = None
    if python is not None:
        info["nni"] = why  # "3.0 <torch version>"
        batch = Path(tempfile.mkdtemp()) / "batch.pt"
        torch.save((x.contiguous(), y), batch)  # NNI's own layout: NCHW
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": ""}
        worker = subprocess.Popen([python, "-W", "ignore", __file__, "--nni-worker", str(batch), str(args.channels),
                                   str(args.cells), str(args.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        first = worker.stdout.readline()
        try:
            info["nni_supernet"] = json.loads(first)
        except json.JSONDecodeError:
            worker.kill()
            why = f"NNI's NB201 random one-shot supernet did not run: {worker.stderr.read()[-800:]}"
            python, worker = None, None
    if worker is not None:
        def reference(arch):
            worker.stdin.write("1\n")
            worker.stdin.flush()
            return json.loads(worker.stdout.readline())[0]

        info["reference"] = "NNI 3.0 NasBench201 + RandomOneShot (side environment, its own process)"
    else:
        info["nni_unavailable"] = why
        info["reference"] = "hand-written NB201 supernet in this bench (NCHW, nn.AvgPool2d, ModuleList edges)"
        net = reference_nb201(args.channels, args.cells)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
        nchw = x.contiguous()
        rng = random.Random(1)

        def reference(arch):
            t0 = time.perf_counter()
            path = [rng.randrange(5) for _ in range(6)]
            F.cross_entropy(net(nchw, path), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        reference(None)
    before = load()
    try:
        times = alternate({"bertnas": bertnas_step, "reference": reference}, args.rounds, args.calls, archs)
    finally:
        if worker is not None:
            worker.stdin.close()
            worker.wait(timeout=60)
    return {**summarise(times["bertnas"], times["reference"]), **info, "load_before": before, "load_after": load(),
            "times_s": times, "what": "bertnas trainer SPOS step / the reference supernet's random-path step"}


# ----------------------------------------------------------------------------------------
# bertnas pretrain: this tree against the base commit
# ----------------------------------------------------------------------------------------


def base_tree(args) -> Path:
    """A `git worktree` of --base under runs/ (made once, then reused)."""
    path = REPO / "runs" / "bench_vision" / f"base-{args.base}"
    if not (path / "bertnas").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(path), args.base],
                       check=True, capture_output=True, text=True)
    return path


def pretrain_run(args, tree: Path, output_dir: Path) -> dict:
    cmd = [sys.executable, "-c", "import sys; from bertnas.cli import main; sys.exit(main())", "pretrain",
           "--space", "nb201", "--data", str(args.data), "--batch-size", str(args.batch_size),
           "--max-steps", str(args.pretrain_steps), "--save-steps", str(args.pretrain_steps), "--sampler", "uniform",
           "--seed", "0", "--data-seed", "0", "--output-dir", str(output_dir), "--overwrite", "--no-progress",
           "--logging-steps", str(args.pretrain_steps), "--set", "val_fraction=0.5", "--set", "eval_batches=1",
           "--set", f"space_options={{C: {args.channels}, N: {args.cells}, calibration_batches: 1}}"]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    before = load()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree))
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"bertnas pretrain in {tree} failed: {done.stderr[-1500:]}")
    steps = [json.loads(line)["step_time_s"] for line in (output_dir / "log.jsonl").read_text().splitlines()]
    timed = steps[2:] if len(steps) > 3 else steps
    median = statistics.median(timed)
    return {"images_per_s": round(args.batch_size / median, 2), "median_step_s": round(median, 4),
            "best_step_s": round(min(timed), 4), "wall_s": round(wall, 1), "load_before": before, "load_after": load(),
            "step_times_s": [round(s, 4) for s in steps]}


def section_pretrain(args) -> dict:
    base = base_tree(args)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="bench_vision_"))
    runs = {"base": [], "this": []}
    try:
        for r in range(args.pretrain_rounds):
            order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
            for side in order:
                tree = base if side == "base" else REPO
                runs[side].append(pretrain_run(args, tree, scratch / f"{side}{r}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [t["images_per_s"] / b["images_per_s"] for t, b in zip(runs["this"], runs["base"])]
    return {"speedup": round(statistics.median(ratios), 4), "min": round(min(ratios), 4), "max": round(max(ratios), 4),
            "best_speedup": round(min(b["best_step_s"] for b in runs["base"])
                                  / min(t["best_step_s"] for t in runs["this"]), 4),
            "images_per_s_this": statistics.median(t["images_per_s"] for t in runs["this"]),
            "images_per_s_base": statistics.median(b["images_per_s"] for b in runs["base"]),
            "base_commit": args.base, "this_commit": head, "runs": runs,
            "what": "bertnas pretrain --space nb201 images/s (batch / median step_time_s after 2 steps), "
                    "this tree / base commit, alternating runs"}


# ----------------------------------------------------------------------------------------


def table(result: dict) -> str:
    """The results as a Markdown table (docs/results.md)."""
    s = result.get("sections", {})
    rows = ["| compared | value [min, max] | best-time ratio | target | met | load average (1 min) |",
            "|---|---|---|---|---|---|"]

    def ratio_row(label, sec, target_name=None, fmt="{:.3f}"):
        if not sec:
            return
        key = "speedup" if "speedup" in sec else "ratio"
        best = sec.get("best_speedup", sec.get("best_ratio"))
        target = result.get("targets", {}).get(target_name, {}) if target_name else {}
        met = {True: "yes", False: "**no**", None: "-"}[target.get("met")] if target else "-"
        loads = [x for x in (sec.get("load_before"), sec.get("load_after")) if x]
        if not loads and sec.get("runs"):
            loads = [r["load_before"] for side in sec["runs"].values() for r in side]
        span = f"{min(v[0] for v in loads):.1f}-{max(v[0] for v in loads):.1f}" if loads else "-"
        rows.append(f"| {label} | **{fmt.format(sec[key])}** [{fmt.format(sec['min'])}, {fmt.format(sec['max'])}] | "
                    f"{fmt.format(best)} | {target.get('target', '-')} | {met} | {span} |")

    def times(sec, a, b):
        return f" ({sec['a_median_s'] * 1e3:.0f} / {sec['b_median_s'] * 1e3:.0f} ms)" if sec else ""

    sec = s.get("path_vs_standalone")
    ratio_row("supernet path step / `extract()` module in a plain loop" + times(sec, 0, 0), sec, "path_vs_standalone")
    sec = s.get("trainer_vs_bare")
    ratio_row("trainer SPOS step / the model's bare step on a batch in memory" + times(sec, 0, 0), sec,
              "trainer_vs_bare")
    sec = s.get("spos_vs_reference")
    if sec:
        ref = "NNI 3.0 NB201 + random one-shot" if "nni_supernet" in sec else "hand-written reference supernet"
        ratio_row(f"bertnas trainer SPOS step / {ref}" + times(sec, 0, 0), sec, "spos_vs_reference")
    sec = s.get("pretrain")
    if sec:
        ratio_row(f"`bertnas pretrain` images/s, this tree / {sec['base_commit']} ({sec['images_per_s_this']:.0f} / "
                  f"{sec['images_per_s_base']:.0f} images/s)", sec, "pretrain_speedup")
    variants = s.get("model_variants", {})
    for name, label in (("nchw_over_default", "bare step in NCHW / channels_last (both box-filter pool)"),
                        ("nchw_avgpool2d_over_default", "bare step in NCHW with `nn.AvgPool2d` (the old op) / default"),
                        ("compiled_over_default", "bare step with compiled candidate ops / eager (channels_last)")):
        if name in variants:
            v = dict(variants[name], load_before=variants.get("load_before"), load_after=variants.get("load_after"))
            ratio_row(label + times(v, 0, 0), v)
    return "\n".join(rows) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="C=4, N=1, batch 16, the CIFAR subset, few rounds")
    p.add_argument("--data", default=None, help="image data (default: the complete CIFAR-10 zip; --quick: the subset)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=3, help="calls per side per round")
    p.add_argument("--pretrain-rounds", type=int, default=3)
    p.add_argument("--pretrain-steps", type=int, default=12)
    p.add_argument("--base", default=BASE, help="the commit to compare `bertnas pretrain` against")
    p.add_argument("--only", default="", help="comma list of sections (path,trainer,reference,variants,pretrain)")
    p.add_argument("--skip-nni", action="store_true", help="use the hand-written reference supernet")
    p.add_argument("--skip-compile", action="store_true", help="leave compiled ops out of model_variants")
    p.add_argument("--nni-env", default=str(Path.home() / ".cache" / "bertnas" / "bench-nni-env"))
    p.add_argument("--json", default=None)
    p.add_argument("--table", action="store_true", help="print --json's results as a Markdown table, run nothing")
    p.add_argument("--nni-worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.channels, args.cells, args.batch_size = 4, 1, 16
        args.rounds, args.calls, args.pretrain_rounds, args.pretrain_steps = 3, 2, 1, 5
    args.data = Path(args.data) if args.data else (SUBSET if args.quick else FULL_CIFAR10)
    args.json = args.json or str(REPO / "bench" / "results" / ("bench_vision_quick.json" if args.quick
                                                                else "bench_vision.json"))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.nni_worker:
        batch, c, n, threads = args.nni_worker
        nni_worker(batch, int(c), int(n), int(threads))
        return {}
    if args.table:
        print(table(json.loads(Path(args.json).read_text())), end="")
        return {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch

    from portable import portable_json

    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    started, load_start = time.time(), load()
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
                          "load_start": load_start},
              "config": {"C": args.channels, "N": args.cells, "batch_size": args.batch_size, "data": str(args.data),
                         "rounds": args.rounds, "calls": args.calls, "pretrain_rounds": args.pretrain_rounds,
                         "pretrain_steps": args.pretrain_steps, "sampler": "uniform (SPOS)", "optimizer": "AdamW"},
              "command": "bench/bench_vision.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    try:
        result["machine"]["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    sections: dict = {}
    previous = Path(args.json)
    kept = {}
    if only and previous.is_file():  # --only: the other sections stay as the last run left them
        kept = json.loads(previous.read_text()).get("sections", {})

    def write() -> None:
        """The JSON as it stands (after every section: an interrupted run keeps what it measured)."""
        merged = {**{k: v for k, v in kept.items() if k not in sections}, **sections}
        if kept:
            result["sections_from_earlier_runs"] = sorted(set(merged) - set(sections))
        result["sections"] = merged
        values = {"path_vs_standalone": merged.get("path_vs_standalone", {}).get("ratio"),
                  "trainer_vs_bare": merged.get("trainer_vs_bare", {}).get("ratio"),
                  "spos_vs_reference": merged.get("spos_vs_reference", {}).get("ratio"),
                  "pretrain_speedup": merged.get("pretrain", {}).get("speedup")}
        result["targets"] = {}
        for name, (op, bound) in TARGETS.items():
            v = values[name]
            met = None if v is None else {"<=": v <= bound, "<": v < bound, ">=": v >= bound}[op]
            result["targets"][name] = {"value": v, "target": f"{op} {bound}", "met": met}
        result["machine"]["load_end"] = load()
        result["seconds"] = round(time.time() - started, 1)
        if max(load_start[0], result["machine"]["load_end"][0]) > (os.cpu_count() or 1):
            result["note"] = ("the load average exceeded the cores during the run (other jobs): absolute times and "
                              "images/s are lower bounds; the ratios come from alternating calls")
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(portable_json(result, indent=1) + "\n")

    def record(name: str, t0: float) -> None:
        sections[name]["seconds"] = round(time.perf_counter() - t0, 1)
        sections[name]["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        print(f"{name}: {json.dumps({k: v for k, v in sections[name].items() if k not in ('times_s', 'runs')})[:700]}",
              flush=True)
        write()

    # cheapest first; the compile warm-up (minutes) last
    in_process = [("path", "path_vs_standalone", section_path_vs_standalone),
                  ("trainer", "trainer_vs_bare", section_trainer_vs_bare),
                  ("reference", "spos_vs_reference", section_spos_vs_reference),
                  ("variants", "model_variants", section_model_variants)]
    trainer = None
    if not only or only & {key for key, _, _ in in_process}:
        tmp = tempfile.mkdtemp(prefix="bench_vision_")
        trainer = make_trainer(args, tmp)
        rng = random.Random(0)
        archs = [trainer.space.sample(rng) for _ in range(max(args.rounds, 1))]
        batch = trainer.stream.next()
        x = trainer.task.inputs(batch["pixel_values"], torch.Generator().manual_seed(0))  # augmented, normalised
        y = batch["labels"]
        result["config"]["input_memory_format"] = ("channels_last" if x.is_contiguous(memory_format=torch.channels_last)
                                                   and not x.is_contiguous() else "contiguous")
        for warm in archs[:2]:
            trainer._train_step(warm)
    order = in_process[:3] + [("pretrain", "pretrain", None)] + in_process[3:]
    for key, name, fn in order:
        if only and key not in only:
            continue
        if key == "pretrain":
            t0 = time.perf_counter()
            sections[name] = section_pretrain(args)
            record(name, t0)
            continue
        t0 = time.perf_counter()
        sections[name] = fn(args, trainer, x, y, archs)
        record(name, t0)
    if trainer is not None:
        trainer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    write()
    print(json.dumps(result["targets"], indent=1))
    print(table(result), end="")
    return result


if __name__ == "__main__":
    main()
