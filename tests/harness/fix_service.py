"""Fixtures: the console script run once (``cli``) and a directory for a running service (``workdir``)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness.service import run_cli


@pytest.fixture
def cli(tmp_path):
    """Run the real console script as a subprocess, in an empty working directory:
    ``cli(*args, env={...}, timeout=120, cwd=None)``."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: str | None = None):
        return run_cli(*args, env=env, cwd=cwd or tmp_path, timeout=timeout)

    return run


@pytest.fixture
def workdir(request):
    """Where the service runs and writes its logs: not under pytest's temporary tree, which concurrent
    pytest sessions prune; kept when the test fails (its path is printed), removed when it passes."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:48]
    path = Path(tempfile.mkdtemp(prefix=f"ccxw-{name}-"))
    failures_before = request.session.testsfailed
    yield path
    if request.session.testsfailed > failures_before:
        print(f"service logs kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)
