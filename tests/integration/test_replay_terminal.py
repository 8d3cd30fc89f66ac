"""The replay's progress bar as a person sees it: the console script in a real terminal (tmux), read back
with ``capture-pane``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from tests.harness.service import console_script, service_env
from writer import sample_messages
from writer.kafka_mock import produce

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

MESSAGES, INVALID_EVERY = 660, 11


def test_progress_bar_on_a_terminal(migrated_database, kafka_bootstrap, topic, tmp_path):
    invalid = sample_messages.invalid_messages(MESSAGES // INVALID_EVERY)
    values = [invalid[i // INVALID_EVERY][0] if i % INVALID_EVERY == INVALID_EVERY - 1
              else sample_messages.encoded(i, "small_size") for i in range(MESSAGES)]
    produce(kafka_bootstrap, topic, values, [str(i).encode() for i in range(MESSAGES)])
    rejected = MESSAGES // INVALID_EVERY
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__batch_size="50")
    script = tmp_path / "replay.sh"
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()
                      if name.startswith("CCX_NOTIFICATION_WRITER"))
    # --progress is left at auto: stderr is the tmux terminal, so the bar is chosen.
    script.write_text(f"{exports}cd {shlex.quote(str(tmp_path))}\n"
                      f"{shlex.quote(console_script())} --replay\necho EXIT=$?\nsleep 120\n")
    socket = f"ccxw-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-s", "replay", "-x", "150", "-y", "60", f"bash {script}"], check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 150
        while "EXIT=" not in screen and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-500", "-t", "replay"],
                                    capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "EXIT=0" in screen, screen[-3000:]
    bar = re.compile(
        rf"^replay 100%\|█+\| {MESSAGES}/{MESSAGES} messages \(100\.0%\), [\d,]+ messages/s, ETA 0:00, "
        rf"rejected {rejected}$",
        re.MULTILINE)
    assert bar.search(screen), screen[-3000:]
    summary = f"replay finished: messages {MESSAGES}, stored {MESSAGES - rejected}, duplicates 0, rejected {rejected}"
    assert summary in screen
