"""The deploy targets the pipeline's end-to-end test runs against, on this machine.

- VMs: one deploy.lab.Lab per stage and family (the Jenkinsfile deploys each family to a site of its
  own: STAGE-FAMILY.json), each a real sshd and a real nginx in front of one "VM" running the image
  with podman; one ssh config naming every VM, as the Jenkins secret file would.
- SageMaker: moto's server, in this process, with two additions moto 5.2.5 lacks. UpdateEndpoint
  (moto answers 500): the endpoint moves to the new config at once, as a successful update ends.
  InvokeEndpoint: moto has no container behind an endpoint and answers from a queue of canned
  results (POST /moto-api/static/sagemaker/endpoint-results) handed out in call order across all
  endpoints and cached per request body for good, so a queue ties a test to the exact number and
  order of invocations of every deploy, smoke test and rollback, across builds (and moto 5.2.5 keys
  them by an endpoint name it loses: None). Here the answer is still canned, but shaped by the
  request: one prediction per instance sent, or the ModelError a failing container gives, for an
  (endpoint, image) the test marks as broken.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jenkins import families
from tests.lab import NGINX, Lab

STAGES = ("staging", "production")
FAMILIES = families.names()  # as training/<family>/family.py declares them


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300]
    except OSError as exc:
        return 0, str(exc)


# --- VMs -------------------------------------------------------------------------------------------
@dataclass
class VmSites:
    """Four labs (stage x family), their inventories in ``inventory``, one ``ssh_config``."""

    labs: dict[tuple[str, str], Lab]
    inventory: Path
    ssh_config: Path

    def site(self, stage: str, family: str) -> dict[str, Any]:
        return dict(json.loads((self.inventory / f"{stage}-{family}.json").read_text()))

    def write_site(self, stage: str, family: str, inventory: dict[str, Any]) -> None:
        (self.inventory / f"{stage}-{family}.json").write_text(json.dumps(inventory, indent=1))

    def served(self, stage: str, family: str) -> dict[str, Any]:
        """GET /release through the stage's load balancer: what its clients get."""
        status, body = get_json(f"{self.labs[(stage, family)].url}/release")
        assert status == 200, (stage, family, status, body)
        return dict(body)


def _inventory(stage: str, family: str, lab: Lab) -> dict[str, Any]:
    main = lab.nginx_main
    return {"hosts": [{"name": f"{stage}-{family}-{h.name}", "address": h.address, "ports": list(h.ports),
                       "prefix": h.prefix, "state_dir": h.state_dir} for h in lab.hosts],
            "site": {"url": lab.url, "lb_host": "local", "nginx_conf": str(lab.site),
                     "listen": f"127.0.0.1:{lab.lb_port}", "nginx_test": f"{NGINX} -t -q -c {main}",
                     "nginx_reload": f"{NGINX} -s reload -c {main}",
                     "nginx_pid": str(lab.dir / "nginx" / "nginx.pid")}}


@contextlib.contextmanager
def vm_sites(root: Path, prefix: str) -> Iterator[VmSites]:
    for binary in ("/usr/sbin/sshd", NGINX):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is not installed; `./run setup` installs openssh-server and nginx")
    inventory = root / "inventory"
    inventory.mkdir()
    blocks = []
    with contextlib.ExitStack() as stack:
        labs = {}
        for stage in STAGES:
            for family in FAMILIES:
                lab = stack.enter_context(Lab(1, prefix=prefix))
                labs[(stage, family)] = lab
                (inventory / f"{stage}-{family}.json").write_text(json.dumps(_inventory(stage, family, lab)))
                # every lab names its VMs vm1..: one ssh config for all needs names of their own
                blocks.append(re.sub(r"^Host (vm\d+)$", rf"Host {stage}-{family}-\1",
                                     lab.ssh_config.read_text(), flags=re.MULTILINE))
        ssh_config = root / "ssh_config"
        ssh_config.write_text("\n".join(blocks))
        yield VmSites(labs, inventory, ssh_config)


class RefusingFront:
    """A front that clients of a site reach instead of its load balancer: GET goes through to it,
    POST is refused with a 503, as a proxy or firewall rule in front of the site would refuse it.
    Every container still passes the deploy's own checks; only what a client sees is broken."""

    def __init__(self, behind: str) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                try:
                    with urllib.request.urlopen(f"{behind}{self.path}", timeout=10) as r:
                        self._send(r.status, r.read())
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read())

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                front.refused += 1
                self._send(503, b'{"error": {"code": "refused", "message": "the front refuses POST"}}')

        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RefusingFront:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- SageMaker on moto -----------------------------------------------------------------------------
@dataclass
class Moto:
    url: str
    broken: set[tuple[str, str]] = field(default_factory=set)  # (endpoint, image) whose container fails
    invocations: list[tuple[str, str, int]] = field(default_factory=list)  # (endpoint, image, instances)

    def backend(self) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends["123456789012"]["us-east-1"]

    def image_of(self, endpoint: str) -> str:
        """The image of the model the endpoint's config routes to (its first variant)."""
        sm = self.backend()
        config = sm.describe_endpoint_config(sm.endpoints[endpoint].endpoint_config_name)
        return str(sm.describe_model(config["ProductionVariants"][0]["ModelName"]).primary_container["Image"])

    def config_of(self, endpoint: str) -> str:
        return str(self.backend().endpoints[endpoint].endpoint_config_name)


def _update_endpoint(self: Any) -> Any:
    """SageMakerResponse.update_endpoint: the update succeeds at once (no Updating phase)."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError

    backend = self.sagemaker_backend
    name, config = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    variants = backend.describe_endpoint_config(config)["ProductionVariants"]
    endpoint.endpoint_config_name = config
    endpoint.production_variants = endpoint._process_production_variants(variants)
    endpoint.last_modified_time = utcnow()
    return ActionResult({"EndpointArn": endpoint.arn})


@contextlib.contextmanager
def moto_sagemaker() -> Iterator[Moto]:
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.server import ThreadedMotoServer

    from tests.e2e.helpers import free_port

    class ModelError(JsonRESTError):
        code = 424

    port = free_port()
    moto = Moto(f"http://127.0.0.1:{port}")

    def invoke_endpoint(self: Any) -> tuple[int, dict[str, str], str]:
        """SageMakerRuntimeResponse.invoke_endpoint (moto 5.2.5 loses the endpoint's name, which is
        in the path: /endpoints/NAME/invocations)."""
        endpoint_name = self.path.split("/")[2]
        image = moto.image_of(endpoint_name)
        sent = json.loads(self.body)["instances"]
        moto.invocations.append((endpoint_name, image, len(sent)))
        if (endpoint_name, image) in moto.broken:
            raise ModelError("ModelError", f"Received server error (500) from primary with message "
                             f"\"the container of {image} failed\"")
        body = json.dumps({"predictions": [{"canned": True} for _ in sent]})
        return 200, {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, body

    patch = pytest.MonkeyPatch()
    patch.setattr(SageMakerResponse, "update_endpoint", _update_endpoint, raising=False)
    patch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        urllib.request.urlopen(urllib.request.Request(f"{moto.url}/moto-api/reset", method="POST")).close()
        yield moto
    finally:
        server.stop()
        patch.undo()


def copy_training(source: Path, target: Path) -> None:
    """A workspace's Train stage outputs (opt_ml trees and model.tar.gz), into another workspace."""
    shutil.copytree(source / "build" / "train", target / "build" / "train", symlinks=True)
