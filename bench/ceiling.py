"""The ceiling: the writer's own COPY data written straight into new_reports, nothing else.

The rows are built beforehand with ``parse_message`` + ``encode_rows`` (outside the timing), cut
into batches of the writer's batch size. Each stream is a process of its own with its own
connection; it sends its batches (stream k takes batches k, k+streams, ...) one COPY and one
transaction per batch, with ``synchronous_commit`` on. The time runs from the moment every
stream is connected and ready until the last one has committed its last batch.
"""

from __future__ import annotations

import multiprocessing
import time

import psycopg

from writer.copy_rows import COLUMNS, COPY_OPTIONS

_COPY = "COPY new_reports ({}) FROM STDIN {}".format(", ".join(COLUMNS), COPY_OPTIONS)
_BATCHES: list[bytes] = []  # set before forking, inherited by the streams


def _stream(conninfo: str, index: int, streams: int, ready, go, release, results) -> None:
    with psycopg.connect(conninfo) as connection:
        connection.execute("SET synchronous_commit = on")
        connection.commit()
        mine = _BATCHES[index::streams]
        ready.wait()
        go.wait()
        for data in mine:
            with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
                copy.write(data)
            connection.commit()
        results.put((index, time.time(), len(mine)))
        release.wait(60)  # the backend stays until the parent has read its CPU time


def run(conninfo: str, batches: list[bytes], streams: int, on_ready=None, on_finished=None) -> tuple[float, float]:
    """Write ``batches`` with ``streams`` processes; returns the wall-clock times of go and of the last commit.
    ``on_ready()`` runs once every stream is connected, before the clock starts; ``on_finished()`` once
    every stream has committed, before they disconnect."""
    global _BATCHES
    _BATCHES = batches
    context = multiprocessing.get_context("fork")
    ready, go, release = context.Barrier(streams + 1), context.Event(), context.Event()
    results = context.Queue()
    processes = [context.Process(target=_stream, args=(conninfo, i, streams, ready, go, release, results))
                 for i in range(streams)]
    try:
        for process in processes:
            process.start()
        ready.wait(60)
        if on_ready is not None:
            on_ready()
        started = time.time()
        go.set()
        finished = [results.get(timeout=3600) for _ in processes]
        if on_finished is not None:
            on_finished()
        release.set()
        for process in processes:
            process.join(60)
        if any(process.exitcode != 0 for process in processes):
            raise RuntimeError(f"a ceiling stream failed: exit codes {[p.exitcode for p in processes]}")
    finally:
        release.set()
        _BATCHES = []
        for process in processes:
            if process.is_alive():
                process.kill()
    return started, max(end for _, end, _ in finished)
