"""A stored prediction as the portal's API shows it."""

from __future__ import annotations

import json
import time
from typing import Any


def public(row: dict[str, Any]) -> dict[str, Any]:
    spec = json.loads(row["input_spec"])
    started, finished = row.get("started_at"), row.get("finished_at")
    return {
        "prediction_id": row["id"], "kind": row["kind"], "status": row["status"],
        "engine": spec.get("engine", "local"),
        "model": {"name": row["model_name"], "version": row["model_version"]},
        "input": {k: v for k, v in spec.items() if k not in ("records", "engine")} | (
            {"inline_records": len(spec["records"])} if "records" in spec else {}),
        "output_location": row.get("output_location"),
        "rows_total": row.get("rows_total"), "rows_done": row.get("rows_done"),
        "progress": (row["rows_done"] / row["rows_total"]) if row.get("rows_total") else None,
        "error": row.get("error"), "attempts": row.get("attempts"), "compare_of": row.get("compare_of"),
        "created_at": iso(row["created_at"]), "started_at": iso(started), "finished_at": iso(finished),
        "duration_seconds": round(finished - started, 3) if started and finished else None,
    }


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"
