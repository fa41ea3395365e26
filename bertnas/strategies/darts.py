"""DARTS (Liu et al. 2019), first order: theta = softmax(alpha) per choice, every layer the
theta-weighted sum of its candidates; the weight step on the training rows, then
alpha <- Adam(grad_alpha L_val) on a held-out half of them (`bilevel: false`: on the weight
step's own loss). Discretised by argmax; DARTS cells keep the top-2 inputs per node."""

from __future__ import annotations


from bertnas.strategies.mixed import DifferentiableStrategy


class Darts(DifferentiableStrategy):
    """First-order DARTS (the second-order unrolled step is not implemented)."""


__all__ = ["Darts"]
