"""The image definition (no container engine runs here, so its content is checked)."""

import re
from pathlib import Path

CONTAINERFILE = (Path(__file__).resolve().parent.parent / "Containerfile").read_text()


def test_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", CONTAINERFILE, re.MULTILINE)
    assert users, "no USER line"
    assert users[-1] not in ("root", "0")


def test_image_uses_an_official_python_base_and_installs_the_package():
    bases = re.findall(r"^FROM\s+(\S+)", CONTAINERFILE, re.MULTILINE)
    assert bases and all(b.startswith("docker.io/library/python:3.11") for b in bases)
    assert "pip wheel" in CONTAINERFILE and "pip install" in CONTAINERFILE


def test_entrypoint_and_metrics_port():
    assert re.search(r'^ENTRYPOINT \["ccx-notification-writer"\]', CONTAINERFILE, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", CONTAINERFILE, re.MULTILINE)
