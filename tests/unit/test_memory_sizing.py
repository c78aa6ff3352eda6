"""Start-up sizing against the container's memory limit, on fake cgroup trees (v2 and v1)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from container import resources
from container.settings import Settings
from inference import server

MiB = 1 << 20


@pytest.fixture
def isolated_stdio(monkeypatch: pytest.MonkeyPatch) -> None:
    """server.main() wraps stdout/stderr and sets the root logger up, for the process: undo it after."""
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def test_memory_limit_is_read_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert resources.cgroup_memory_limit(tmp_path) == 1 << 30
    (tmp_path / "memory.max").write_text("max\n")
    assert resources.cgroup_memory_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert resources.cgroup_memory_limit(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text("536870912\n")
    assert resources.cgroup_memory_limit(v1) == 512 * MiB
    (v1 / "memory" / "memory.limit_in_bytes").write_text("garbage\n")
    assert resources.cgroup_memory_limit(v1) is None
    assert resources.cgroup_memory_limit(tmp_path / "absent") is None


def test_model_size_counts_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 24)
    (tmp_path / "link").symlink_to("/etc/passwd")
    assert resources.directory_bytes(tmp_path) == 1024
    assert resources.directory_bytes(tmp_path / "absent") == 0


@pytest.mark.parametrize(("workers", "explicit", "limit_mib", "model_mib", "expected", "refused"), [
    (4, True, None, 100, 4, False),          # no limit: nothing to check
    (2, True, 2048, 10, 2, False),           # 128 + 2 x (224 + 80) = 736 MiB <= 2 GiB
    (8, True, 1024, 10, 8, True),            # 8 x 304 MiB does not fit 1 GiB: refused
    (8, False, 1024, 10, 2, False),          # the image's own default is lowered to what fits
    (1, True, 256, 10, 1, True),             # not even one worker fits
    (1, False, 256, 10, 1, True),
])
def test_worker_count_against_the_memory_limit(workers: int, explicit: bool, limit_mib: int | None,
                                               model_mib: int, expected: int, refused: bool) -> None:
    settings = Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)})
    limit = None if limit_mib is None else limit_mib * MiB
    count, error = server.plan_workers(settings, explicit, limit, model_mib * MiB)
    assert count == expected
    assert (error is not None) is refused
    if error and explicit and workers > 1:
        assert f"SAGEMAKER_MODEL_SERVER_WORKERS={workers} cannot fit" in error
        assert "set SAGEMAKER_MODEL_SERVER_WORKERS=2 or fewer" in error
    if error and workers == 1:
        assert "raise the memory limit" in error


def test_a_factor_of_zero_turns_the_check_off() -> None:
    settings = Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "64", "MLSHIP_MODEL_MEMORY_FACTOR": "0"})
    assert server.plan_workers(settings, True, 256 * MiB, 10 * MiB) == (64, None)


def test_serve_refuses_at_start_with_a_json_line_and_exit_code_3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        isolated_stdio: None) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{1024 * MiB}\n")
    model = tmp_path / "opt_ml" / "model"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"\0" * (50 * MiB))  # 224 + 8 x 50 = 624 MiB a worker
    monkeypatch.setattr(resources, "CGROUP", cgroup)
    monkeypatch.setenv("SM_BASE_DIR", str(tmp_path / "opt_ml"))
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "4")
    assert server.main([]) == 3
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    refusal = next(line for line in lines if line.get("check") == "memory")
    assert refusal["level"] == "ERROR" and refusal["exit_code"] == 3 and refusal["memory_limit"] == 1024 * MiB
    assert "SAGEMAKER_MODEL_SERVER_WORKERS=4 cannot fit the container's memory limit of 1024 MiB" in refusal["msg"]
    assert "set SAGEMAKER_MODEL_SERVER_WORKERS=1 or fewer" in refusal["msg"]


def test_a_bad_variable_is_a_json_line_too(monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture[str], isolated_stdio: None) -> None:
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "many")
    assert server.main([]) == 3
    (line,) = [json.loads(raw) for raw in capfd.readouterr().err.splitlines()]
    assert line["level"] == "ERROR" and "SAGEMAKER_MODEL_SERVER_WORKERS='many' is invalid" in line["msg"]
