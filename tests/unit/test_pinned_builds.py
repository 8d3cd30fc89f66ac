"""One lock for every install: constraints.txt (written by .ci/refresh-lock) pins every package, and the
README's commands, .ci/run and the image install from it; .ci/lower_bounds.py turns the declared lower
bounds into exact pins for .ci/lower-bounds."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOWER_BOUNDS = ROOT / ".ci" / "lower_bounds.py"
_spec = importlib.util.spec_from_file_location("check_lock", ROOT / ".ci" / "check_lock.py")
assert _spec is not None and _spec.loader is not None
check_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_lock)
RUNTIME_APIS_CALLED = {"confluent-kafka", "psycopg", "orjson", "prometheus-client", "tenacity",
                       "app-common-python", "sentry-sdk", "tqdm"}


def constraints() -> dict[str, str]:
    return check_lock.locked(ROOT / "constraints.txt")


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(text) for text in project["dependencies"]]
    for extra in extras:
        found += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return [r for r in found if r.name != project["name"]]


def test_the_image_builds_its_wheels_from_the_constraints_file():
    containerfile = (ROOT / "Containerfile").read_text()
    build = containerfile.rsplit("\nFROM ", 1)[0]  # the build stage: everything before the last FROM
    assert re.search(r"^COPY .*\bconstraints\.txt\b", build, re.MULTILINE)
    assert re.search(r"^RUN pip wheel .*-c constraints\.txt .*\[cloudwatch\]", build, re.MULTILINE)


def test_every_package_the_image_and_the_tests_install_is_pinned_within_its_declared_range():
    pins = constraints()
    for requirement in declared("cloudwatch", "embedded", "lint", "test"):
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert Version(pins[name]) in requirement.specifier, (name, pins[name], str(requirement.specifier))
    assert pins["psycopg-binary"] == pins["psycopg"]  # psycopg[binary] needs the same version of both


def test_every_install_path_reads_the_lock():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, commands  # the quick start and the test suite
    for command in commands:
        assert " -c constraints.txt " in command, command
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if "pip install" in line and "-c constraints.txt" not in line] == []
    assert commands[1] in ci  # .ci/run runs the README's test command word for word
    assert "check_lock.py constraints.txt" in ci


def test_each_runtime_dependency_whose_api_we_call_has_an_upper_bound():
    for requirement in declared():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in RUNTIME_APIS_CALLED:
            assert any(spec.operator == "<" for spec in requirement.specifier), str(requirement)
    sentry = next(r for r in declared() if r.name == "sentry-sdk")
    assert Version("2.75.0") in sentry.specifier and Version("3.0.1") in sentry.specifier


def test_the_lock_check_names_every_difference():
    lock = {"orjson": "3.13.0", "psycopg": "3.3.9", "tqdm": "4.70.1"}
    venv = {"orjson": "3.13.0", "psycopg": "3.3.10", "extra-thing": "1.0"}
    assert check_lock.differences(lock, venv) == [
        "extra-thing: lock -, installed 1.0", "psycopg: lock 3.3.9, installed 3.3.10", "tqdm: lock 4.70.1, installed -"]
    assert check_lock.differences(lock, dict(lock)) == []


def test_a_failing_ci_run_names_its_step_in_its_last_line(tmp_path):
    """.ci/run with a python3 that cannot make a venv: the run fails at its first step and says so last."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_python = fake_bin / "python3"
    fake_python.write_text("#!/bin/sh\necho 'venv: refused' >&2\nexit 3\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert result.stdout.strip().splitlines()[-1] == "ci: install from the lock failed"


def test_lower_bounds_become_exact_pins(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\ndependencies = ["psycopg[binary]>=3.3,<4", "Orjson >= 3.13"]\n'
                         '[project.optional-dependencies]\nx = ["demo[y]", "pytest>=9.0"]\n')
    result = subprocess.run([sys.executable, str(LOWER_BOUNDS), str(pyproject)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["orjson==3.13", "psycopg==3.3", "pytest==9.0"]


def test_a_requirement_without_a_lower_bound_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\ndependencies = ["orjson"]\n')
    result = subprocess.run([sys.executable, str(LOWER_BOUNDS), str(pyproject)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "'orjson' has no lower bound" in result.stderr


def test_the_project_declares_a_lower_bound_for_every_requirement():
    result = subprocess.run([sys.executable, str(LOWER_BOUNDS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pinned = {line.split("==")[0] for line in result.stdout.split()}
    assert {"confluent-kafka", "psycopg", "orjson", "psutil", "ruff", "mypy"} <= pinned
