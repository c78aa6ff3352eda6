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
    assert out == {"audited": 2, "vulnerable": [], "waived": [], "held": {}, "unaudited": ["scipy==1.17.1"]}


def test_a_pin_held_back_is_listed_with_its_reason_and_a_pin_merely_behind_is_not() -> None:
    deps = [_skipped("scipy", "1.17.1"), _skipped("Python_Dateutil", "2.9.0"), _skipped("boto3", "1.44.5")]
    pages = _pages(scipy=("1.18.1", []), Python_Dateutil=("4.0.0", []), boto3=("1.44.8", []))
    held = audit.holds("scipy==1.17.1  # needs Python 3.12\npython-dateutil==2.9.0  # botocore caps it\n")
    out = audit.classify(deps, {}, pages, held=held)
    assert out["held"] == {"scipy==1.17.1": "needs Python 3.12 (newest: 1.18.1)",
                           "Python_Dateutil==2.9.0": "botocore caps it (newest: 4.0.0)"}
    assert out["unaudited"] == ["boto3==1.44.5"] and out["audited"] == 0 and out["vulnerable"] == []


def test_an_advisory_open_in_the_newest_release_counts_against_a_held_pin() -> None:
    out = audit.classify([_skipped("h5py", "3.14.0"), _skipped("boto3", "1.44.5")], {},
                         _pages(h5py=("3.16.0", [VULN]), boto3=("1.44.8", [VULN])),
                         held=audit.holds("h5py==3.14.0  # tensorflow caps it\n"))
    assert [v["package"] for v in out["vulnerable"]] == ["h5py==3.14.0"]  # boto3 is merely behind: unaudited


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


def test_every_held_pin_is_a_pin_of_a_lock_file() -> None:
    """A held line left behind by an upgrade would excuse nothing and mislead the reader."""
    pins = {audit._normalise(line.split(";")[0].split("#")[0].replace("[binary]", "").replace("[server]", ""))
            for lock in audit.LOCKS for line in (audit.ROOT / lock).read_text().splitlines() if "==" in line}
    held = audit.holds(audit.HELD_FILE.read_text())
    assert held and set(held) <= pins, sorted(set(held) - pins)
