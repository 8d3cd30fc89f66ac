"""The pipeline ceiling: the worker's own parse and write stages fed from message bytes in memory.

No Kafka: each process takes its share of the backlog's message values (process k: messages k,
k+processes, ...; the bytes were built before the processes forked), cuts it into batches of the
writer's batch size and, per batch, runs the worker's own stages on it: ``stages.parse.parse_batch``
(``parse_message`` for every message, the offsets it completes) and ``stages.write.RetryingWrite``
over ``storage.BatchWriter`` (first row of each key, binary COPY and commit in one transaction,
``synchronous_commit`` as the server has it). The messages are small Python objects with the accessors
of a confluent_kafka.Message, built before the clock starts. The time runs from every process connected
and ready to the last commit. What the writer achieves against this figure is what Kafka and the
worker's own bookkeeping cost it.
"""

from __future__ import annotations

import datetime
import multiprocessing
import queue
import time

from writer.config import SCHEMA
from writer.stages.parse import parse_batch
from writer.stages.write import RetryingWrite
from writer.storage import BatchWriter
from writer.worker import quiet_garbage_collector

_MESSAGES: list[tuple[bytes, int]] = []  # (value, kafka offset): set before forking, inherited
_TOPIC = "ccxw-bench.pipeline"


class InMemoryMessage:
    """What the parse stage reads of a confluent_kafka.Message."""

    __slots__ = ("_value", "_offset", "_partition")

    def __init__(self, value: bytes, offset: int, partition: int) -> None:
        self._value, self._offset, self._partition = value, offset, partition

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return _TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def _process(conninfo: str, index: int, processes: int, batch_size: int, ready, go, release, results) -> None:
    # As the worker builds it: the default write timeout arms the same watchdog and statement_timeout.
    writer = BatchWriter(conninfo, False, SCHEMA["storage"]["write_timeout_s"])
    writes = RetryingWrite(writer, SCHEMA["storage"]["retry_max_seconds"], is_stopping=lambda: False,
                           sleep=time.sleep)
    try:
        # Connected before the clock starts (the CPU of its backend is read at the start), as a worker
        # is connected after its first batch.
        writer._connect()
        mine = [InMemoryMessage(value, offset, index) for value, offset in _MESSAGES[index::processes]]
        batches = [mine[first:first + batch_size] for first in range(0, len(mine), batch_size)]
        quiet_garbage_collector()  # as a worker process sets itself up
        ready.wait()
        go.wait()
        stored = 0
        for messages in batches:
            batch = parse_batch(messages, datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
            stored += writes.write(batch.rows).stored
        results.put((index, time.time(), stored))
        release.wait(60)  # the process and its backend stay until the parent has read their CPU time
    finally:
        writer.close()


def run(conninfo: str, messages: list[tuple[bytes, int]], processes: int, batch_size: int, on_ready=None,
        on_finished=None) -> tuple[float, float, int, list[int]]:
    """Parse and write ``messages`` with ``processes`` processes; returns the wall-clock times of go and of
    the last commit, the rows stored, and the processes' pids. ``on_ready(pids)`` runs once every process
    is connected, before the clock starts; ``on_finished(pids)`` once every process has committed, before
    they exit."""
    global _MESSAGES
    _MESSAGES = messages
    context = multiprocessing.get_context("fork")
    ready, go, release = context.Barrier(processes + 1), context.Event(), context.Event()
    results = context.Queue()
    workers = [context.Process(target=_process, args=(conninfo, i, processes, batch_size, ready, go, release,
                                                      results)) for i in range(processes)]
    try:
        for worker in workers:
            worker.start()
        pids = [worker.pid for worker in workers if worker.pid is not None]
        ready.wait(60)
        if on_ready is not None:
            on_ready(pids)
        started = time.time()
        go.set()
        finished: list[tuple[int, float, int]] = []
        while len(finished) < processes:
            try:
                finished.append(results.get(timeout=1))
            except queue.Empty:
                if any(worker.exitcode not in (None, 0) for worker in workers):
                    raise RuntimeError(f"a pipeline process failed: exit codes {[w.exitcode for w in workers]}") \
                        from None
        if on_finished is not None:
            on_finished(pids)
        release.set()
        for worker in workers:
            worker.join(60)
        if any(worker.exitcode != 0 for worker in workers):
            raise RuntimeError(f"a pipeline process failed: exit codes {[w.exitcode for w in workers]}")
    finally:
        release.set()
        _MESSAGES = []
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    return started, max(end for _, end, _ in finished), sum(stored for _, _, stored in finished), pids
