"""librdkafka's mock cluster with its fault-injection API, for tests that need Kafka to answer with an error.

The mock (the same one writer/kafka_mock.py hosts) is driven here through
librdkafka's C API with ctypes, in a child process that takes one command a
line on stdin: it can make the next N requests of one API fail with given
error codes (``push_request_errors``), mark a topic in error, or stop a
broker. The Python client exposes none of this.

    with MockCluster() as kafka:
        kafka.push_request_errors(OFFSET_COMMIT, REBALANCE_IN_PROGRESS)
"""

from __future__ import annotations

import ctypes
import glob
import os
import select
import subprocess
import sys
import tempfile

# Kafka protocol API keys and error codes (Kafka protocol specification; librdkafka uses the same numbers).
PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH = 0, 1, 2, 3, 8, 9
UNKNOWN_TOPIC_OR_PART = 3
MSG_SIZE_TOO_LARGE = 10
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
REBALANCE_IN_PROGRESS = 27
POLICY_VIOLATION = 44


STARTUP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0


def find_library(site: str | None = None) -> str:
    """The librdkafka that confluent-kafka's wheel bundles (its mock cluster API is not in the Python client).
    A missing library is an error, never a reason to skip: the tests that need it would silently vanish."""
    if site is None:
        import confluent_kafka

        site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    pattern = os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*")
    candidates = sorted(glob.glob(pattern))
    if not candidates:
        raise RuntimeError(f"librdkafka of confluent-kafka not found (looked for {pattern}); the mock cluster's "
                           "fault injection needs confluent-kafka installed from its manylinux wheel")
    return candidates[0]


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(find_library())
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [ctypes.c_void_p, ctypes.c_int16, ctypes.c_size_t,
                                                            ctypes.POINTER(ctypes.c_int)]
    lib.rd_kafka_mock_clear_request_errors.argtypes = [ctypes.c_void_p, ctypes.c_int16]
    lib.rd_kafka_mock_topic_set_error.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_broker_set_down.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    return lib


def _host() -> None:
    lib = _library()
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)  # the mock's own connection chatter
    handle = lib.rd_kafka_new(1, conf, errstr, 512)  # 1: RD_KAFKA_CONSUMER; only hosts the cluster
    if not handle:
        raise RuntimeError(errstr.value.decode())
    cluster = lib.rd_kafka_mock_cluster_new(handle, 1)
    print(lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "errors":  # api_key code...
            codes = (ctypes.c_int * (len(args) - 1))(*map(int, args[1:]))
            lib.rd_kafka_mock_push_request_errors_array(cluster, int(args[0]), len(args) - 1, codes)
        elif command == "clear":
            lib.rd_kafka_mock_clear_request_errors(cluster, int(args[0]))
        elif command == "topic_error":
            lib.rd_kafka_mock_topic_set_error(cluster, args[0].encode(), int(args[1]))
        elif command == "topic":
            lib.rd_kafka_mock_topic_create(cluster, args[0].encode(), int(args[1]), 1)
        elif command == "down":
            lib.rd_kafka_mock_broker_set_down(cluster, 1)
        elif command == "up":
            lib.rd_kafka_mock_broker_set_up(cluster, 1)
        print("ok", flush=True)


class MockCluster:
    def __init__(self, argv: list[str] | None = None, startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        # stderr to a file: shown when the host fails, and never a pipe that could fill up and block it.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - open for the host's lifetime
        self._process = subprocess.Popen(
            argv or [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            stderr=self._stderr,
        )
        self.bootstrap_servers = self._read_line(startup_timeout, "start")

    def _read_line(self, timeout: float, doing: str) -> str:
        readable, _, _ = select.select([self._process.stdout], [], [], timeout)
        line = self._process.stdout.readline().strip() if readable else ""
        if not line:
            self._process.kill()
            self._process.wait()
            self._stderr.seek(0)
            why = "exited" if readable else f"gave no answer within {timeout:g} s"
            raise RuntimeError(f"the mock cluster host did not {doing} ({why}); its stderr:\n{self._stderr.read()}")
        return line

    def _command(self, *words) -> None:
        self._process.stdin.write(" ".join(map(str, words)) + "\n")
        self._process.stdin.flush()
        answer = self._read_line(COMMAND_TIMEOUT_S, f"answer {words[0]!r}")
        assert answer == "ok", answer

    def push_request_errors(self, api_key: int, *codes: int) -> None:
        """The next len(codes) requests of ``api_key`` (from any client) fail with these codes, in order."""
        self._command("errors", api_key, *codes)

    def clear_request_errors(self, api_key: int) -> None:
        self._command("clear", api_key)

    def create_topic(self, topic: str, partitions: int) -> None:
        self._command("topic", topic, partitions)

    def set_topic_error(self, topic: str, code: int) -> None:
        self._command("topic_error", topic, code)

    def broker_down(self) -> None:
        self._command("down")

    def broker_up(self) -> None:
        self._command("up")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    _host()
