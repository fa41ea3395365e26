"""Checkpoint files: atomic writes, pruning, finding, verification, weights and RNG round trips."""

import json
import random

import pytest
import torch

import bertnas
from bertnas.storage import checkpoint as ck

from conftest import toy_config


def _save(run_dir, step, keep_last=None, payload=b"x" * 10):
    def write_main(tmp):
        (tmp / ck.MODEL_DIR).mkdir()
        (tmp / ck.MODEL_DIR / "weights.bin").write_bytes(payload)
        ck.write_state(tmp, {"step": step, "signature": {"hidden_size": 48}})

    return ck.save_checkpoint(run_dir, step, write_main=write_main, keep_last=keep_last)


def test_save_names_prunes_and_finds_latest(tmp_path):
    for step in (5, 10, 15, 20):
        path = _save(tmp_path, step, keep_last=2)
        assert path.name == f"checkpoint-{step:08d}"
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-00000015", "checkpoint-00000020"]
    assert ck.find_checkpoint(tmp_path) == tmp_path / "checkpoint-00000020"
    # a checkpoint folder resolves to itself
    assert ck.find_checkpoint(tmp_path / "checkpoint-00000015") == tmp_path / "checkpoint-00000015"
    assert ck.verify_checkpoint(tmp_path / "checkpoint-00000020")["step"] == 20
    assert not any(p.name.startswith(ck.TMP_PREFIX) for p in tmp_path.iterdir())


def test_failed_write_leaves_no_checkpoint(tmp_path):
    _save(tmp_path, 10)

    def write_main(tmp):
        (tmp / "optimizer.pt").write_bytes(b"partial")
        raise KeyboardInterrupt  # killed mid-save

    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, 20, write_main=write_main)
    # the half-written step 20 is invisible: latest is still step 10
    assert ck.find_checkpoint(tmp_path).name == "checkpoint-00000010"
    ck.clean_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000010"]


def test_resaving_a_step_replaces_it(tmp_path):
    _save(tmp_path, 10, payload=b"old")
    _save(tmp_path, 10, payload=b"new!")
    assert (tmp_path / "checkpoint-00000010" / "model" / "weights.bin").read_bytes() == b"new!"
    ck.verify_checkpoint(tmp_path / "checkpoint-00000010")


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ck.find_checkpoint(tmp_path / "nope")
    with pytest.raises(ck.CheckpointError, match="holds no checkpoint"):
        ck.find_checkpoint(tmp_path)
    (tmp_path / f"{ck.TMP_PREFIX}00000010").mkdir()
    with pytest.raises(ck.CheckpointError, match="stopped while saving"):
        ck.find_checkpoint(tmp_path)
    broken = tmp_path / "checkpoint-00000020"
    broken.mkdir()
    (broken / "state.json").write_text(json.dumps({"step": 20}))
    with pytest.raises(ck.CheckpointError, match="model is missing"):
        ck.find_checkpoint(tmp_path)


def test_verify_detects_missing_and_resized_files(tmp_path):
    path = _save(tmp_path, 10)
    (path / "model" / "weights.bin").write_bytes(b"x" * 4)
    with pytest.raises(ck.CheckpointError, match="wrong size of model/weights.bin"):
        ck.verify_checkpoint(path)
    (path / "model" / "weights.bin").unlink()
    with pytest.raises(ck.CheckpointError, match="missing model/weights.bin"):
        ck.verify_checkpoint(path)
    (path / ck.MANIFEST_FILE).unlink()
    with pytest.raises(ck.CheckpointError, match="no manifest.json"):
        ck.verify_checkpoint(path)


def test_model_weights_round_trip_and_truncation(tmp_path):
    torch.manual_seed(0)
    model = bertnas.BertNasForMaskedLM(toy_config())
    ck.save_model(model, None, tmp_path / "model")
    other = bertnas.BertNasForMaskedLM(toy_config())
    ck.load_model_weights(other, tmp_path / "model")
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    # tied decoder still shares the embedding after loading
    assert other.cls.predictions.decoder.weight.data_ptr() == other.bert.embeddings.word_embeddings.weight.data_ptr()

    wrong = bertnas.BertNasForMaskedLM(toy_config(hidden_size=24, intermediate_size=48, ffn_wide_size=72))
    with pytest.raises((ck.CheckpointError, RuntimeError)):
        ck.load_model_weights(wrong, tmp_path / "model")

    weights = tmp_path / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated"):
        ck.load_model_weights(other, tmp_path / "model")
    weights.write_bytes(data[:4])
    with pytest.raises(ck.CheckpointError, match="truncated"):
        ck.load_model_weights(other, tmp_path / "model")


def test_check_compatible_lists_differences(tmp_path):
    ck.check_compatible(tmp_path, {"hidden_size": 48, "candidates": ["ffn"]}, {"hidden_size": 48, "candidates": ["ffn"]})
    with pytest.raises(ck.CheckpointError, match="hidden_size: checkpoint 48 vs this run 32") as err:
        ck.check_compatible(tmp_path, {"hidden_size": 48, "num_hidden_layers": 2},
                            {"hidden_size": 32, "num_hidden_layers": 2})
    assert "fresh --output-dir" in str(err.value)


def test_rng_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1)
    torch.manual_seed(2)
    state = ck.capture_rng(gen)
    ck.save_torch(state, tmp_path / "rng.pt")
    expected = (random.random(), torch.rand(3), torch.rand(3, generator=gen))
    random.seed(99)
    torch.manual_seed(99)
    gen.manual_seed(99)
    ck.restore_rng(ck.load_torch(tmp_path / "rng.pt"), gen)
    got = (random.random(), torch.rand(3), torch.rand(3, generator=gen))
    assert got[0] == expected[0]
    assert torch.equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


def test_load_torch_rejects_garbage(tmp_path):
    (tmp_path / "optimizer.pt").write_bytes(b"not a torch file")
    with pytest.raises(ck.CheckpointError, match="cannot be read"):
        ck.load_torch(tmp_path / "optimizer.pt")
    with pytest.raises(ck.CheckpointError, match="missing"):
        ck.load_torch(tmp_path / "absent.pt")


def test_run_dir_guard_refuses_reruns_overwrites_only_run_files_and_locks(tmp_path):
    import json
    import os
    import socket

    from bertnas.core.errors import UserError

    run = tmp_path / "run"
    (run / "checkpoint-00000002").mkdir(parents=True)
    (run / "log.jsonl").write_text("{}\n")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume-from-checkpoint latest.*--overwrite"):
        with ck.run_dir_guard(run):
            pass
    with ck.run_dir_guard(run, overwrite=True):
        assert sorted(p.name for p in run.iterdir()) == [".bertnas.lock", "notes.txt"]
        with pytest.raises(UserError, match=f"in use by another bertnas run \\(pid {os.getpid()}"):
            ck.RunLock(run).acquire()
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # lock released, the user's file kept

    dead = 2**22 + 12345  # beyond pid_max on Linux defaults: no such process
    (run / ".bertnas.lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "x"}))
    with ck.run_dir_guard(run):  # a dead run's lock on this host is taken over
        assert json.loads((run / ".bertnas.lock").read_text())["pid"] == os.getpid()

    with ck.run_dir_guard(tmp_path / "fresh"):
        pass
    assert not (tmp_path / "fresh").exists()  # nothing written: no folder left behind


def test_manifest_sha256_catches_same_size_changes(tmp_path):
    ckpt = tmp_path / "checkpoint-00000001"
    ckpt.mkdir()
    (ckpt / "optimizer.pt").write_bytes(b"a" * 64)
    (ckpt / "state.json").write_text('{"step": 1}')
    ck.write_manifest(ckpt)
    ck.verify_checkpoint(ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"b" * 64)
    with pytest.raises(ck.CheckpointError, match="optimizer.pt changed since it was written"):
        ck.verify_checkpoint(ckpt)
    ck.verify_checkpoint(ckpt, parts=("state.json",))  # search / export read only some files
