"""How the supervisor stops: a signal at any moment ends its main loop, and a worker still running after the
shutdown deadline is killed."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = 500
# Far more than a run's stop takes (milliseconds): a run still going after this is hung.
HUNG_AFTER_S = 30.0


def _line(process: subprocess.Popen, timeout: float) -> str:
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().strip() if readable else ""


def test_signals_at_random_moments_always_stop_the_supervisor(tmp_path):
    """The supervisor's stop path (tests/harness/supervisor_signals.py) run again and again, each run stopped by
    one to three SIGTERM/SIGINT sent at random moments, as a handler that takes a lock the interrupted main
    thread holds would deadlock."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    stderr_path = tmp_path / "child.stderr"
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "tests.harness.supervisor_signals"], cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    try:
        for run in range(RUNS):
            child.stdin.write("run\n")
            child.stdin.flush()
            assert _line(child, HUNG_AFTER_S) == "ready", stderr_path.read_text()[-3000:]
            time.sleep(rng.uniform(0, 0.005))
            for _ in range(rng.randint(1, 3)):
                os.kill(child.pid, rng.choice((signal.SIGTERM, signal.SIGINT)))
                time.sleep(rng.uniform(0, 0.001))
            answer = _line(child, HUNG_AFTER_S)
            if not answer:
                os.kill(child.pid, signal.SIGUSR1)  # the child's stacks, for the failure message
                time.sleep(1)
            assert answer == "stopped 0", (
                f"run {run} of seed {seed}: {answer or 'no stop'}\n{stderr_path.read_text()[-3000:]}")
    finally:
        child.kill()
        child.wait()


def _ignore_sigterm_and_sleep(ignoring) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ignoring.set()
    time.sleep(3600)


def test_a_worker_still_running_after_the_shutdown_deadline_is_killed(monkeypatch, caplog):
    from writer import config as config_module
    from writer import supervisor as supervisor_module

    env = {f"{config_module.ENV_PREFIX}{key}": value for key, value in {
        "PROCESSING__WORKERS": "1", "PROCESSING__SHUTDOWN_TIMEOUT_S": "1", "PROCESSING__BATCH_TIMEOUT_MS": "100",
    }.items()}
    monkeypatch.setattr(supervisor_module, "CLOSE_MARGIN_S", 0.0)
    supervisor = supervisor_module.Supervisor(config_module.load(env), "unused")
    monkeypatch.setattr(supervisor, "_forget_process_metrics", lambda pid: None)
    ignoring = supervisor.context.Event()
    process = supervisor.context.Process(target=_ignore_sigterm_and_sleep, args=(ignoring,))
    process.start()
    try:
        supervisor.slots[0].process = process
        assert ignoring.wait(60), "the stand-in worker did not start"
        supervisor._stop_workers()
        assert not process.is_alive(), "a worker that ignores SIGTERM outlived the stop"
        assert process.exitcode == -signal.SIGKILL
        assert [r.getMessage() for r in caplog.records if "did not stop in time" in r.getMessage()] == [
            f"worker pid {process.pid} did not stop in time; killing it (its batch will be consumed again)"]
        assert supervisor.slots[0].process is None
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
