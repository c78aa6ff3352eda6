"""deploy vms without VMs: the generated nginx site (checked by a real `nginx -t`), installing it
(a bad one is refused and the previous one stays), the release each host receives, the inventory,
and reading the champion from a host's GET /release (a real local HTTP server)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.__main__ import main as deploy_main
from deploy.errors import DeployError
from deploy.vms import champion
from deploy.vms.containers import Container, Release, env_file_text, run_command
from deploy.vms.hosts import Host, LocalShell, load_inventory, parse_hosts
from deploy.vms.nginx import Nginx, Server, nginx_conf, site_conf
from jenkins import gate

NGINX = "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None and not Path(NGINX).exists(),
                                 reason="nginx is not installed (`./run setup` installs it)")


def _main_conf(tmp_path: Path, site: Path) -> Path:
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
                    f"http {{ access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
                    f"fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};\n"
                    f"include {site}; }}\n")
    return conf


@needs_nginx
def test_vm_nginx_config_is_valid_nginx(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    site.write_text(nginx_conf(["10.0.0.1:8080", "10.0.0.2:8080"], listen=18080))
    check = subprocess.run([NGINX, "-t", "-c", str(_main_conf(tmp_path, site))], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_only_routes_safe_to_send_twice_retry_a_post_nginx_already_sent() -> None:
    site = site_conf([Server("vm1", "10.0.0.1", 8081), Server("vm2", "10.0.0.2", 8082, weight=1, down=True)])
    resent, rest = site.split("location / {")
    assert "invocations" in resent and "non_idempotent" in resent
    # the portal's create and invoke answer a repeated request id from their record; cancel and
    # retry are never sent twice
    assert "api/providers/prediction/(create|invoke))$" in resent
    assert "non_idempotent" not in rest
    # every try carries one request id: the client's, else nginx's own
    assert "map $http_x_request_id $mlship_request_id {" in site and '"" $request_id;' in site
    assert site.count("proxy_set_header X-Request-Id $mlship_request_id;") == 2
    assert "server 10.0.0.1:8081 weight=10" in site and "server 10.0.0.2:8082 weight=1 max_fails=2 fail_timeout=5s down;" in site
    assert "server 127.0.0.1:9 down;" in site_conf([])  # nginx needs one server line even before a deploy


@needs_nginx
def test_a_site_nginx_rejects_is_not_installed_and_the_previous_one_stays(tmp_path: Path) -> None:
    site = tmp_path / "conf.d" / "mlship.conf"
    site.parent.mkdir()
    site.write_text(site_conf([Server("vm1", "10.0.0.1", 8081)]))
    main = _main_conf(tmp_path, site)
    lb = Nginx(LocalShell(), "local", str(site), test_command=f"{NGINX} -t -q -c {main}",
               reload_command="false", listen="not-a-port:x")
    before = site.read_text()
    with pytest.raises(DeployError, match="nginx -t"):
        lb.apply([Server("vm1", "10.0.0.1", 8082)])
    assert site.read_text() == before and not (tmp_path / "conf.d" / "mlship.conf.new").exists()


def test_the_release_reaches_the_host_explicitly() -> None:
    host = Host("vm1", "10.0.0.1", (8081, 8082), prefix="mlship", state_dir="/srv/mlship")
    release = Release(label="abc123", image="reg/mlship:abc123", model_dir="{state_dir}/models/abc",
                      model_repository="/srv/repo", environment={"MLAPP_DATABASE_URL": "postgresql://u:pw@db/x"},
                      workers=2)
    green = Container(host, "blue").other()
    assert (green.name, green.port, green.env_file) == ("mlship-green", 8082, "/srv/mlship/mlship-green.env")
    env = env_file_text(release, green.port).splitlines()
    assert "MLAPP_DATABASE_URL=postgresql://u:pw@db/x" in env and "MLSHIP_RELEASE=abc123" in env
    assert "SAGEMAKER_BIND_TO_PORT=8082" in env and "SAGEMAKER_MODEL_SERVER_WORKERS=2" in env
    command = run_command(release, green)
    assert "--restart always" in command and "--stop-timeout 30" in command  # > gunicorn's 25 s
    assert "-v /srv/mlship/models/abc:/opt/ml/model:ro" in command and "reg/mlship:abc123 serve" in command
    assert "pw" not in command  # the secret travels in the 0600 env file, not on a command line
    with pytest.raises(DeployError, match="env file"):
        env_file_text(Release("r", "i", "/m", environment={"BAD": "two\nlines"}), 8081)


def test_inventory_and_hosts(tmp_path: Path) -> None:
    assert parse_hosts("vm1,vm2=10.0.0.2") == [Host("vm1", "vm1"), Host("vm2", "10.0.0.2")]
    assert parse_hosts("10.0.0.1:8080")[0].ports == (8080, 8081)  # the old host:port form
    inventory = tmp_path / "vms.json"
    inventory.write_text(json.dumps({"hosts": [{"name": "a", "address": "10.0.0.9", "ports": [9001, 9002]}]}))
    assert load_inventory(inventory) == [Host("a", "10.0.0.9", (9001, 9002))]
    inventory.write_text(json.dumps([{"name": "a", "ports": [9001, 9001]}]))
    with pytest.raises(DeployError, match="two different ports"):
        load_inventory(inventory)


def test_cli_refuses_before_touching_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_main(["vms", "--image", "reg/mlship:1", "--nginx-conf", str(tmp_path / "s.conf"),
                        "--hosts", "vm1", "--model-tar", str(tmp_path / "missing.tar.gz")]) == 1
    assert "does not exist; nothing was changed" in capsys.readouterr().err
    assert deploy_main(["vms", "--image", "reg/mlship:1", "--nginx-conf", "x", "--model-dir", "/m"]) == 1
    assert "give --hosts or --inventory" in capsys.readouterr().err


@pytest.fixture
def release_server() -> Iterator[str]:
    """A host's GET /release as the serving image answers it."""
    manifest = {"algorithm": "xgboost", "metrics": {"roc_auc": 0.71, "logloss": 0.6}}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"release": "abc", "model": "gender", "version": "v9",
                               "manifest": manifest}).encode()
            self.send_response(200 if self.path == "/release" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_champion_from_the_vms_is_what_the_gate_compares_with(release_server: str, tmp_path: Path) -> None:
    from tests.e2e.helpers import free_port

    out = champion.fetch_champion([release_server, f"http://127.0.0.1:{free_port()}"], tmp_path / "champ")
    assert out["release"] == "abc" and out["metrics"]["roc_auc"] == 0.71 and len(out["unreachable"]) == 1
    assert gate.read_champion(tmp_path / "champ").metrics == {"roc_auc": 0.71, "logloss": 0.6}
    with pytest.raises(DeployError, match="no host answered"):
        champion.fetch_champion([f"http://127.0.0.1:{free_port()}"], tmp_path / "none")


def test_a_model_tarball_whose_member_escapes_is_refused_before_any_host_is_touched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    from deploy.__main__ import main

    evil = tmp_path / "model.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = b"{}"
        member = tarfile.TarInfo("../../etc/cron.d/model.json")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    code = main(["vms", "--image", "reg/mlship:abc", "--hosts", "vm1=127.0.0.1", "--model-tar", str(evil),
                 "--nginx-conf", str(tmp_path / "site.conf"), "--transport", "local"])
    assert code == 1
    assert "points outside the model directory" in capsys.readouterr().err
    assert not (tmp_path / "site.conf").exists()


def test_smoke_requests_keep_each_kind_of_warm_up_record_apart() -> None:
    from deploy.tarball import example_requests

    pair, top, other_pair = {"user": "u1", "item": "i1"}, {"user": "u1", "k": 5}, {"user": "u2", "item": "i9"}
    assert example_requests([pair, top, other_pair]) == [[pair, other_pair], [top]]
    device = {"device_id": 1, "phone_brand": "x"}
    assert example_requests([device, device]) == [[device, device]]


def _tarball(tmp: Path, text: str) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in (("model.json", text), ("warmup.json", "[]")):
            info = tarfile.TarInfo(name)
            info.size = len(body.encode())
            tar.addfile(info, io.BytesIO(body.encode()))
    return buffer.getvalue()


def test_a_model_folder_is_written_once_and_the_same_tarball_again_changes_nothing(tmp_path: Path) -> None:
    from deploy.vms.containers import HASH_FILE, Podman


    host = Host("vm1", "127.0.0.1", state_dir=str(tmp_path))
    podman = Podman(LocalShell())
    folder = tmp_path / "models" / "a1"
    first = _tarball(tmp_path, '{"v": 1}')
    assert podman.upload_model(host, first, str(folder)) is True
    assert (folder / "model.json").read_text() == '{"v": 1}'
    stamp = (folder / HASH_FILE).read_text().strip()
    before = (folder.stat().st_ino, (folder / "model.json").stat().st_ino, (folder / "model.json").stat().st_mtime_ns)
    # the same tarball again (a re-deploy): not one file touched, the folder never empty
    assert podman.upload_model(host, first, str(folder)) is False
    assert (folder.stat().st_ino, (folder / "model.json").stat().st_ino,
            (folder / "model.json").stat().st_mtime_ns) == before
    # other contents under the same folder name are refused, and the folder is left as it was
    with pytest.raises(DeployError, match="already holds another model"):
        podman.upload_model(host, _tarball(tmp_path, '{"v": 2}'), str(folder))
    assert (folder / "model.json").read_text() == '{"v": 1}' and (folder / HASH_FILE).read_text().strip() == stamp
    mine = tmp_path / "models" / "hand-made"
    mine.mkdir()
    with pytest.raises(DeployError, match="tarball unknown"):
        podman.upload_model(host, first, str(mine))
    assert not list(tmp_path.glob("models/*.part-*"))  # no half-written folder left behind


def test_old_model_folders_are_pruned_only_when_no_container_mounts_them(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`podman container inspect` of the host's two colours names the folders in use (here a stand-in
    podman on PATH answers as the real one does); folders the deploy did not unpack are never touched."""
    from deploy.vms.containers import Podman


    host = Host("vm1", "127.0.0.1", prefix="mlship", state_dir=str(tmp_path))
    podman = Podman(LocalShell())
    models = tmp_path / "models"
    for n in range(4):
        podman.upload_model(host, _tarball(tmp_path, f'{{"v": {n}}}'), str(models / f"m{n}"))
    (models / "hand-made").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "podman"
    # blue (stopped, the rollback) mounts m1, green (running) mounts m2
    fake.write_text(f"""#!/bin/sh
case "$5" in
  mlship-blue) printf '{models}/m1\\n/srv/repo\\n' ;;
  mlship-green) printf '{models}/m2/\\n' ;;
  *) exit 125 ;;
esac
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert podman.mounted(host) == {f"{models}/m1", "/srv/repo", f"{models}/m2"}
    gone = podman.prune_models(host, str(models), keep={str(models / "m3")})
    assert gone == [f"{models}/m0"]
    assert sorted(p.name for p in models.iterdir()) == ["hand-made", "m1", "m2", "m3"]
