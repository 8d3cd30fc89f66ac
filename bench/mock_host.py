"""librdkafka's mock cluster in a process of its own, with topics of any partition count.

The mock answers CreateTopics only after waiting for a controller it never names, and creates
topics on first use with 4 partitions; it keeps the newest 5 MiB of each partition. A backlog of
production-like messages needs more partitions than 4 to fit, so this host creates the benchmark's
topics itself, through librdkafka's own ``rd_kafka_mock_topic_create`` (the C API the mock offers,
reached with ctypes in the librdkafka that confluent-kafka loads).

    python -m bench.mock_host        # prints HOST:PORT; then reads "topic NAME PARTITIONS" lines on
                                     # stdin, answers "ok" or "error ..." to each; exits when stdin closes
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import subprocess
import sys
import threading

RD_KAFKA_PRODUCER = 0


def _librdkafka() -> ctypes.CDLL:
    """The librdkafka confluent-kafka uses: the copy its wheel bundles, else the system's."""
    import confluent_kafka

    bundled = glob.glob(os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs",
                                     "librdkafka*.so*"))
    name = bundled[0] if bundled else ctypes.util.find_library("rdkafka")
    if not name:
        raise RuntimeError("librdkafka not found")
    library = ctypes.CDLL(name)
    library.rd_kafka_conf_new.restype = ctypes.c_void_p
    library.rd_kafka_new.restype = ctypes.c_void_p
    library.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    library.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    library.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    library.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    library.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    library.rd_kafka_mock_topic_create.restype = ctypes.c_int
    library.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    library.rd_kafka_err2name.restype = ctypes.c_char_p
    library.rd_kafka_err2name.argtypes = [ctypes.c_int]
    return library


def _host(brokers: int) -> None:
    library = _librdkafka()
    error = ctypes.create_string_buffer(512)
    handle = library.rd_kafka_new(RD_KAFKA_PRODUCER, library.rd_kafka_conf_new(), error, len(error))
    if not handle:
        raise RuntimeError(f"rd_kafka_new: {error.value.decode()}")
    cluster = library.rd_kafka_mock_cluster_new(handle, brokers)
    if not cluster:
        raise RuntimeError("rd_kafka_mock_cluster_new failed")
    print(library.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 3 or parts[0] != "topic" or not parts[2].isdigit():
            print(f"error: not 'topic NAME PARTITIONS': {line.strip()!r}", flush=True)
            continue
        code = library.rd_kafka_mock_topic_create(cluster, parts[1].encode(), int(parts[2]), 1)
        print("ok" if code == 0 else f"error {library.rd_kafka_err2name(code).decode()}", flush=True)
    # stdin closed: the parent is done (or gone); the process exit takes the cluster with it.


class MockHost:
    """The host process, started and stopped by the benchmark."""

    def __init__(self, brokers: int = 1, startup_timeout: float = 20.0) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "bench.mock_host", str(brokers)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._lock = threading.Lock()
        self.bootstrap_servers = self._answer(startup_timeout)
        if ":" not in self.bootstrap_servers:
            self.stop()
            raise RuntimeError(f"the mock host did not start: {self.bootstrap_servers!r}")

    def _answer(self, timeout: float) -> str:
        assert self._process.stdout is not None  # a PIPE
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self._process.stdout.readline().strip()), daemon=True)
        reader.start()
        reader.join(timeout)
        return found[0] if found else ""

    @property
    def pid(self) -> int:
        return self._process.pid

    def create_topic(self, name: str, partitions: int) -> None:
        assert self._process.stdin is not None  # a PIPE
        with self._lock:
            self._process.stdin.write(f"topic {name} {partitions}\n")
            self._process.stdin.flush()
            answer = self._answer(10)
        if answer != "ok":
            raise RuntimeError(f"the mock host could not create topic {name}: {answer or 'no answer'}")

    def stop(self) -> None:
        if self._process.poll() is None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":
    _host(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
