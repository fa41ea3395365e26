"""Supernet pre-training: data, objectives, loop, checkpoints."""
