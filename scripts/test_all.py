"""The test command: lint (ruff), types (mypy), layers (import-linter), known vulnerabilities of
the locked requirements (pip-audit, scripts/audit.py), Dockerfile lint (hadolint), then pytest:
the whole suite with the speed layer on (MLSHIP_FAST, the default), then the service and
end-to-end tiers again with it off, so that both ways give the same answers, and the service tests
of every door's predictions once more with the trees walked in NumPy (tests/conftest.py).

    ./run test [pytest args]     e.g. ./run test -m "not container" -x   (given arguments: one run,
                                 with MLSHIP_FAST as the environment has it)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The tiers that run a second time with the speed layer off (tests/conftest.py hands the switch on).
BOTH_WAYS = ["tests/service", "tests/e2e"]
NUMPY_WALK = ["tests/service/test_serving_app.py", "tests/service/test_hostile_input.py",
              "tests/service/test_property_run.py", "tests/service/test_portal.py",
              "tests/service/test_explanations.py", "tests/service/test_inference_output.py"]


def step(name: str, cmd: list[str], env: dict[str, str] | None = None) -> bool:
    print(f"==> {name}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    ok = subprocess.call(cmd, cwd=ROOT, env=None if env is None else {**os.environ, **env}) == 0
    print(f"==> {name}: {'ok' if ok else 'FAILED'} ({time.monotonic() - started:.0f}s)", flush=True)
    return ok


def main(argv: list[str]) -> int:
    results = {
        "ruff": step("ruff", [sys.executable, "-m", "ruff", "check", "."]),
        "mypy": step("mypy", [sys.executable, "-m", "mypy"]),
        # The layers and the no-cycle rule of pyproject.toml's [tool.importlinter].
        "import-linter": step("import-linter", [str(Path(sys.executable).parent / "lint-imports")]),
        # 0 known vulnerabilities in requirements/*.lock, or each waived with its reason.
        "pip-audit": step("pip-audit", [sys.executable, "-m", "scripts.audit"]),
    }
    if (ROOT / "Dockerfile").exists() and shutil.which("hadolint"):
        results["hadolint"] = step("hadolint", ["hadolint", "--failure-threshold", "error", "Dockerfile"])
    results["pytest"] = step("pytest", [sys.executable, "-m", "pytest", *argv])
    if not argv:
        results["pytest MLSHIP_FAST=false"] = step("pytest MLSHIP_FAST=false",
                                                   [sys.executable, "-m", "pytest", *BOTH_WAYS],
                                                   {"MLSHIP_FAST": "false"})
        # The forest walked in NumPy (as where the C extension could not be built), through the
        # service tests of every door's predictions rather than only compared with the C walk.
        results["pytest numpy walk"] = step("pytest numpy walk",
                                            [sys.executable, "-m", "pytest", *NUMPY_WALK],
                                            {"MLSHIP_TEST_WALK": "numpy"})
    failed = [k for k, v in results.items() if not v]
    print("==> summary: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in results.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
