"""`load_metric(task)`: the Hub's `evaluate` metric when online, else the local module beside this file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import evaluate

from ..tasks import SquadTask, get_task

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
GLUE_METRIC = HERE / "glue_local"
SQUAD_METRIC = HERE / "squad_local"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


def load_metric(task: str, prefer_local: bool = False) -> evaluate.EvaluationModule:
    """The metric for a task (`glue/<task>`, `squad`, `squad_v2`).

    Online, the Hub module is tried first; offline (HF_HUB_OFFLINE or HF_EVALUATE_OFFLINE set), or
    when the Hub fails, the local module gives the same numbers. Logs which one is used.
    """
    spec = get_task(task)
    hub_name, config = spec.metric
    local = SQUAD_METRIC if isinstance(spec, SquadTask) else GLUE_METRIC
    local_config = spec.name
    if not (prefer_local or _offline()):
        try:
            metric = evaluate.load(hub_name, config) if config else evaluate.load(hub_name)
            logger.info("metric for %s: Hub module %r", spec.name, hub_name)
            return metric
        except Exception as err:  # noqa: BLE001 - any Hub failure falls back to the local copy
            logger.warning("metric for %s: Hub module %r failed (%s); using the local module", spec.name, hub_name,
                           str(err).splitlines()[0] if str(err) else type(err).__name__)
    logger.info("metric for %s: local module %s (config %r)", spec.name, local, local_config)
    return evaluate.load(str(local), local_config)
