"""Known vulnerabilities in the locked requirements: pip-audit against PyPI's vulnerability data.

    python -m scripts.audit            # one JSON summary line; exit 1 on a vulnerability not waived

pip-audit reads each pin's advisories from PyPI (``/pypi/<name>/<version>/json``, the same OSV
data PyPI shows). An index that serves only project pages (``/pypi/<name>/json``, as the mirror
of this workplace does) makes pip-audit skip the pin; the project page still lists the
advisories of the project's newest release, so a pin that *is* the newest release is audited from
there. A pin older than that can be checked by neither: it is listed as ``unaudited`` by name,
never counted as clean.

A pin that cannot be the newest release (the newest needs a newer Python, or another pin caps it)
is named in requirements/audit-held.txt with what holds it back; it is listed as ``held`` with that
reason, apart from pins that are merely behind (``unaudited``: move them to the newest release). A
held pin is checked against the advisories still open in the newest release (an advisory open
there is taken as open in the older pin too); advisories fixed between the two cannot be seen here.

A vulnerability that does not apply is waived in requirements/audit-ignore.txt: its id, then
``#`` and why (which code path, which fix is not possible yet). The ids go to pip-audit's
``--ignore-vuln``; an id waived without a reason fails the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements/runtime.lock", "requirements/dev.lock", "requirements/sagemaker-sdk.lock")
IGNORE_FILE = ROOT / "requirements" / "audit-ignore.txt"
HELD_FILE = ROOT / "requirements" / "audit-held.txt"
PROJECT_URL = "https://pypi.org/pypi/{name}/json"
NOT_SERVED = "Dependency not found on PyPI"

Fetch = Callable[[str], dict[str, Any]]


def _reasons(text: str, source: str, what: str) -> dict[str, str]:
    """``KEY  # why`` lines -> {key: why}; a line without a reason is an error."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, why = line.partition("#")
        if not why.strip():
            raise ValueError(f"{source}:{number}: {key.strip()} is {what} without a reason")
        out[key.strip()] = why.strip()
    return out


def waivers(text: str) -> dict[str, str]:
    """audit-ignore.txt -> {vulnerability id: why it does not apply}."""
    return _reasons(text, IGNORE_FILE.name, "waived")


def holds(text: str) -> dict[str, str]:
    """audit-held.txt -> {name==version (name normalised): what holds it back}."""
    return {_normalise(pin): why for pin, why in _reasons(text, HELD_FILE.name, "held").items()}


def _normalise(pin: str) -> str:
    name, _, version = pin.partition("==")
    return f"{name.strip().lower().replace('_', '-')}=={version.strip()}"


def _fetch(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def _vuln_ids(vuln: dict[str, Any]) -> set[str]:
    return {str(vuln.get("id"))} | {str(a) for a in vuln.get("aliases") or ()}


def classify(dependencies: Iterable[dict[str, Any]], waived: dict[str, str],
             fetch: Fetch = _fetch, held: dict[str, str] | None = None) -> dict[str, Any]:
    """pip-audit's JSON dependencies -> audited / vulnerable / waived / held / unaudited."""
    audited: list[str] = []
    unaudited: list[str] = []
    held_found: dict[str, str] = {}
    vulnerable: list[dict[str, Any]] = []
    waived_found: list[str] = []
    for dep in dependencies:
        name = str(dep["name"])
        vulns: list[dict[str, Any]] = list(dep.get("vulns") or [])
        if "skip_reason" in dep:
            version = str(dep["skip_reason"]).rsplit("(", 1)[-1].rstrip(")")
            if NOT_SERVED not in str(dep["skip_reason"]):
                unaudited.append(f"{name}=={version}")
                continue
            project = fetch(PROJECT_URL.format(name=name))
            vulns = [v for v in project.get("vulnerabilities") or [] if not v.get("withdrawn")]
            dep = {**dep, "version": version}
            if project["info"]["version"] != version:
                pin = f"{name}=={version}"
                why = (held or {}).get(_normalise(pin))
                if why is None:
                    unaudited.append(pin)
                    continue
                # What is still open in the newest release is taken as open here too (it can only
                # have been introduced later, which a reviewer waives); what was fixed in between
                # cannot be seen, so the pin is not counted as audited.
                held_found[pin] = f"{why} (newest: {project['info']['version']})"
            else:
                audited.append(name)
        else:
            audited.append(name)
        for vuln in vulns:
            ids = _vuln_ids(vuln)
            if ids & waived.keys():
                waived_found.extend(sorted(ids & waived.keys()))
                continue
            vulnerable.append({"package": f"{name}=={dep.get('version')}", "id": vuln.get("id"),
                               "aliases": vuln.get("aliases") or [],
                               "fixed_in": vuln.get("fix_versions") or vuln.get("fixed_in") or []})
    return {"audited": len(audited), "vulnerable": vulnerable, "waived": sorted(set(waived_found)),
            "held": dict(sorted(held_found.items())), "unaudited": sorted(unaudited)}


def run_pip_audit(waived: dict[str, str]) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "pip_audit", "--disable-pip", "--no-deps", "--progress-spinner", "off",
           "--vulnerability-service", "pypi", "--format", "json"]
    for lock in LOCKS:
        cmd += ["-r", str(ROOT / lock)]
    for vuln_id in waived:
        cmd += ["--ignore-vuln", vuln_id]
    # Exit code 1 means "found something"; the JSON says what, and classify() decides.
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = done.stderr.strip()[-500:]
        raise RuntimeError(f"pip-audit failed (exit {done.returncode}): {tail}") from None
    return list(report["dependencies"])


def main() -> int:
    try:
        waived = waivers(IGNORE_FILE.read_text() if IGNORE_FILE.exists() else "")
        held = holds(HELD_FILE.read_text() if HELD_FILE.exists() else "")
        summary = classify(run_pip_audit(waived), waived, held=held)
    except (ValueError, RuntimeError, urllib.error.URLError, OSError) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    ok = not summary["vulnerable"]
    print(json.dumps({"ok": ok, **summary}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
