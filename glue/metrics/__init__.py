"""`load_metric(task)`: the local `evaluate` metric module beside this file (no code from the Hub);
`hub=True` (`bertnas finetune --hub-metrics`) runs the Hub's module instead, which is remote code."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import evaluate

from glue.tasks import SquadTask, get_task

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
GLUE_METRIC = HERE / "glue_local"
SQUAD_METRIC = HERE / "squad_local"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


def load_metric(task: str, prefer_local: bool = True, hub: bool = False) -> evaluate.EvaluationModule:
    """The metric for a task (`glue/<task>`, `squad`, `squad_v2`).

    The local module is the default: it gives the Hub module's numbers without running code
    downloaded from the Hub. With `hub=True` (an explicit opt-in to remote code) the Hub module is
    tried first, unless offline (HF_HUB_OFFLINE or HF_EVALUATE_OFFLINE set); if it fails, the local
    module is used. Logs which one is used.
    """
    prefer_local = prefer_local and not hub
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
