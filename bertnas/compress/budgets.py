"""Budgets of `bertnas compress`: "5M,10M" -> {"5M": 5_000_000, ...}, checked against the student space.

A budget counts the student's non-embedding parameters (its chain ops; no embeddings, no head),
as NAS-BERT's sizes exclude nothing but we budget the part search can change. Every budget is
checked before any training: one below the smallest reachable student is an error naming that size.
"""

from __future__ import annotations

from bertnas.core.errors import UserError
from bertnas.search.constraints import human, parse_size

DEFAULT_BUDGETS = "5M,10M,30M,60M"


def parse_budgets(text: str | list | None) -> dict[str, int]:
    """{label as given: parameters}, in the given order; labels like 5M, 2.5M, 800k or plain integers."""
    items = text if isinstance(text, (list, tuple)) else str(text or DEFAULT_BUDGETS).split(",")
    budgets: dict[str, int] = {}
    for item in items:
        label = str(item).strip()
        if not label:
            continue
        try:
            size = parse_size(label)
        except ValueError as err:
            raise UserError(f"--budgets: {err}", "write budgets like 5M,10M (non-embedding parameters)") from None
        if label in budgets:
            raise UserError(f"--budgets lists {label} twice", "give each budget once")
        budgets[label] = size
    if not budgets:
        raise UserError("--budgets is empty", f"e.g. --budgets {DEFAULT_BUDGETS}")
    return budgets


def check_budgets(budgets: dict[str, int], student_config) -> tuple[list, int]:
    """(smallest arch, its non-embedding parameters) of the student space; UserError when a budget
    is below that size (no arch of the space can meet it)."""
    from bertnas.models.student import smallest_arch

    arch, least = smallest_arch(student_config)
    too_small = [label for label, size in budgets.items() if size < least]
    if too_small:
        raise UserError(
            f"budget {', '.join(too_small)} cannot be met: the smallest reachable student of this space, "
            f"{arch}, has {least:,} ({human(least)}) non-embedding parameters",
            f"use budgets of at least {human(least)}, or add smaller candidates (identity, narrower ops) or "
            "fewer student layers to the recipe")
    return arch, least


__all__ = ["DEFAULT_BUDGETS", "parse_budgets", "check_budgets"]
