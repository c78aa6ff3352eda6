"""Start as root, as SageMaker (and its SDK's local mode) runs containers, then work as an
unprivileged user.

SageMaker mounts /opt/ml/model, /opt/ml/output and the checkpoint folder owned by root with mode
0755 just before the container starts; an image that starts as uid 1000 cannot write its model
there (aws/sagemaker-inference-toolkit#72, aws/sagemaker-python-sdk#4764). So `train` and `serve`
start as whatever user the platform chose: as root, they hand the folders they write to the
image's user (MLSHIP_RUN_AS) and drop to it before reading any input; under any other uid they run
unchanged, and `train` then checks up front that it can write (training.cli).
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("container.privileges")


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    """Hand ``path`` (and what is in it) to uid:gid; a read-only mount is left as it is."""
    if not path.exists():
        return
    try:
        os.chown(path, uid, gid)
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    except OSError as exc:  # EROFS (/opt/ml/model mounted read-only to serve), EPERM: readable is enough
        log.debug("left %s as it is: %s", path, exc)


def drop_to(user: str, writable: Iterable[Path]) -> bool:
    """As root: give ``writable`` folders to ``user`` and become it; True when privileges were dropped.

    Not root, or no such user (outside the image, e.g. the test suite as root), changes nothing.
    """
    if os.geteuid() != 0 or not user:
        return False
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
        _chown_tree(folder, entry.pw_uid, entry.pw_gid)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = entry.pw_name
    return True
