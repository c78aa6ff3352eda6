"""What every container test starts from: podman that works, and the image under test."""

from __future__ import annotations

import os
import shutil
import subprocess


def podman_works() -> bool:
    return shutil.which("podman") is not None and subprocess.run(
        ["podman", "info"], capture_output=True).returncode == 0


def image_under_test() -> str:
    """$MLSHIP_IMAGE when given (the pipeline's Test image stage), else the image built from here."""
    tag = os.environ.get("MLSHIP_IMAGE")
    if tag:
        return tag
    from jenkins.image import build

    return str(build("mlship:test")["image"])
