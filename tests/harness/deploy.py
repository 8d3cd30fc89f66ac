"""Running the deployment files' commands as the pods run them: ``/bin/sh -c`` from a working
directory that holds the image's ``./ccx-notification-writer`` launcher; reading the original's files."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from writer.testing.environment import without_writer_settings

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "CCX_NOTIFICATION_WRITER__"
LAUNCHER = ROOT / "deploy" / "image" / "ccx-notification-writer"


def _main_checkout() -> Path:
    """The main checkout of this repository: ROOT itself, or for a git worktree the checkout it belongs to."""
    try:
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ROOT
    return Path(common).parent if common else ROOT


def upstream_dir() -> Path:
    """<repository>/../shared/upstream (CI puts a copy of shared/ beside the clone). Missing is a failure."""
    candidates = [ROOT.parent / "shared" / "upstream", _main_checkout().parent / "shared" / "upstream"]
    for path in candidates:
        if (path / "config.toml").is_file():
            return path
    raise AssertionError(f"the original's deployment files are missing: expected them in {candidates[0]} "
                         "(a copy of shared/ beside the repository)")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped), values as written (no quoting in these files)."""
    variables = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value
    return variables


def commented_commands(path: Path) -> list[str]:
    """The commands an env file's comment lines quote ("#   ./ccx-notification-writer ...")."""
    return [line.lstrip("#").strip().rstrip("&").strip() for line in path.read_text().splitlines()
            if line.startswith("#") and "./ccx-notification-writer" in line]


def launcher_dir(base: Path) -> Path:
    """The image's working directory, rebuilt: the launcher file with its mode."""
    workdir = base / "image-workdir"
    workdir.mkdir(exist_ok=True)
    shutil.copy2(LAUNCHER, workdir / "ccx-notification-writer")
    return workdir


def run_sh(script: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {**without_writer_settings(), **env}
    clean["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # python3 of this environment, as in the image
    return subprocess.run(["/bin/sh", "-c", script], cwd=str(cwd), env=clean, capture_output=True, text=True,
                          timeout=timeout)


def split_shell_commands(script: str) -> list[list[str]]:
    """'a --x; b --y && c' -> [['a', '--x'], ['b', '--y'], ['c']] (the manifests use only ; and &&)."""
    commands = []
    for part in script.replace("&&", ";").split(";"):
        if part.strip():
            commands.append(shlex.split(part))
    return commands


def server_has_tls(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as connection:
        return connection.execute("SHOW ssl").fetchone()[0] == "on"


def tls_adjusted_params(database, wanted: str) -> str:
    """``wanted`` unchanged when the test server offers TLS; sslmode=disable only when it has none
    (sslmode=require cannot succeed on a server without TLS: that is libpq, not this service)."""
    if server_has_tls(database.conninfo):
        return wanted
    return "sslmode=disable" if "sslmode=require" in wanted else wanted
