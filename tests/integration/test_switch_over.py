"""Switching over from a running original: it is stopped (SIGTERM kills it at once), this service is
started on the same group; the group's committed offsets are the hand-over point.

The original is stood in for by tests/harness/original_standin.py (range assignor, rows stored per message,
marked offsets auto-committed about once a second, no signal handling: never closed). What it handled
but had not committed yet is read again and skipped as duplicates; nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from tests.harness.kafka import committed_offsets
from tests.harness.service import service_env
from writer import sample_messages
from writer.kafka_mock import produce

TOTAL, HANDLED_BY_ORIGINAL = 40, 20
REPOSITORY = Path(__file__).resolve().parents[2]


def run_and_kill_the_original(env: dict[str, str], group: str, topic: str) -> list[int]:
    """Start the stand-in, let it handle HANDLED_BY_ORIGINAL messages, SIGTERM it; the offsets it handled."""
    command = [sys.executable, "-m", "tests.harness.original_standin", group, topic, str(HANDLED_BY_ORIGINAL)]
    process = subprocess.Popen(command, env=env, cwd=str(REPOSITORY), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    handled = []
    try:
        for line in process.stdout:
            if line.startswith("handled "):
                handled.append(int(line.split()[1]))
            if line.strip() == "done":
                break
    finally:
        os.kill(process.pid, signal.SIGTERM)  # no handler: the process ends at once, consumer not closed
        process.wait(30)
    assert process.returncode == -signal.SIGTERM, process.stderr.read()[-3000:]
    return handled


def test_taking_over_from_a_killed_original_loses_nothing_and_rereads_only_what_it_had_not_committed(
        migrated_database, kafka_bootstrap, cli):
    topic = f"ccx.ocp.results.{uuid.uuid4().hex[:10]}"
    group = f"ccx_notification_app_{uuid.uuid4().hex[:6]}"
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i) for i in range(TOTAL)], partition=0)
    # The service's default assignor (cooperative-sticky), as the switch-over procedure starts it. The
    # killed original's member stays in the group until its session times out; until then a real broker
    # refuses the new member ("inconsistent group protocol") and librdkafka retries.
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS="1")

    handled = run_and_kill_the_original(env, group, topic)
    assert handled == list(range(HANDLED_BY_ORIGINAL))
    committed = max(committed_offsets(kafka_bootstrap, topic, group, [0])[0], 0)  # 0 when none
    assert 0 <= committed <= HANDLED_BY_ORIGINAL
    handled_not_committed = HANDLED_BY_ORIGINAL - committed  # the bound on what is read again

    result = cli("--replay", env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    read = TOTAL - committed
    stored = TOTAL - HANDLED_BY_ORIGINAL
    assert f"messages {read}, stored {stored}, duplicates {handled_not_committed}, rejected 0" in result.stdout, (
        committed, result.stdout)
    with migrated_database.connect() as connection:
        offsets = [r[0] for r in connection.execute("SELECT kafka_offset FROM new_reports ORDER BY kafka_offset")]
    assert offsets == list(range(TOTAL))  # nothing lost, nothing stored twice
