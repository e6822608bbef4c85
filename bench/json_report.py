"""Where every benchmark leaves its numbers: one JSON file, written whole or not at all."""
from __future__ import annotations

import json
import os


def write_json_report(report, path: str) -> str:
    """Write `report` (numpy scalars become floats) to `path` through a temporary file, so an
    interrupted run leaves the previous file intact; makes the folder; returns path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=1, default=float)
    os.replace(tmp, path)
    return path
