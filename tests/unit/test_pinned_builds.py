"""Pinned builds (issue 11 item 6): the image installs from constraints.txt, which pins every package the
image needs; .ci/lower_bounds.py turns the declared lower bounds into exact pins for .ci/lower-bounds."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOWER_BOUNDS = ROOT / ".ci" / "lower_bounds.py"


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


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


def test_lower_bounds_become_exact_pins(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\ndependencies = ["psycopg[binary]>=3.3", "Orjson >= 3.13"]\n'
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
