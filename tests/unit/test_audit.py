"""scripts/audit.py's reading of pip-audit's report. The index is a fake here (a dict of project
pages) because the point is what counts as audited, vulnerable or waived, not the network."""

from __future__ import annotations

from typing import Any

import pytest

from scripts import audit

VULN = {"id": "PYSEC-2026-1", "aliases": ["CVE-2026-0001"], "fixed_in": ["2.0"], "withdrawn": None}


def _pages(**latest: tuple[str, list[dict[str, Any]]]) -> audit.Fetch:
    def fetch(url: str) -> dict[str, Any]:
        name = url.split("/pypi/")[1].split("/")[0]
        version, vulns = latest[name]
        return {"info": {"version": version}, "vulnerabilities": vulns}
    return fetch


def _skipped(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


def test_pins_pip_audit_checked_and_newest_releases_count_as_audited() -> None:
    deps = [{"name": "flask", "version": "3.1.3", "vulns": []}, _skipped("numpy", "2.5.5"), _skipped("scipy", "1.17.1")]
    out = audit.classify(deps, {}, _pages(numpy=("2.5.5", []), scipy=("1.18.1", [])))
    assert out == {"audited": 2, "vulnerable": [], "waived": [], "unaudited": ["scipy==1.17.1"]}


def test_a_vulnerability_fails_unless_waived_by_id_or_alias() -> None:
    deps = [_skipped("jinja2", "3.1.6"), {"name": "flask", "version": "3.1.3", "vulns": [
        {"id": "GHSA-x", "aliases": [], "fix_versions": ["3.1.4"]}]}]
    pages = _pages(jinja2=("3.1.6", [VULN, {**VULN, "id": "PYSEC-old", "withdrawn": "2026-01-01"}]))
    out = audit.classify(deps, {}, pages)
    assert [v["id"] for v in out["vulnerable"]] == ["PYSEC-2026-1", "GHSA-x"]
    assert out["vulnerable"][1] == {"package": "flask==3.1.3", "id": "GHSA-x", "aliases": [], "fixed_in": ["3.1.4"]}
    out = audit.classify(deps, {"CVE-2026-0001": "templates are ours", "GHSA-x": "no such route"}, pages)
    assert out["vulnerable"] == [] and out["waived"] == ["CVE-2026-0001", "GHSA-x"]


def test_waivers_need_a_reason() -> None:
    assert audit.waivers("# header\n\nPYSEC-1  # only in the docs build\n") == {"PYSEC-1": "only in the docs build"}
    with pytest.raises(ValueError, match="PYSEC-2 is waived without a reason"):
        audit.waivers("PYSEC-2\n")


def test_the_waiver_file_parses() -> None:
    audit.waivers(audit.IGNORE_FILE.read_text())
