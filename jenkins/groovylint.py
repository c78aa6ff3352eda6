"""The Jenkinsfile's own lint: Groovy syntax and CodeNarc rules through npm-groovy-lint, pinned.

    python -m jenkins.groovylint [Jenkinsfile]       # installs npm-groovy-lint 15.2.2 once, then lints

npm-groovy-lint is installed with npm into a cache folder outside the repository
($MLSHIP_CACHE/npm-groovy-lint-VERSION, default ~/.cache/mlship/...); the 15.x line is the last one
that runs on Node 20 (18.x needs Node 22.15+). It needs Java 17 for CodeNarc. It checks Groovy,
not the declarative pipeline: tests/jenkins/dsl.groovy does that. Exit code: npm-groovy-lint's
(`--failon error`), 1 when it cannot be installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "15.2.2"
ROOT = Path(__file__).resolve().parent.parent
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


def cache_dir() -> Path:
    base = Path(os.environ.get("MLSHIP_CACHE", Path.home() / ".cache" / "mlship"))
    return base / f"npm-groovy-lint-{VERSION}"


def install(prefix: Path | None = None) -> Path:
    """npm-groovy-lint's executable, installed into the cache on first use."""
    prefix = prefix or cache_dir()
    binary = prefix / "node_modules" / ".bin" / "npm-groovy-lint"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (Debian: nodejs npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                           "--loglevel=error", f"npm-groovy-lint@{VERSION}"], capture_output=True, text=True)
    if done.returncode != 0 or not binary.exists():
        raise RuntimeError(f"npm install npm-groovy-lint@{VERSION} failed: {done.stderr[-2000:]}")
    return binary


def lint(path: Path, binary: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if Path(JAVA_HOME).is_dir():
        env.setdefault("JAVA_HOME", JAVA_HOME)
    # --noserver: no background CodeNarc server is left running after the check.
    argv = [str(binary), "--noserver", "--failon", "error", "--loglevel", "warning", "--output", "txt",
            str(path)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=path.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.groovylint", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=ROOT / "Jenkinsfile")
    args = parser.parse_args(argv)
    try:
        binary = install()
    except RuntimeError as exc:
        print(f"groovylint: {exc}", file=sys.stderr)
        return 1
    done = lint(args.path.resolve(), binary)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
