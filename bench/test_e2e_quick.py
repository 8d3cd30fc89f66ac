"""CI: the end-to-end benchmark in quick mode, for its correctness checks only (no timing assertions).

``python -m bench.e2e --quick`` runs every section on ~3000 messages; each run verifies its rows
(count = valid messages, nothing stored twice, the stored (cluster, kafka_offset) set = the
produced one, reports intact) and the command exits 1 on any wrong result.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# A hang guard only (the benchmark kills a replay that never finishes); how fast it runs is
# the benchmark's output, not a pass/fail criterion.
@pytest.mark.timeout(1800)
def test_quick_benchmark_runs_and_verifies(tmp_path):
    output = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--quick", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text()
    for section in ("ceiling: COPY, 2 streams", "this writer: --replay, 2 workers", "baseline: original algorithm",
                    "row committed", "Scaling"):
        assert section in text, f"{section!r} missing from the results:\n{text}"
