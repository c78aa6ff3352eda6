"""Read the champion from the VMs: GET /release of the hosts, and the served manifest written as
DIR/model.json, where `python -m jenkins.gate --champion DIR` reads its metrics.

    python -m deploy vms-champion --urls http://10.0.0.1:8081,http://10.0.0.2:8081 --out build/champion
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.vms import checks
from deploy.vms.checks import CheckFailed


def fetch_champion(urls: Sequence[str], out: Path) -> dict[str, Any]:
    """The release the hosts serve; all that answer must agree (a half-done rollout has no single
    champion). Writes ``out/model.json``; unreachable hosts are listed, not fatal."""
    served, unreachable = {}, []
    for url in urls:
        try:
            served[url] = checks.release(url.rstrip("/"))
        except CheckFailed as exc:
            unreachable.append(f"{url}: {exc}")
    if not served:
        raise DeployError("no host answered GET /release: " + "; ".join(unreachable))
    versions = {(r.get("release"), r.get("version")) for r in served.values()}
    if len(versions) > 1:
        raise DeployError(f"the hosts serve different releases {sorted(map(str, versions))}: "
                          "no single champion")
    first = next(iter(served.values()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(first["manifest"], indent=2, default=str))
    return {"target": "vms-champion", "release": first.get("release"), "model": first.get("model"),
            "version": first.get("version"), "metrics": (first["manifest"] or {}).get("metrics", {}),
            "model_json": str(out / "model.json"), "unreachable": unreachable}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--urls", required=True, help="comma-separated http://HOST:PORT, the live containers")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.json (gate --champion)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return fetch_champion([u.strip() for u in args.urls.split(",") if u.strip()], args.out)
