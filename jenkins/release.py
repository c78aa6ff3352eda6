"""The pipeline's release stages around the deploy targets: read the champion, deploy one family to
one stage (staging or production), smoke-test it, and roll a stage back to its previous release.

    python -m jenkins.release champion --target vms --family gender --out build/champion/gender
    python -m jenkins.release deploy   --target vms --stage staging --family gender \
        --image REG/mlship:TAG --model-tar build/train/gender/model.tar.gz
    python -m jenkins.release smoke    --target vms --stage staging --family gender \
        --image REG/mlship:TAG --model-dir build/train/gender/opt_ml/model
    python -m jenkins.release rollback --target vms --stage production

The targets are deploy.targets' table: `deploy` and `champion` call a target's commands (`python -m
deploy vms|vms-champion|sagemaker|sagemaker-champion`), and `smoke` asks what the target's own client
check asks (deploy.vms.checks.site_smoke, deploy.sagemaker.rollout.client_smoke), with flags and
names built here from the environment Jenkins sets (its parameters and credential bindings), so
one tested place holds the naming conventions:

- SageMaker: endpoint ``$SM_ENDPOINT_PREFIX-<stage>-<family>``, ``$SM_BUCKET``, ``$SM_ROLE_ARN``,
  ``$AWS_REGION``, ``$SM_INSTANCE_TYPE``; ``$AWS_ENDPOINT_URL`` (tests) reaches another implementation.
- VMs: ``$VM_INVENTORY_DIR/<stage>-<family>.json``: the deploy's inventory ({"hosts": [...]}) plus a
  "site" object this module reads: {"url": load balancer URL clients use, "nginx_conf", "lb_host"
  ("local" or an ssh alias), "listen", optional "nginx_test", "nginx_reload", "nginx_pid"};
  ``$VM_SSH_CONFIG`` (a bound credentials file), ``$MLAPP_DATABASE_URL`` (bound secret).

The ledger ``$RELEASE_STORE/<stage>/<family>/current.json`` (image, model.tar.gz copy, model
version) names the release a stage serves: a smoke test that passes writes it; `deploy` saves the
ledger's entry as the previous release first, and `rollback` redeploys that previous release for
every family this build touched and writes it back as the ledger's entry. Secrets are never
printed: commands are shown with --database-url masked. Every subcommand prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker import rollout
from deploy.sagemaker.aws import Aws
from deploy.tarball import WARMUP, example_requests
from deploy.targets import TARGETS
from deploy.vms import checks
from deploy.vms.checks import CheckFailed
from jenkins import families
from modelformat.manifest import model_version

STAGES = ("staging", "production")
SECRET_FLAGS = frozenset({"--database-url"})


class ReleaseError(Exception):
    """A release step that did not work; the message says what serves and what to do."""


def _env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise ReleaseError(f"${name} is empty: set the Jenkins parameter (or binding) {name}")
    return value


def shown(argv: Sequence[str]) -> str:
    """The command as a log may show it: secret flag values replaced by ****."""
    out, hide = [], False
    for word in argv:
        out.append("****" if hide else shlex.quote(word))
        hide = word in SECRET_FLAGS
    return " ".join(out)


# --- the deploy targets' command lines ---------------------------------------------------------
def endpoint(environ: Mapping[str, str], stage: str, family: str) -> str:
    return f"{environ.get('SM_ENDPOINT_PREFIX') or 'mlship'}-{stage}-{family}"


def _aws(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """The region and the endpoint URL (another implementation of the AWS APIs, or None)."""
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return region, environ.get("AWS_ENDPOINT_URL") or None


def _aws_flags(environ: Mapping[str, str]) -> list[str]:
    region, url = _aws(environ)
    return ["--region", region, *(["--endpoint-url", url] if url else [])]


def inventory(environ: Mapping[str, str], stage: str, family: str) -> tuple[Path, dict[str, Any]]:
    """The inventory file of one stage and family, and its "site" object (checked)."""
    path = Path(_env(environ, "VM_INVENTORY_DIR")) / f"{stage}-{family}.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"inventory {path} cannot be read ({exc})") from None
    site = raw.get("site") if isinstance(raw, dict) else None
    if not isinstance(site, dict) or not site.get("url") or not site.get("nginx_conf"):
        raise ReleaseError(f"inventory {path} needs a \"site\" object with \"url\" and \"nginx_conf\"")
    return path, site


def deploy_argv(target: str, stage: str, family: str, image: str, model_tar: Path,
                environ: Mapping[str, str]) -> list[str]:
    """`python -m deploy TARGET ...` for one family on one stage (the flags: this pipeline's
    conventions for the target deploy.targets names)."""
    py = [sys.executable, "-m", "deploy", TARGETS[target].name]
    if target == "sagemaker":
        return [*py, "--image-uri", image, "--model-tar", str(model_tar),
                "--bucket", _env(environ, "SM_BUCKET"), "--endpoint", endpoint(environ, stage, family),
                "--role", _env(environ, "SM_ROLE_ARN"),
                "--instance-type", environ.get("SM_INSTANCE_TYPE") or "ml.m5.large", *_aws_flags(environ)]
    path, site = inventory(environ, stage, family)
    argv = [*py, "--image", image, "--inventory", str(path), "--model-tar", str(model_tar),
            "--nginx-host", str(site.get("lb_host") or "local"), "--nginx-conf", str(site["nginx_conf"]),
            "--listen", str(site.get("listen") or "80")]
    for key in ("nginx_test", "nginx_reload", "nginx_pid"):
        if site.get(key):
            argv += [f"--{key.replace('_', '-')}", str(site[key])]
    if environ.get("VM_SSH_CONFIG"):
        argv += ["--ssh-config", environ["VM_SSH_CONFIG"]]
    if environ.get("MLAPP_DATABASE_URL"):
        argv += ["--database-url", environ["MLAPP_DATABASE_URL"]]
    return argv + shlex.split(environ.get("VM_DEPLOY_ARGS", ""))


def champion_argv(target: str, family: str, out: Path, environ: Mapping[str, str]) -> list[str]:
    """The champion is what production serves: the target's champion command (`deploy
    vms-champion` / `deploy sagemaker-champion`)."""
    py = [sys.executable, "-m", "deploy", TARGETS[target].champion_command]
    if target == "sagemaker":
        return [*py, "--endpoint", endpoint(environ, "production", family),
                "--out", str(out), *_aws_flags(environ)]
    _, site = inventory(environ, "production", family)
    return [*py, "--urls", str(site["url"]), "--out", str(out)]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    print(f"release: $ {shown(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    return done


def failure_message(stderr: str) -> str:
    """What a failed deploy command said, whole: from its last `deploy: FAILED ` line to the end (a
    DeployError names what serves and what to do, and may carry a container's log lines after it),
    else the last line (an exception's). One line: the parts joined by " | "."""
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("deploy: FAILED ")]
    if starts:
        tail = lines[starts[-1]:]
        return " | ".join([tail[0][len("deploy: FAILED "):], *(line.strip() for line in tail[1:])])
    return lines[-1].strip() if lines else "no message"


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


# --- champion ----------------------------------------------------------------------------------
def champion(target: str, family: str, out: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """Fill ``out`` for `jenkins.gate --champion`: the champion's model.json, or champion.json
    saying why there is none (first release, endpoint missing, hosts unreachable)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    done = _run(champion_argv(target, family, out, environ))
    result = _last_json(done.stdout)
    if done.returncode == 0 and (out / "model.json").is_file():
        return {"family": family, "found": True, "champion": str(out / "model.json"), **result}
    if done.returncode == 0:
        reason = str(result.get("reason") or "the target reports no champion")
    else:
        reason = f"the champion command failed (exit {done.returncode}): {failure_message(done.stderr)}"
    note = {"found": False, "family": family, "target": target, "reason": reason}
    (out / "champion.json").write_text(json.dumps(note, indent=1))
    return note


# --- ledger ------------------------------------------------------------------------------------
def _ledger(environ: Mapping[str, str], stage: str, family: str) -> Path:
    return Path(_env(environ, "RELEASE_STORE")) / stage / family


def _work(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("WORK") or "build") / "release"


def deploy(target: str, stage: str, family: str, image: str, model_tar: Path,
           environ: Mapping[str, str]) -> dict[str, Any]:
    """Note the stage's previous release, then run the target's deploy (which rolls back its own
    failures); a family deployed here is one `rollback` puts back."""
    if not model_tar.is_file():
        raise ReleaseError(f"{model_tar} does not exist: did the Train stage run?")
    work = _work(environ) / stage
    work.mkdir(parents=True, exist_ok=True)
    current = _ledger(environ, stage, family) / "current.json"
    previous = json.loads(current.read_text()) if current.is_file() else None
    (work / f"{family}.previous.json").write_text(json.dumps(previous))
    (work / f"{family}.touched").write_text(image)
    done = _run(deploy_argv(target, stage, family, image, model_tar, environ))
    if done.returncode != 0:
        raise ReleaseError(f"deploy {target} of {family} to {stage} failed (exit {done.returncode}): "
                           f"{failure_message(done.stderr)}")
    return {"stage": stage, "family": family, "image": image, "previous": previous,
            "deploy": _last_json(done.stdout)}


# --- smoke -------------------------------------------------------------------------------------
def smoke(target: str, stage: str, family: str, image: str, model_dir: Path,
          environ: Mapping[str, str], wait_seconds: float = 30) -> dict[str, Any]:
    """What a client of the stage sees, as the target's own client check asks it (deploy.vms.checks
    `site_smoke` through the site's URL, deploy.sagemaker.rollout `client_smoke` through
    InvokeEndpoint): the new release answers, with this model, and predicts its stored warm-up
    examples, one request per kind of record. Passing records the release in the ledger (the next
    rollback's target)."""
    version = model_version(model_dir)  # what serving reports as the version (the manifest's hash)
    examples = json.loads((model_dir / WARMUP).read_text())
    tag = image.rpartition(":")[2]
    try:
        if target == "vms":
            where = str(inventory(environ, stage, family)[1]["url"]).rstrip("/")
            checks.site_smoke(where, tag, version, examples, wait_seconds)
        else:
            where = endpoint(environ, stage, family)
            aws = Aws.connect(*_aws(environ))
            rollout.client_smoke(aws.sm, aws.runtime, where, image, examples)
    except (CheckFailed, DeployError) as exc:
        raise ReleaseError(str(exc)) from None
    _record(environ, stage, family, image, model_dir)
    return {"stage": stage, "family": family, "smoke": "passed", "where": where, "release": tag,
            "version": version, "requests": len(example_requests(examples))}


def _write_ledger(ledger: Path, entry: dict[str, Any]) -> None:
    ledger.mkdir(parents=True, exist_ok=True)
    partial = ledger / "current.json.partial"
    partial.write_text(json.dumps(entry, indent=1))
    partial.replace(ledger / "current.json")


def _record(environ: Mapping[str, str], stage: str, family: str, image: str, model_dir: Path) -> None:
    ledger = _ledger(environ, stage, family)
    ledger.mkdir(parents=True, exist_ok=True)
    tar = model_dir.parent.parent / "model.tar.gz"  # WORKDIR/opt_ml/model -> WORKDIR/model.tar.gz
    kept = ledger / f"{image.rpartition(':')[2]}.tar.gz"
    shutil.copy(tar, kept)
    _write_ledger(ledger, {"image": image, "model_tar": str(kept), "version": model_version(model_dir),
                           "build": environ.get("BUILD_TAG")})


# --- rollback ----------------------------------------------------------------------------------
def rollback(target: str, stage: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Redeploy the previous release of every family this build deployed to ``stage``."""
    work = _work(environ) / stage
    done: dict[str, str] = {}
    failed = []
    for touched in sorted(work.glob("*.touched")):
        family = touched.name.removesuffix(".touched")
        previous = json.loads((work / f"{family}.previous.json").read_text())
        if not previous:
            done[family] = "no previous release on record: nothing to roll back to (the target's own " \
                           "deploy rolled back what it could)"
            continue
        argv = deploy_argv(target, stage, family, previous["image"], Path(previous["model_tar"]), environ)
        run = _run(argv)
        if run.returncode == 0:
            done[family] = f"rolled back to {previous['image']}"
            # the ledger names what serves now: a smoke test of this build may have recorded the
            # release just rolled back, and the next build's rollback target must not be that one
            _write_ledger(_ledger(environ, stage, family), {
                **previous, "rolled_back_from": (work / f"{family}.touched").read_text(),
                "rolled_back_by": environ.get("BUILD_TAG")})
            (work / f"{family}.touched").unlink()
        else:
            failed.append(family)
            done[family] = (f"rollback to {previous['image']} FAILED (exit {run.returncode}): "
                            f"{failure_message(run.stderr)}")
    if failed:
        raise ReleaseError(f"rollback of {stage}: {json.dumps(done)}")
    return {"stage": stage, "rollback": done or "nothing was deployed to this stage by this build"}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m jenkins.release", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    commands = {name: sub.add_parser(name) for name in ("champion", "deploy", "smoke", "rollback")}
    for name, p in commands.items():
        p.add_argument("--target", choices=TARGETS, required=True)
        if name != "champion":
            p.add_argument("--stage", choices=STAGES, required=True)
        if name != "rollback":
            p.add_argument("--family", choices=families.names(), required=True)
    commands["champion"].add_argument("--out", type=Path, required=True)
    for name in ("deploy", "smoke"):
        commands[name].add_argument("--image", required=True)
    commands["deploy"].add_argument("--model-tar", type=Path, required=True)
    commands["deploy"].add_argument("--dry-run", action="store_true", help="print the deploy command only")
    commands["smoke"].add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "champion":
            out = champion(args.target, args.family, args.out, env)
        elif args.cmd == "deploy" and args.dry_run:
            out = {"command": shown(deploy_argv(args.target, args.stage, args.family, args.image,
                                                args.model_tar, env))}
        elif args.cmd == "deploy":
            out = deploy(args.target, args.stage, args.family, args.image, args.model_tar, env)
        elif args.cmd == "smoke":
            out = smoke(args.target, args.stage, args.family, args.image, args.model_dir, env)
        else:
            out = rollback(args.target, args.stage, env)
    except ReleaseError as exc:
        print(f"release: FAILED {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
