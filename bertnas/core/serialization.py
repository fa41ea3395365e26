"""JSON forms of random-number-generator states and tensors that restore them bit for bit."""

from __future__ import annotations

import torch


def rng_state_to_json(state) -> list:
    """`random.Random.getstate()` as JSON."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_state_from_json(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def tensor_to_json(t: torch.Tensor) -> dict:
    """A float tensor as JSON that restores it bit for bit (float32 -> Python float -> float32 is exact)."""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "data": t.detach().cpu().flatten().tolist()}


def tensor_from_json(d: dict) -> torch.Tensor:
    return torch.tensor(d["data"], dtype=getattr(torch, d["dtype"])).reshape(d["shape"])


__all__ = ["rng_state_from_json", "rng_state_to_json", "tensor_from_json", "tensor_to_json"]
