"""Strict JSON for everything bertnas writes: no bare `NaN` / `Infinity` (which `json.dumps`
writes by default and which `jq`, JavaScript and most JSON readers refuse).

A value that is not a finite number is written as `null`; the code that produced it says why
(a warning, or an explicit field such as `"kendall_tau_note"`).
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """`obj` with every non-finite float (also numpy scalars) replaced by None, recursively."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # numpy / torch scalars
        return finite_or_none(obj.item())
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """`json.dumps` that never writes NaN / Infinity (they become null)."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


def has_non_finite(obj: Any) -> bool:
    """True when `obj` holds a float that is NaN or infinite (anywhere inside)."""
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(has_non_finite(v) for v in obj)
    return False


__all__ = ["dumps", "finite_or_none", "has_non_finite"]
