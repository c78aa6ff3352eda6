"""What the deploy asks a container directly (not through nginx) before and after it takes traffic:
/ping, GET /release, a smoke prediction of every model it serves through every door, its 5xx rate."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from deploy.tarball import example_requests

JSON = "application/json"


class CheckFailed(Exception):
    """A container did not pass a check; the rollout turns it into a rollback."""


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": JSON, "Accept": JSON, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ping(url: str, seconds: float) -> float:
    """Seconds until /ping answered 200 (the model loaded and its warm-up example predicted)."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < seconds:
        try:
            status, body = http("GET", f"{url}/ping", timeout=3)
            if status == 200:
                return time.monotonic() - started
            last = f"{status} {body[:200].decode(errors='replace')}"
            if status == 503 and b'"failed"' in body:
                break  # the model will not load: no point in waiting longer
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise CheckFailed(f"/ping not 200 after {time.monotonic() - started:.0f}s (last: {last})")


def _get(url: str, path: str, accept: str = JSON) -> bytes:
    """The body of a GET that answered 200; CheckFailed saying what it got otherwise."""
    try:
        status, body = http("GET", f"{url}{path}", headers={"Accept": accept}, timeout=5)
    except OSError as exc:
        raise CheckFailed(f"GET {path}: {exc}") from None
    if status != 200:
        raise CheckFailed(f"GET {path} answered {status}: {body[:200].decode(errors='replace')}")
    return body


def release(url: str) -> dict[str, Any]:
    """GET /release: {"release", "model", "version", "manifest"}."""
    return dict(json.loads(_get(url, "/release")))


def _predictions(status: int, body: bytes, records: list[dict[str, Any]], what: str) -> list[Any]:
    if status != 200:
        raise CheckFailed(f"{what} answered {status}: {body[:300].decode(errors='replace')}")
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"{what} answered 200 without a JSON 'predictions' list: "
                          f"{body[:200].decode(errors='replace')}") from None
    if not isinstance(predictions, list) or len(predictions) != len(records):
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise CheckFailed(f"{what}: {len(records)} example records gave {got} predictions")
    return predictions


def smoke(url: str, records: list[dict[str, Any]], served: dict[str, Any], portal: bool = True,
          portal_headers: dict[str, str] | None = None) -> list[str]:
    """Every model the container will serve to clients, through each door, before it takes
    traffic: the default model's stored example through /invocations; with the portal on, each
    model and version its repository names (GET /api/models, the default one included), with that
    model's own example, through the portal's invoke and through /invocations with
    X-Amzn-SageMaker-Target-Model (SageMaker's multi-model door). What was checked, one line each."""
    checked = []
    try:
        for batch in example_requests(records):
            status, body = http("POST", f"{url}/invocations", batch, timeout=30)
            _predictions(status, body, batch, "POST /invocations")
        checked.append(f"{served.get('model')} {served.get('version')} via /invocations")
        if not portal:
            return checked
        status, body = http("GET", f"{url}/api/models", None, portal_headers, timeout=30)
        if status != 200:
            raise CheckFailed(f"GET /api/models answered {status}: {body[:300].decode(errors='replace')}")
        for model in json.loads(body)["models"]:
            name, version = model["name"], model["version"]
            example = model.get("input_example") or (records if (name, version) == (
                served.get("model"), served.get("version")) else None)
            if not example:
                raise CheckFailed(f"model {name} {version} has no warm-up example to smoke-test it with")
            for batch in example_requests(example):
                what = f"model {name} {version} through POST /api/providers/prediction/invoke"
                ref = {"model": name, "version": version, "input": batch}
                status, body = http("POST", f"{url}/api/providers/prediction/invoke", ref, portal_headers,
                                    timeout=30)
                _predictions(status, body, batch, what)
                status, body = http("POST", f"{url}/invocations", batch,
                                    {"X-Amzn-SageMaker-Target-Model": f"{name}/{version}"}, timeout=30)
                _predictions(status, body, batch, f"model {name} {version} through POST /invocations "
                                                  "with X-Amzn-SageMaker-Target-Model")
            checked.append(f"{name} {version} via the portal and the target-model header")
    except OSError as exc:
        raise CheckFailed(f"smoke request: {exc}") from None
    return checked


def site_smoke(url: str, release_tag: str, version: str, records: list[dict[str, Any]],
               wait_seconds: float = 30, poll: float = 1) -> list[str]:
    """What a client of a site (nginx in front of the hosts) sees once a rollout is done: GET
    /release names this release and model version (nginx may route to the old colour a moment
    longer), and the stored examples predict through its /invocations, as `smoke` checks a
    container's. What was checked, one line each; CheckFailed names the site and what it answered."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            served = release(url)
            if served.get("release") == release_tag and served.get("version") == version:
                break
            seen = json.dumps(served, default=str)[:300]
        except CheckFailed as exc:
            seen = str(exc)
        if time.monotonic() > deadline:
            raise CheckFailed(f"{url}/release answers {seen}, not release {release_tag} "
                              f"model version {version}")
        time.sleep(poll)
    try:
        return smoke(url, records, served, portal=False)
    except CheckFailed as exc:
        raise CheckFailed(f"{url}: {exc}") from None


def server_errors(url: str) -> tuple[float, float]:
    """(all requests, 5xx answers) the container counted since it started (GET /metrics)."""
    total = errors = 0.0
    for line in _get(url, "/metrics", "text/plain").decode().splitlines():
        if not line.startswith("mlship_http_requests_total{") or any(
                f'route="{own}"' in line for own in ("/metrics", "/ping", "/release")):
            continue  # the deploy's own probes
        labels, _, value = line.rpartition(" ")
        total += float(value)
        if 'status="5' in labels:
            errors += float(value)
    return total, errors


@dataclass(frozen=True)
class Watch:
    """How a container that just took traffic is judged: /ping and its 5xx share over ``seconds``."""

    seconds: float = 10.0
    max_error_rate: float = 0.01
    interval: float = 0.5

    def run(self, url: str) -> dict[str, float]:
        total0, errors0 = server_errors(url)
        deadline = time.monotonic() + self.seconds
        total, errors = total0, errors0
        while True:
            try:
                status, _ = http("GET", f"{url}/ping", timeout=3)
            except OSError as exc:
                raise CheckFailed(f"/ping failed while taking traffic: {exc}") from None
            if status != 200:
                raise CheckFailed(f"/ping answered {status} while taking traffic")
            total, errors = server_errors(url)
            requests, failed = total - total0, errors - errors0
            if requests and failed / requests > self.max_error_rate:
                raise CheckFailed(f"{failed:g} of {requests:g} requests answered 5xx while taking traffic "
                                  f"(allowed {self.max_error_rate:.1%})")
            if time.monotonic() >= deadline:
                return {"requests": requests, "errors": failed}
            time.sleep(self.interval)
