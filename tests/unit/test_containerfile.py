"""The image definition (no container engine runs here, so its content is checked), and its launcher,
run the way the original's manifests run it: ``/bin/sh -c './ccx-notification-writer ...'`` from the
working directory."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from writer.testing.environment import without_writer_settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "Containerfile").read_text()
FINAL_STAGE = CONTAINERFILE.rsplit("\nFROM ", 1)[1]


def test_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", CONTAINERFILE, re.MULTILINE)
    assert users, "no USER line"
    assert users[-1] not in ("root", "0")


def test_image_uses_an_official_python_base_and_installs_the_package_with_cloudwatch():
    bases = re.findall(r"^FROM\s+(\S+)", CONTAINERFILE, re.MULTILINE)
    assert bases and all(b.startswith("docker.io/library/python:3.11") for b in bases)
    assert "pip wheel" in CONTAINERFILE and "pip install" in CONTAINERFILE
    assert re.search(r"pip install .*ccx-notification-writer\[cloudwatch\]", FINAL_STAGE)


def test_entrypoint_and_metrics_port():
    assert re.search(r'^ENTRYPOINT \["ccx-notification-writer"\]', CONTAINERFILE, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", CONTAINERFILE, re.MULTILINE)


def final_workdir() -> str:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", FINAL_STAGE, re.MULTILINE)
    assert workdirs, "no WORKDIR in the final stage"
    return workdirs[-1]


def launcher_copy() -> tuple[str, str]:
    """(source in the repository, destination) of the launcher copied into the working directory."""
    copies = re.findall(r"^COPY\s+(?!--from)(\S+)\s+(\S+)$", FINAL_STAGE, re.MULTILINE)
    found = [(src, dst) for src, dst in copies if dst.rstrip("/").endswith("ccx-notification-writer")]
    assert found, "the launcher is not copied into the image"
    return found[0]


def test_working_directory_holds_the_launcher_and_is_not_world_writable():
    workdir = final_workdir()
    assert not workdir.startswith("/tmp") and workdir != "/"
    source, destination = launcher_copy()
    assert destination in ("./ccx-notification-writer", f"{workdir}/ccx-notification-writer")
    # made before USER (so owned by root), and nothing hands it to the service user or opens it to all
    assert FINAL_STAGE.index(f"WORKDIR {workdir}") < FINAL_STAGE.index("\nUSER ")
    assert not re.search(r"chown", FINAL_STAGE)
    for mode in re.findall(r"chmod\s+(\S+)", FINAL_STAGE):
        assert re.fullmatch(r"0?[0-7][0-5][0-5]", mode), mode  # no group/other write bit
    assert (ROOT / source).is_file()


def test_launcher_runs_as_dot_slash_from_its_directory_through_sh(tmp_path):
    """The same layout in a temporary directory: the launcher copied with its mode, run by /bin/sh -c."""
    source, _ = launcher_copy()
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    shutil.copy2(ROOT / source, workdir / "ccx-notification-writer")
    assert os.stat(workdir / "ccx-notification-writer").st_mode & stat.S_IXOTH
    env = without_writer_settings()
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the image's python3 is on PATH
    result = subprocess.run(["/bin/sh", "-c", "./ccx-notification-writer --version; "
                             "./ccx-notification-writer --show-configuration"],
                            cwd=str(workdir), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ccx-notification-writer version" in result.stdout
    assert "[storage]" in result.stdout
    failing = subprocess.run(["/bin/sh", "-c", "./ccx-notification-writer --migrate nonsense"],
                             cwd=str(workdir), env=env, capture_output=True, text=True, timeout=60)
    assert failing.returncode == 7  # exit statuses pass through the launcher
