"""jenkins.release's own logic: the smoke test (what it checks, the requests it sends), the champion
note when the champion command fails, and the ledger of what each stage serves across a rollback.

The load balancer is a real HTTP server on loopback answering as a container does (GET /release,
POST /invocations); the deploy commands the ledger tests run are replaced at the process edge
(`release._run`), because what they deploy is not what is tested here (tests/container/test_pipeline.py
runs them for real)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jenkins import families, release
from modelformat.manifest import model_version

PAIR = {"user": "u1", "item": "m7"}
TOP_K = {"user": "u2", "k": 5}


class Site:
    """What a load balancer in front of one release answers, and every prediction request it got."""

    def __init__(self) -> None:
        self.served: dict[str, Any] = {}
        self.requests: list[Any] = []
        self.invocations_status = 200
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(200, site.served)

            def do_POST(self) -> None:
                records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                site.requests.append(records)
                if site.invocations_status != 200:
                    self._answer(site.invocations_status, {"error": {"code": "unavailable"}})
                    return
                self._answer(200, {"predictions": [{"score": 0.5} for _ in records]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    thread = threading.Thread(target=s.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()


def _trained(work: Path, family: str, warmup: list[dict[str, Any]], metric: float) -> Path:
    """WORKDIR/opt_ml/model and WORKDIR/model.tar.gz as jenkins.train leaves them."""
    model_dir = work / "train" / family / "opt_ml" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "model.json").write_text(json.dumps({"family": family, "metrics": {"ndcg@10": metric}}))
    (model_dir / "warmup.json").write_text(json.dumps(warmup))
    (work / "train" / family / "model.tar.gz").write_bytes(f"tar of {metric}".encode())
    return model_dir


@pytest.fixture
def env(tmp_path: Path, site: Site) -> dict[str, str]:
    inventories = tmp_path / "inventory"
    inventories.mkdir()
    for stage in release.STAGES:
        for family in families.names():
            (inventories / f"{stage}-{family}.json").write_text(json.dumps({
                "hosts": [{"name": "vm1", "address": "127.0.0.1", "ports": [1, 2]}],
                "site": {"url": site.url, "nginx_conf": str(tmp_path / "site.conf")}}))
    return {"VM_INVENTORY_DIR": str(inventories), "RELEASE_STORE": str(tmp_path / "releases"),
            "WORK": str(tmp_path / "build"), "BUILD_TAG": "jenkins-mlship-main-7"}


def _ledger(env: dict[str, str], stage: str, family: str) -> dict[str, Any]:
    return dict(json.loads((Path(env["RELEASE_STORE"]) / stage / family / "current.json").read_text()))


def test_smoke_checks_the_served_model_version_and_sends_one_request_per_kind_of_record(
        site: Site, env: dict[str, str], tmp_path: Path) -> None:
    model_dir = _trained(tmp_path / "build", "propensity", [PAIR, TOP_K, {**PAIR, "item": "m8"}], 0.3)
    version = model_version(model_dir)
    assert "version" not in json.loads((model_dir / "model.json").read_text())  # the hash is the version
    site.served = {"release": "b2", "model": "propensity", "version": version}
    out = release.smoke("vms", "staging", "propensity", "reg/mlship:b2", model_dir, env, wait_seconds=0)
    assert out["smoke"] == "passed" and out["version"] == version and out["requests"] == 2
    # a pair request and a top-K request: one request may not mix the two kinds
    assert site.requests == [[PAIR, {**PAIR, "item": "m8"}], [TOP_K]]
    assert _ledger(env, "staging", "propensity")["version"] == version


def test_smoke_fails_when_the_site_serves_another_model_version(site: Site, env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    model_dir = _trained(tmp_path / "build", "gender", [{"age": 31}], 0.8)
    site.served = {"release": "b2", "model": "gender", "version": "0123456789ab"}
    with pytest.raises(release.ReleaseError, match=f"not release b2 model version {model_version(model_dir)}"):
        release.smoke("vms", "staging", "gender", "reg/mlship:b2", model_dir, env, wait_seconds=0)
    assert site.requests == []
    assert not (Path(env["RELEASE_STORE"]) / "staging" / "gender" / "current.json").exists()


def test_smoke_fails_on_a_prediction_error_and_records_nothing(site: Site, env: dict[str, str],
                                                               tmp_path: Path) -> None:
    model_dir = _trained(tmp_path / "build", "gender", [{"age": 31}], 0.8)
    site.served = {"release": "b2", "model": "gender", "version": model_version(model_dir)}
    site.invocations_status = 503
    with pytest.raises(release.ReleaseError, match=r"http://127\.0\.0\.1:\d+: POST /invocations answered 503"):
        release.smoke("vms", "staging", "gender", "reg/mlship:b2", model_dir, env, wait_seconds=0)
    assert not (Path(env["RELEASE_STORE"]) / "staging" / "gender" / "current.json").exists()


def test_a_failed_champion_command_is_reported_whole(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                     tmp_path: Path) -> None:
    # A DeployError message with the container's log after it; the cause is on the first line.
    stderr = ("deploy: FAILED vm1: /ping not 200 after 60s (last: 503); its log ends:\n"
              "  ERROR model failed to load: warmup.json is empty\n"
              "  INFO worker exiting\n")
    monkeypatch.setattr(release, "_run", lambda argv: subprocess.CompletedProcess(argv, 1, "", stderr))
    note = release.champion("vms", "gender", tmp_path / "champion", env)
    assert note["found"] is False
    assert note["reason"] == ("the champion command failed (exit 1): vm1: /ping not 200 after 60s (last: 503); "
                              "its log ends: | ERROR model failed to load: warmup.json is empty | INFO worker exiting")
    traceback = "Traceback (most recent call last):\n  File \"x\", line 1\nbotocore.exceptions.NoCredentialsError: x\n"
    assert release.failure_message(traceback) == "botocore.exceptions.NoCredentialsError: x"


def test_after_a_rollback_the_ledger_names_the_release_that_serves(
        monkeypatch: pytest.MonkeyPatch, site: Site, env: dict[str, str], tmp_path: Path) -> None:
    deployed: list[list[str]] = []

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        deployed.append(argv)
        return subprocess.CompletedProcess(argv, 0, "{}", "")

    monkeypatch.setattr(release, "_run", run)
    # build 1 released A; build 2 deploys B, whose smoke test passes on this stage ...
    first = _trained(tmp_path / "b1", "gender", [{"age": 31}], 0.8)
    site.served = {"release": "aaa", "version": model_version(first)}
    release.smoke("vms", "staging", "gender", "reg/mlship:aaa", first, env, wait_seconds=0)
    second = _trained(tmp_path / "build", "gender", [{"age": 31}], 0.9)
    out = release.deploy("vms", "staging", "gender", "reg/mlship:bbb", second.parent.parent / "model.tar.gz", env)
    assert out["previous"]["image"] == "reg/mlship:aaa"
    site.served = {"release": "bbb", "version": model_version(second)}
    release.smoke("vms", "staging", "gender", "reg/mlship:bbb", second, env, wait_seconds=0)
    assert _ledger(env, "staging", "gender")["image"] == "reg/mlship:bbb"
    # ... then production fails, and the pipeline rolls staging back to A
    done = release.rollback("vms", "staging", env)
    assert done["rollback"] == {"gender": "rolled back to reg/mlship:aaa"}
    again = deployed[-1]
    assert again[again.index("--image") + 1] == "reg/mlship:aaa"
    kept = Path(again[again.index("--model-tar") + 1])
    assert kept.read_bytes() == b"tar of 0.8"  # the ledger's copy of A's model, not the workspace's
    ledger = _ledger(env, "staging", "gender")
    assert ledger["image"] == "reg/mlship:aaa" and ledger["version"] == model_version(first)
    assert ledger["rolled_back_from"] == "reg/mlship:bbb" and ledger["rolled_back_by"] == "jenkins-mlship-main-7"
    # the next build's deploy takes A (what serves) as the release to go back to
    nxt = release.deploy("vms", "staging", "gender", "reg/mlship:ccc", second.parent.parent / "model.tar.gz", env)
    assert nxt["previous"]["image"] == "reg/mlship:aaa"
    assert release.rollback("vms", "production", env)["rollback"] == \
        "nothing was deployed to this stage by this build"
