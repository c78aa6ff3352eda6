"""The portal page in a real browser: Debian's headless Chromium against a real `serve`.

Jobs list, one job's detail and a two-version comparison with its charts are rendered by the
page's own JavaScript; the DOM is checked and a screenshot kept in tests/artifacts/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.paths import MLPaths
from tests import factories
from tests.e2e.helpers import free_port, http, start_serve, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
JSON = {"Content-Type": "application/json"}


def call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, _, raw = http("POST" if body is not None else "GET", url,
                          json.dumps(body).encode() if body is not None else None, JSON, timeout=30)
    assert status in (200, 202), raw
    return dict(json.loads(raw))


def chromium(*args: str, tmp: Path) -> str:
    assert CHROMIUM is not None
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp / 'chrome-profile'}",
         "--virtual-time-budget=8000", *args],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.fixture
def portal(gender_model: MLPaths, model_repository: Path, tmp_path: Path) -> Iterator[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`./run setup` installs Debian's chromium package)")
    port = free_port()
    proc = start_serve(gender_model.base, port, tmp_path / "serve.log", {
        "MLAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'mlapp.db'}", "MLAPP_MODEL_REPOSITORY": str(model_repository),
        "MLAPP_DATA_DIR": str(tmp_path / "mlapp")}, workers=1)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", 90, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_page_lists_jobs_shows_detail_and_charts_a_comparison(portal: str, tmp_path: Path,
                                                               artifacts_dir: Path) -> None:
    records = json.loads(factories.devices(300, seed=21).drop(columns=["gender"]).to_json(orient="records"))
    batch = call(f"{portal}/api/providers/prediction/create", {"model": "gender", "input": records,
                                                               "explain": True})
    shadowed = call(f"{portal}/api/providers/prediction/invoke",
                    {"model": {"name": "gender", "version": "v2"}, "input": records, "compare_with": "v1"})
    deadline = time.monotonic() + 60
    while call(f"{portal}/api/providers/prediction/check?prediction_id={batch['prediction_id']}")["status"] != "SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    a, b = shadowed["prediction_id"], shadowed["shadow"]["prediction_id"]
    page = f"{portal}/mlapp/?job={batch['prediction_id']}&a={a}&b={b}"

    dom = chromium("--dump-dom", page, tmp=tmp_path)
    for pid in (batch["prediction_id"], a, b):
        assert f'data-id="{pid}"' in dom  # every job is listed
    assert dom.count('class="badge SUCCEEDED"') >= 3
    assert f"<b>{batch['prediction_id']}</b>" in dom and "rows 300 / 300" in dom  # the detail pane
    assert "300 rows compared · agreement" in dom  # the comparison summary
    # The explained batch: its first row's top contributions, largest first, by raw field.
    assert '<div id="why" class="why"><b>Top contributions</b> to row 0' in dom
    first = call(f"{portal}/api/providers/prediction/check?limit=1&prediction_id={batch['prediction_id']}")
    top = first["results"]["rows"][0]["explanation"]["attributions"][0]["feature_header"]
    assert f"<tr><td>{top}</td>" in dom

    shot = artifacts_dir / "portal-page.png"
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", "--window-size=1280,900", page, tmp=tmp_path)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # The histogram and scatter are canvas drawings, invisible to the DOM: look for their blue.
    lower = pixels[int(0.45 * 900):]
    blue = (np.abs(lower - np.array([59, 130, 246])).sum(axis=2) < 60).sum()
    assert blue > 2000, f"comparison charts look empty ({blue} blue pixels) — see {shot}"
