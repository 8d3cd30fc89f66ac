"""Fail unless this interpreter's environment holds exactly the lock's versions, no more and no fewer.

Usage: python .ci/check_lock.py constraints.txt. The project itself (installed from the checkout) and
pip's own tooling are not in the lock and are left out of the comparison.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "ccx-notification-writer"
TOOLING = {"pip", "setuptools", "wheel"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    found = {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {name: version for name, version in found.items() if name not in TOOLING and name != PROJECT}


def differences(lock: dict[str, str], venv: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(lock.keys() | venv.keys()):
        if lock.get(name) != venv.get(name):
            lines.append(f"{name}: lock {lock.get(name, '-')}, installed {venv.get(name, '-')}")
    return lines


if __name__ == "__main__":
    problems = differences(locked(Path(sys.argv[1])), installed())
    for line in problems:
        print(line)
    if problems:
        raise SystemExit(f"{sys.argv[1]}: the environment differs from the lock in {len(problems)} packages")
    print(f"{sys.argv[1]}: the environment holds exactly the locked versions")
