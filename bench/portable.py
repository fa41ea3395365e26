"""JSON for committed results: paths inside the repository are written relative to it, and the
shared data as `../shared/...`, so a result file holds no machine's absolute paths."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def portable_json(obj, **kwargs) -> str:
    text = json.dumps(obj, **kwargs)
    for prefix, short in ((REPO.parent / "shared", "../shared"), (REPO, ".")):
        text = text.replace(json.dumps(str(prefix))[1:-1] + "/", short + "/")
    return text
