"""CI: the end-to-end benchmark in quick mode, for its correctness checks only (no timing assertions).

``python -m bench.e2e --quick`` runs every section on ~3000 messages; each run verifies its rows
(count = valid messages, nothing stored twice, the stored (cluster, kafka_offset) set = the
produced one, reports intact) and the command exits 1 on any wrong result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# A hang guard only (the benchmark kills a replay that never finishes); how fast it runs is
# the benchmark's output, not a pass/fail criterion.
@pytest.mark.timeout(1800)
def test_quick_benchmark_runs_and_verifies(tmp_path):
    output, figures = tmp_path / "results.md", tmp_path / "results.json"
    # 2 workers only, with one consumer option swept beside the writer's own settings: as many writer runs as
    # the default --workers 1,2, and every section of the output.
    result = subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--quick", "--workers", "2",
         "--consumer-sweep", "fetch.queue.backoff.ms=1000", "--output", str(output), "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text()
    for section in ("ceiling: COPY, 2 streams", "pipeline: parse + COPY from memory, 2 processes",
                    "this writer: --replay, 2 workers |",
                    "this writer: --replay, 2 workers [fetch.queue.backoff.ms=1000] |",
                    "baseline: original algorithm", "row committed", "Scaling", "idle %: each worker",
                    "% of pipeline ceiling", "Where the workers' CPU goes", "| target | this run | met? |"):
        assert section in text, f"{section!r} missing from the results:\n{text}"
    report = json.loads(figures.read_text())
    assert report["backlog"]["mix"] == "varied" and report["backlog"]["compression"] == "zstd"
    runs = {(run["kind"], tuple(run["consumer_options"].items())): run for run in report["runs"]}
    valid = report["backlog"]["valid"]
    assert runs[("pipeline", ())]["rows"] == valid and runs[("pipeline", ())]["streams"] == 2
    assert runs[("writer", ())]["rows"] == valid
    assert runs[("writer", (("fetch.queue.backoff.ms", "1000"),))]["rows"] == valid
    assert runs[("pipeline", ())]["cpu_us_per_message"]["workers"] is not None  # read at its start and end
    assert len(report["targets"]) == 6
    rss_target = report["targets"][5]
    assert rss_target["met"] is not None, rss_target  # the scaling backlogs (1000, 3000) give the RSS verdict
