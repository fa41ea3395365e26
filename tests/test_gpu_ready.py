"""What the GPU users rely on, checked through its mechanism on the CPU: divergence stops a run
with one line and keeps finite checkpoints, the training step reads the device once, arch
weights are not read back per choice, masks are additive, RNG state moves between devices,
controllers broadcast, ELECTRA's held-out corruption is device-independent, latency syncs the
measured device, the GPU check's dry run."""

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

from conftest import tiny_texts

BERTNAS = [sys.executable, "-m", "bertnas.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONWARNINGS": "ignore"}
TRAIN = ["--data", "tiny.txt", "--seq-len", "16", "--no-progress"]


def bertnas(args, cwd, timeout=300):
    return subprocess.run([*BERTNAS, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_ready")
    (root / "tiny.txt").write_text("\n".join(tiny_texts()) + "\n")
    return root


def _finite_weights(ckpt: Path) -> bool:
    from safetensors.torch import load_file

    files = list(ckpt.rglob("*.safetensors"))
    assert files, f"no weights in {ckpt}"
    return all(torch.isfinite(t).all() for f in files for t in load_file(f).values() if t.is_floating_point())


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(corpus_dir):
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "20", "--save-steps", "1", "--lr", "1e4",
                    "--output-dir", "diverged"], corpus_dir)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "diverged at step" in errors[0] and "--lr" in errors[0]
    run = corpus_dir / "diverged"
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert checkpoints, "the steps before the divergence were checkpointed"
    step = int(errors[0].split("diverged at step ")[1].split(":")[0])
    assert all(int(c.name.split("-")[1]) < step for c in checkpoints), "no checkpoint of the diverged step"
    assert all(_finite_weights(c) for c in checkpoints)
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert all(line["step"] < step for line in lines)


def test_nonfinite_steps_are_skipped_up_to_the_allowance(corpus_dir):
    """max_nonfinite_steps: a non-finite step leaves the weights as they were and the run goes on
    until the allowance is spent."""
    done = bertnas(["pretrain", *TRAIN, "--max-steps", "4", "--save-steps", "0", "--lr", "1e4",
                    "--set", "max_nonfinite_steps=100", "--output-dir", "skipped"], corpus_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in (corpus_dir / "skipped" / "log.jsonl").read_text().splitlines()]
    assert any(line.get("skipped_nonfinite") for line in lines)
    assert all(_finite_weights(c) for c in (corpus_dir / "skipped").glob("checkpoint-*"))


def test_electra_heldout_corruption_draws_every_random_number_on_the_cpu(tiny_tokenizer, monkeypatch):
    """The held-out corruption is the same sequence of draws as the objective's own corruption
    with a CPU generator (the device only runs the generator's forward): no device generator."""
    from conftest import toy_config

    import datasets

    from bertnas import BertNasForMaskedLM, BertNasForPreTraining
    from bertnas.tasks import bert as bert_task
    from bertnas.tasks.objectives import ElectraObjective

    tok = tiny_tokenizer
    torch.manual_seed(0)
    config = dict(vocab_size=len(tok), hidden_size=32, candidates=["mha8", "ffn"])
    disc = BertNasForPreTraining(toy_config(**config))
    gen = BertNasForMaskedLM(toy_config(**config, arch=["mha8", "ffn"]))
    objective = ElectraObjective(disc, gen, tok)
    ids = torch.randint(len(tok.all_special_ids) + 1, len(tok), (8, 16), generator=torch.Generator().manual_seed(3))
    columns = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    rows = datasets.Dataset.from_dict({k: v.tolist() for k, v in columns.items()}).with_format("torch")

    devices = []
    real_generator = torch.Generator

    def spy(*args, **kwargs):  # every generator the held-out code makes, and the device it names
        devices.append(kwargs.get("device", args[0] if args else None))
        return real_generator(*args, **kwargs)

    monkeypatch.setattr(bert_task.torch, "Generator", spy)
    batches = bert_task.electra_heldout(objective, rows, batch_size=4, num_batches=2, seed=11)
    monkeypatch.undo()
    assert devices == [None], "one generator, on the CPU whatever the model's device"
    g = torch.Generator().manual_seed(11)
    gen.eval()
    with torch.no_grad():
        for i, batch in enumerate(batches):
            part = {k: v[4 * i:4 * i + 4] for k, v in columns.items()}
            inputs, replaced, _ = objective.corrupt(part, g)
            assert torch.equal(batch["input_ids"], inputs["input_ids"]) and torch.equal(batch["labels"], replaced)
    assert any(b["labels"].any() for b in batches)


def _controller_rank(rank, world, store_path, strategy_name, out):
    import torch.distributed as dist

    from bertnas.spaces.base import SearchSpace
    from bertnas.strategies import build_strategy

    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        space = SearchSpace({"a": ["x", "y", "z"], "b": ["x", "y"]})
        strategy = build_strategy(strategy_name, space, seed=0)
        # rewards that differ per rank (as scores in the last bits on GPUs): without a broadcast
        # the controllers, and so the next paths, differ
        strategy.rewards = lambda ctx, archs: [float(i + 10 * rank) * (1 if a.ops[0] == "x" else -1)
                                               for i, a in enumerate(archs)]
        ctx = type("Ctx", (), {"world_size": world, "rank": rank})()
        for step in range(3):
            strategy.after_weight_step(ctx, step, strategy.choose(step))
        out.put((rank, json.dumps(strategy.controller.state_dict(), sort_keys=True), strategy.baseline.value,
                 [strategy.choose(9).to_list() for _ in range(5)]))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("strategy_name", ["reinforce", "ppo"])
def test_controller_updates_are_rank0s_on_every_rank(tmp_path, strategy_name):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_controller_rank, args=(r, 2, tmp_path / "store", strategy_name, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    (_, state0, base0, draws0), (_, state1, base1, draws1) = results
    assert state0 == state1 and base0 == base1 and draws0 == draws1


def test_rng_state_moves_between_device_types_with_a_warning(caplog):
    """A masking generator's state saved on one device type restores on another (a GPU's Philox
    state and a CPU's Mersenne Twister have different sizes: set_state raised 'wrong size'): it is
    seeded from the saved state, reproducibly, with a warning. Same type: the exact stream."""
    from bertnas.storage import checkpoint as ck

    gen = torch.Generator().manual_seed(5)
    state = ck.capture_rng(gen)
    assert state["mask_generator_device"] == "cpu" and "cuda" not in state
    expected = torch.rand(3, generator=gen)
    ck.restore_rng(state, gen)
    assert torch.equal(torch.rand(3, generator=gen), expected)

    foreign = {**state, "mask_generator": torch.zeros(16, dtype=torch.uint8), "mask_generator_device": "cuda",
               "cuda": [torch.zeros(16, dtype=torch.uint8)] * 4}  # a 4-GPU rank's file, resumed on a CPU
    draws = []
    for _ in range(2):
        with caplog.at_level("WARNING", logger="bertnas.pretrain"):
            ck.restore_rng(foreign, gen)
        draws.append(torch.rand(3, generator=gen))
    assert torch.equal(draws[0], draws[1])
    assert "cannot move between device types" in caplog.text


def test_loader_workers_give_the_same_batches_and_resume_exactly():
    """The GPU loader (DataLoader workers building batches ahead) yields the training thread's
    batches in the same order, across epochs, and a state saved mid-way resumes the same stream."""
    import datasets

    from bertnas.supernet.stream import BatchStream

    rows = datasets.Dataset.from_dict({"input_ids": [[i, i + 1] for i in range(23)]}).with_format("torch")
    plain = BatchStream(rows, 4, world_size=2, rank=1, seed=3)
    ahead = BatchStream(rows, 4, world_size=2, rank=1, seed=3, num_workers=2)
    expected = [plain.next()["input_ids"] for _ in range(9)]  # 2 batches per epoch: 4 epochs and more
    got = [ahead.next()["input_ids"] for _ in range(5)]
    state = ahead.state_dict()
    resumed = BatchStream(rows, 4, world_size=2, rank=1, seed=3, num_workers=1)
    resumed.load_state_dict(state)
    got += [resumed.next()["input_ids"] for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got)) and len(got) == 9
    assert state == {**plain.state_dict(), "epoch": 2, "position": 1}


def test_train_eval_network_gives_each_rank_its_own_images():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "recipes" / "train_eval_network.py"
    spec = importlib.util.spec_from_file_location("train_eval_network", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    assert torch.equal(recipe.rank_slice(order, 0, 1), order)  # one process: the whole permutation
    shares = [recipe.rank_slice(order, r, 4) for r in range(4)]
    assert len({len(s) for s in shares}) == 1  # the same number of steps on every rank
    flat = torch.cat(shares)
    assert len(set(flat.tolist())) == len(flat) == 100  # disjoint: different images per rank


@pytest.mark.parametrize("normalize", [True, False])
def test_alignment_on_a_device_gives_the_cpu_numbers_without_reading_back(batch, monkeypatch, normalize):
    """Where reading a tensor back would wait for a GPU, the aligner weights padded positions
    instead of dropping them and caps its term with tensor ops: the same numbers as the CPU path
    (which drops them by indexing), for a padded batch and a capped term."""
    from conftest import toy_config

    from bertnas import BertNasModel, BertSpace
    from bertnas.supernet import align as align_lib

    torch.manual_seed(0)
    config = toy_config(num_hidden_layers=4)
    model = BertNasModel(config).eval()
    aligner = align_lib.Aligner(BertSpace(config), ["mha12", "ffn", "mha12", "ffn"], block_size=2,
                                normalize=normalize, max_ratio=0.01)
    hidden = model(**batch, arch=["conv3", "ffn", "mha6", "ffn_wide"], output_hidden_states=True).hidden_states
    on_cpu = aligner.align_loss(model, batch, hidden)
    capped_cpu = aligner.weighted(on_cpu, torch.tensor(1e-3))
    monkeypatch.setattr(align_lib, "reads_are_free", lambda tensor: False)
    reads = []
    real_bool = torch.Tensor.__bool__

    def spy(t):  # the aligner's own reads (the model's forward reads a host mask, free on the CPU)
        if "supernet/align.py" in traceback.extract_stack()[-2].filename:
            reads.append(traceback.format_stack()[-2])
        return real_bool(t)

    monkeypatch.setattr(torch.Tensor, "__bool__", spy)
    on_device = aligner.align_loss(model, batch, hidden)
    capped = aligner.weighted(on_device, torch.tensor(1e-3))
    monkeypatch.undo()
    assert not reads, "no tensor was read back on the host"
    torch.testing.assert_close(on_device, on_cpu, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(capped, capped_cpu, rtol=1e-5, atol=1e-7)
    assert capped.item() == pytest.approx(1e-5, rel=1e-5)  # the cap bit: 0.01 x the task loss


def test_gpu_check_dry_run_runs_every_check(tmp_path):
    """bench/gpu_check.py --dry-run: every check runs on the CPU in tiny size, so the script a GPU
    loan runs first cannot rot between loans (DeepSpeed is left out here: its CPU ops build for a
    minute; tests/test_distributed.py runs ZeRO on the CPU)."""
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script), "--dry-run", "--skip", "deepspeed", "--output-dir",
                           str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {r["check"] for r in result["rows"]}
    assert {"env", "parity", "attention", "train_step", "magic_vs_spos", "evaluator", "nb201"} <= checks
    assert not result["failed"], result["failed"]
    parity = [r for r in result["rows"] if r["check"] == "parity" and r["what"].startswith("fp32")]
    assert len(parity) == 6 and all(r["value"] == 0.0 for r in parity)  # exact on the CPU, sdpa and eager
    assert "| check | what |" in (tmp_path / "gpu_check.md").read_text()


def test_attention_backends_and_the_padding_mask(batch):
    """Every backend of transformers' attention interface that runs on the CPU gives the sdpa
    output on a padded batch; the mask handed to sdpa / eager is an additive float one; the
    config carries BERT's num_attention_heads; a GPU mask is never read back (asked on the host
    only)."""
    from conftest import toy_config

    from bertnas import BertNasModel

    torch.manual_seed(0)
    model = BertNasModel(toy_config(num_hidden_layers=4)).eval()
    assert model.config.num_attention_heads == 12 and model._supports_flash_attn and model._supports_flex_attn
    assert model._supports_attention_backend
    arch = ["mha12", "conv3", "mha6", "ffn"]
    with torch.no_grad():
        ref = model(**batch, arch=arch).last_hidden_state
        mask, tokens = model.attention_mask_for(batch["attention_mask"], ref)
        assert mask.dtype == torch.float32 and mask.shape == (3, 1, 1, 12) and tokens.shape == (3, 12, 1)
        assert (mask[1, 0, 0, 8:] == torch.finfo(torch.float32).min).all() and (mask[1, 0, 0, :8] == 0).all()
        assert model.attention_mask_for(torch.ones(3, 12, dtype=torch.long), ref) == (None, None)
        # a mask off the host (meta: its values cannot be read at all) is built, never read
        meta_mask, _ = model.attention_mask_for(batch["attention_mask"].to("meta"), ref.to("meta"))
        assert meta_mask.device.type == "meta" and meta_mask.shape == (3, 1, 1, 12)
        for attn in ("eager", "sdpa"):
            model.config._attn_implementation = attn
            out = model(**batch, arch=arch, output_attentions=True)
            keep = batch["attention_mask"].bool()
            assert (out.last_hidden_state - ref)[keep].abs().max() < 1e-5
            probs = out.attentions[0]
            assert probs.shape == (3, 12, 12, 12) and probs[1, :, :, 8:].abs().max() == 0  # padding gets no weight


def test_latency_waits_for_the_measured_device(monkeypatch):
    """`--device cuda:1`: timing waits for cuda:1 itself (a bare synchronize() waits for the
    current device, cuda:0, and the clock stops before the measured kernels finish)."""
    from bertnas.search import latency

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    latency.device_sync("cuda:1")()
    latency.device_sync("cpu")()
    assert waited == [torch.device("cuda", 1)]
    calls = []
    latency.measure_ms(lambda: calls.append(1), "cuda:1", repeats=1, min_time_s=0.0)
    assert set(waited) == {torch.device("cuda", 1)} and len(waited) > 2


@pytest.mark.parametrize("align", [False, True])
def test_the_training_step_reads_the_device_once(tmp_path, monkeypatch, align):
    """Every number the step logs (loss, alignment, items, signal, gradient norm, the objective's
    metrics) comes back in ONE transfer, which the finiteness check reads too: counted as the
    tensor reads (`float`, `int`, `bool`, `item`, `tolist`) the trainer's code makes in a step."""
    from bertnas.pipelines.pretrain import build_trainer
    from bertnas.train import trainer as trainer_lib
    from bertnas.train.config import load_config

    toy = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "toy.yaml"
    cfg = load_config(dict(config=str(toy), output_dir=str(tmp_path / "run"), max_steps=4, save_steps=0,
                           progress=False, align=align, align_start=0, align_ramp=0, sampler="uniform",
                           gradient_accumulation_steps=2))
    trainer = build_trainer(cfg)
    arch = trainer.policy.choose(0)
    trainer._train_step(arch)
    reads = []
    for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
        real = getattr(torch.Tensor, name)

        def spy(t, *a, _real=real, _name=name, **k):
            if traceback.extract_stack()[-2].filename == trainer_lib.__file__:
                reads.append(_name)
            return _real(t, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    record = trainer._train_step(arch)
    monkeypatch.undo()
    assert reads == ["tolist"], reads
    assert {"loss", "grad_norm", "tokens", "mlm_loss"} <= set(record) and isinstance(record["mlm_loss"], float)
    assert ("align_loss" in record) == align
    trainer.close()


def test_strategies_hand_over_arch_weights_in_one_transfer(monkeypatch):
    """A differentiable strategy's step reads its architecture weights back once, whatever the
    number of choices (its rounding and the constant mix of the bilevel weight step both use that
    one host copy), and its log fields once more: not once per choice."""
    from bertnas.spaces.base import SearchSpace
    from bertnas.strategies import build_strategy
    from bertnas.strategies.base import MixedArch

    space = SearchSpace({f"c{i}": ["a", "b", "c"] for i in range(6)})
    strategy = build_strategy("darts", space, seed=0, bilevel=True)
    transfers = []
    real_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t, *a, **k: transfers.append(1) or real_cpu(t, *a, **k))
    arch = strategy.choose(0)
    assert len(transfers) == 1
    assert isinstance(arch, MixedArch) and all(not w.requires_grad and w.device.type == "cpu" for w in arch.values())
    strategy.log_fields()
    assert len(transfers) == 2
