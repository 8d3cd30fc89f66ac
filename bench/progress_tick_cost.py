"""CPU cost of one progress sample in the supervisor: read the workers' counters (multiprocess files), set the
gauges, format the line. Two worker processes publish counters first, as in a replay with 2 workers.

    .venv/bin/python -m bench.progress_tick_cost
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import time

NAMESPACE = "ccx_notification_writer"


def _publish(_slot: int) -> None:
    from writer.metrics import Metrics
    from writer.replay_worker import skipped_counter

    metrics, skipped = Metrics(NAMESPACE), skipped_counter(NAMESPACE)
    for counter in metrics.original.values():
        counter.inc(1000)
    for reason in ("invalid_json", "empty_message"):
        metrics.rejected.labels(reason).inc(3)
    metrics.duplicates.inc(5)
    metrics.batch_size.observe(100)
    metrics.write_duration.observe(0.1)
    skipped.inc(10)


def main(samples: int = 300) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    context = multiprocessing.get_context("spawn")
    for slot in range(2):
        process = context.Process(target=_publish, args=(slot,))
        process.start()
        process.join()
    from types import SimpleNamespace

    from writer.metrics import collect_multiprocess, totals
    from writer.progress import ProgressReporter, ReplayGauges
    from writer.replay import messages_done

    # Four partitions of 25,000 offsets, each 505 in, in shared arrays as the workers publish them.
    plan = SimpleNamespace(starts=dict.fromkeys(range(4), 0), ends=dict.fromkeys(range(4), 25_000),
                           positions=context.Array("q", [505] * 4, lock=False),
                           finished=context.Array("b", 4, lock=False))
    reporter = ProgressReporter("log", 1.0, 100_000, lambda: totals(collect_multiprocess(directory), NAMESPACE),
                                lambda: messages_done(plan), ReplayGauges(NAMESPACE))
    logging.disable(logging.CRITICAL)
    started = time.process_time()
    for _ in range(samples):
        figures = reporter.tick(4, force=True)
    cost = (time.process_time() - started) / samples
    assert figures.done == 2020 and figures.rejected == 12, figures  # the counters really were read
    print(f"one progress sample: {cost * 1000:.2f} ms CPU; at one sample per second "
          f"{cost * 100:.3f}% of one core")


if __name__ == "__main__":
    # Before prometheus_client is imported, here and in the spawned publishers (which inherit it).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ccxw-tick-"))
    main()
