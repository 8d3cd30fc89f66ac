"""The benchmark's target plumbing without servers: configuration carried over, /proc readers."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile

import pytest
from psycopg.conninfo import conninfo_to_dict

from bench import procfs
from bench.kafka import Broker
from bench.measure import Result
from bench.pg import PgTarget, Store
from writer import config as writer_config
from writer.database import conninfo as writer_conninfo
from writer.testing.environment import without_writer_settings

ENV = "CCX_NOTIFICATION_WRITER__"


def test_given_broker_takes_tls_and_sasl_from_the_service_configuration(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.toml here
    for name in set(os.environ) - set(without_writer_settings()):
        monkeypatch.delenv(name)
    monkeypatch.setenv(ENV + "BROKER__ADDRESSES", "service-kafka:9092")
    monkeypatch.setenv(ENV + "BROKER__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv(ENV + "BROKER__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv(ENV + "BROKER__SASL_USERNAME", "bench-user")
    monkeypatch.setenv(ENV + "BROKER__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv(ENV + "BROKER__CERT_PATH", "/etc/ca.pem")

    broker = Broker.given_by_user("bench-kafka:9093")

    assert broker.options["bootstrap.servers"] == "bench-kafka:9093"  # the flag wins over the configuration
    assert broker.options["security.protocol"] == "SASL_SSL"
    assert broker.options["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert broker.options["sasl.username"] == "bench-user"
    assert broker.options["sasl.password"] == "s3cret"
    assert broker.options["ssl.ca.location"] == "/etc/ca.pem"
    assert broker.writer_env == {
        ENV + "BROKER__SECURITY_PROTOCOL": "SASL_SSL", ENV + "BROKER__CERT_PATH": "/etc/ca.pem",
        ENV + "BROKER__SASL_MECHANISM": "SCRAM-SHA-512", ENV + "BROKER__SASL_USERNAME": "bench-user",
        ENV + "BROKER__SASL_PASSWORD": "s3cret",
    }
    assert "s3cret" not in broker.label


def test_the_writer_connects_into_the_benchmark_schema(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.toml here
    target = PgTarget({"host": "db.example", "port": "6543", "user": "bench", "password": "pw", "sslmode": "require"},
                      "userdb", schema_only=True)
    store = Store(target, "userdb", "ccxw_bench_writer2_0123abcd")

    config = writer_config.load(environ=store.env("ccxw-bench-writer-x"))
    params = conninfo_to_dict(writer_conninfo(config))

    assert params["host"] == "db.example" and params["port"] == "6543" and params["user"] == "bench"
    assert params["password"] == "pw" and params["sslmode"] == "require" and params["dbname"] == "userdb"
    assert params["options"] == "-csearch_path=ccxw_bench_writer2_0123abcd"
    assert params["application_name"] == "ccxw-bench-writer-x"
    assert conninfo_to_dict(store.conninfo("x"))["options"] == "-csearch_path=ccxw_bench_writer2_0123abcd"


def test_listening_pid_finds_this_process():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert procfs.listening_pid(listener.getsockname()[1]) == os.getpid()


def test_local_hosts():
    assert procfs.is_local_host("127.0.0.1")
    assert procfs.is_local_host("localhost")
    assert procfs.is_local_host("/var/run/postgresql")
    assert not procfs.is_local_host("192.0.2.1")  # TEST-NET-1: never this host


def test_cpu_between_interpolates_at_the_window_edges():
    sampler = procfs.ProcessSampler(None)
    sampler.tracks[1] = procfs._Track("workers", started=0.0, samples=[(1.0, 0.5), (2.0, 1.0), (3.0, 2.5), (4.0, 3.0)])
    sampler.tracks[2] = procfs._Track("workers", started=2.5, samples=[(2.6, 0.2), (3.5, 0.7)])  # started inside
    sampler.tracks[3] = procfs._Track("postgres", started=0.0, samples=[(1.0, 9.0), (4.0, 9.5)])
    # track 1: 1.0 at 2.0, 2.8 at 3.6 (between 2.5 at 3.0 and 3.0 at 4.0); track 2: 0 before its start,
    # 0.7 after its last sample.
    assert abs(sampler.cpu_between("workers", 2.0, 3.6) - ((2.8 - 1.0) + 0.7)) < 1e-9
    # 9.0 + 0.5 * (0.5 / 3) at 1.5, 9.0 + 0.5 * (2.9 / 3) at 3.9
    assert abs(sampler.cpu_between("postgres", 1.5, 3.9) - 0.4) < 1e-9
    assert sampler.cpu_between("broker", 0, 10) is None


def test_sampled_cpu_per_message_needs_a_long_enough_window():
    from bench.measure import cpu_per_message

    sampler = procfs.ProcessSampler(None, interval=0.1)
    sampler.tracks[1] = procfs._Track("workers", started=0.0, samples=[(t / 10, t / 20) for t in range(100)])
    short = cpu_per_message(sampler, 1.0, 2.5, 100, ("workers",))  # 15 sampling intervals
    assert short == {"workers": None}
    long = cpu_per_message(sampler, 1.0, 4.0, 100, ("workers",))  # 30 intervals, 1.5 CPU seconds
    assert abs(long["workers"] - 15_000) < 1e-6


def test_cpu_read_directly_needs_both_readings():
    before = {1: ("postgres", 2.0), 2: ("postgres", 5.0), 9: ("broker", 1.0)}
    after = {1: ("postgres", 2.5), 2: ("postgres", 5.25), 9: ("broker", 1.0)}
    assert procfs.cpu_used(before, after, "postgres") == 0.75
    assert procfs.cpu_used(before, after, "broker") == 0.0
    assert procfs.cpu_used(before, {1: ("postgres", 2.5)}, "postgres") is None  # pid 2 gone: unknown, not 0.5
    assert procfs.cpu_used(before, after, "workers") is None
    readings = procfs.read_cpu({os.getpid(): "me", 2**22 + 12345: "nobody"})
    assert list(readings) == [os.getpid()] and readings[os.getpid()][0] == "me"


def test_user_application_name_and_options_survive_schema_only(monkeypatch, tmp_path):
    """A --postgres string with its own application_name and options: no crash, the user's options kept
    (the schema's search_path appended), the benchmark's application_name used (its sessions are found by it)."""
    monkeypatch.chdir(tmp_path)  # no config.toml here
    target = PgTarget({"host": "db.example", "port": "5432", "user": "bench", "application_name": "mine",
                       "options": "-c statement_timeout=0"}, "userdb", schema_only=True)
    store = Store(target, "userdb", "ccxw_bench_x")

    mine = conninfo_to_dict(store.conninfo("ccxw-bench-run"))
    assert mine["options"] == "-c statement_timeout=0 -csearch_path=ccxw_bench_x"
    assert mine["application_name"] == "ccxw-bench-run"
    assert mine["dbname"] == "userdb"
    monitor = conninfo_to_dict(target.conninfo("userdb", application_name="ccxw-bench-monitor"))
    assert monitor["application_name"] == "ccxw-bench-monitor"
    assert monitor["options"] == "-c statement_timeout=0"

    writer = conninfo_to_dict(writer_conninfo(writer_config.load(environ=store.env("ccxw-bench-writer-y"))))
    assert writer["options"] == "-c statement_timeout=0 -csearch_path=ccxw_bench_x"
    assert writer["application_name"] == "ccxw-bench-writer-y"


def test_user_options_kept_for_a_database_per_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    target = PgTarget({"host": "db.example", "port": "5432", "user": "bench", "options": "-c work_mem=64MB"},
                      "postgres", schema_only=False)
    store = Store(target, "ccxw_bench_db", None)
    writer = conninfo_to_dict(writer_conninfo(writer_config.load(environ=store.env("ccxw-bench-writer-z"))))
    assert writer["options"] == "-c work_mem=64MB"
    assert writer["dbname"] == "ccxw_bench_db"
    assert conninfo_to_dict(store.conninfo("a"))["options"] == "-c work_mem=64MB"


def test_the_writer_runs_in_a_private_empty_directory():
    """Not /tmp, where anybody's config.toml would configure the writer under test."""
    from bench.common import private_cwd

    directory = private_cwd()
    assert os.path.realpath(directory) != os.path.realpath(tempfile.gettempdir())
    assert os.listdir(directory) == []
    assert os.stat(directory).st_uid == os.getuid()
    assert os.stat(directory).st_mode & 0o077 == 0
    assert private_cwd() == directory


def test_local_target_removes_its_working_directory():
    target = PgTarget.local(schema_only=False)
    assert target.workdir is not None and os.path.isdir(target.workdir)
    assert target.version()  # the server answers
    target.cleanup()
    assert not os.path.exists(target.workdir)


def test_a_port_forwarder_is_not_taken_for_the_broker():
    """docker-proxy listening on the bootstrap port: its CPU is not the broker's, so none is reported."""
    script = ("import socket, sys, time\n"
              "open('/proc/self/comm', 'w').write('docker-proxy')\n"
              "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
              "print(s.getsockname()[1], flush=True); time.sleep(60)\n")
    proxy = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        assert procfs.command_name(proxy.pid) == "docker-proxy"
        assert procfs.listening_pid(port) == proxy.pid
        assert Broker({"bootstrap.servers": f"127.0.0.1:{port}"}, {}, "x").local_pid() is None
    finally:
        proxy.kill()
        proxy.wait()
    with socket.socket() as listener:  # the broker itself (here: this process) is measured
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert Broker({"bootstrap.servers": f"localhost:{port}"}, {}, "x").local_pid() == os.getpid()


# ---- what the benchmark computes from a run (pure) ----------------------------------------------

def _run(kind: str, streams: int, rate: float, **fields) -> Result:
    return Result(f"{kind} {streams}", kind, 1000, 1000, 1000 / rate, rate, streams=streams, **fields)


def test_targets_are_computed_from_the_run():
    from bench.targets import evaluate

    results = [
        _run("ceiling", 2, 20_000), _run("pipeline", 2, 10_000),
        _run("writer", 2, 9_000, cpu_us_per_message={"workers": 20.0}, idle_share=[0.10, 0.20]),
        _run("writer", 2, 50_000, consumer_options={"fetch.wait.max.ms": "10"}),  # a swept run: not the target's
    ]
    rss = [_run("writer", 2, 1, worker_rss_kib=[150 * 1024, 160 * 1024]),
           _run("writer", 2, 1, worker_rss_kib=[165 * 1024])]
    verdicts = evaluate(results, 0.25, rss)
    # 90% of the pipeline ceiling, 45% of the COPY ceiling, 20 µs, one worker 20% idle, 250 ms, +3.1% and 165 MiB
    assert [v.met for v in verdicts] == [True, False, True, False, True, True]
    assert "90%" in verdicts[0].result and "45%" in verdicts[1].result and "10%, 20%" in verdicts[3].result
    assert "+3.1%" in verdicts[5].result  # 160 -> 165 MiB, the largest worker of each backlog
    higher = [_run("writer", 2, 1, worker_rss_kib=[150 * 1024]), _run("writer", 2, 1, worker_rss_kib=[171 * 1024])]
    assert evaluate(results, 0.25, higher)[5].met is False  # +14% and over 170 MiB


def test_targets_not_measured_are_said_so():
    from bench.targets import evaluate

    verdicts = evaluate([_run("writer", 1, 5_000)], None, [])
    assert [v.met for v in verdicts] == [None] * 6
    assert all(v.answer == "not measured" for v in verdicts)


def test_consumer_sweep_varies_one_option_at_a_time():
    from bench.e2e import consumer_sweep, consumer_variants

    sweeps = [consumer_sweep("fetch.queue.backoff.ms=1000,10,10"), consumer_sweep("fetch.wait.max.ms = 10")]
    assert sweeps == [("fetch.queue.backoff.ms", ["1000", "10"]), ("fetch.wait.max.ms", ["10"])]
    assert consumer_variants(sweeps) == [{}, {"fetch.queue.backoff.ms": "1000"}, {"fetch.queue.backoff.ms": "10"},
                                         {"fetch.wait.max.ms": "10"}]


def test_idle_share_from_the_main_threads_busy_time():
    sampler = procfs.ProcessSampler(None)
    # busy (run + run-queue wait) grows 0.5 s per second from 1.0 to 3.0, then not at all (the worker idles)
    sampler.tracks[7] = procfs._Track("workers", started=0.0, busy=[(1.0, 0.2), (3.0, 1.2), (5.0, 1.2)])
    sampler.tracks[8] = procfs._Track("supervisor", started=0.0, busy=[(1.0, 0.0), (5.0, 4.0)])
    shares = sampler.idle_shares("workers", 1.0, 5.0)
    assert shares == {7: 0.75}  # 1.0 s busy of 4 s
    assert sampler.idle_shares("workers", 1.0, 3.0) == {7: 0.5}


def test_this_process_threads_and_schedstat_are_read():
    import threading

    stop = threading.Event()
    spinner = threading.Thread(target=lambda: stop.wait(0.3), daemon=True)
    spinner.start()
    try:
        threads = procfs.thread_cpu_seconds(os.getpid())
    finally:
        stop.set()
    assert threads is not None and set(threads) == set(procfs.THREAD_CLASSES)
    assert threads["main"] > 0  # this test process has run on a CPU
    run, wait = procfs.main_thread_schedstat(os.getpid())
    assert run > 0 and wait >= 0
    assert procfs.main_thread_schedstat(2**22 + 12345) is None


def test_the_mock_host_creates_topics_of_any_partition_count():
    from bench.mock_host import MockHost

    host = MockHost()
    try:
        host.create_topic("bench-unit-topic", 7)
        assert Broker({"bootstrap.servers": host.bootstrap_servers}, {}, "x").partitions("bench-unit-topic") == 7
        try:
            host.create_topic("bench-unit-topic", 3)
        except RuntimeError as error:
            assert "TOPIC_ALREADY_EXISTS" in str(error)
        else:
            raise AssertionError("creating an existing topic succeeded")
    finally:
        host.stop()


def test_latency_messages_carry_their_cluster_time_and_report():
    import datetime

    from bench.latency import TimedMessages
    from writer.message import Row, parse_message
    from writer.sample_messages import cluster_id

    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.UTC)
    for mix in ("varied", "uniform"):
        messages = TimedMessages(mix, "middle_size")
        for number in (3, 3 + TimedMessages.POOL, 50_000_001):
            row = parse_message(messages.encoded(number, moment), 0, datetime.datetime(2100, 1, 1))
            assert type(row) is Row
            assert row.cluster == cluster_id(number)
            assert row.updated_at == moment.replace(tzinfo=None)
            assert hashlib.md5(row.report).hexdigest() == messages.report_digest(number)  # noqa: S324


def test_the_mock_gets_partitions_for_its_backlog_a_given_broker_what_is_asked():
    mock = Broker({"bootstrap.servers": "x:1"}, {}, "mock", mock=object())  # type: ignore[arg-type]
    assert mock.partitions_for(1000, "varied", 4) == 4
    assert mock.partitions_for(100_000, "varied", 4) == 40  # 2,500 varied messages a partition
    assert mock.partitions_for(100_000, "uniform", 4) == 4
    given = Broker({"bootstrap.servers": "x:1"}, {}, "given")
    assert given.partitions_for(100_000, "varied", 4) == 4


def test_a_worker_whose_first_partitions_come_late_marks_a_stalled_join():
    from bench.measure import join_spread, join_stalled

    def assigned(pid: int, second: float, what: str = "t[0]") -> dict:
        return {"pid": pid, "time": f"2026-12-08T10:00:{second:06.3f}+00:00", "message": f"partitions assigned: {what}"}

    together = [assigned(1, 3.3), assigned(2, 3.4), assigned(1, 9.0)]
    late = [assigned(1, 3.3), assigned(2, 3.4, "none"), assigned(2, 47.3)]
    assert join_spread(together, 2) == pytest.approx(0.1, abs=1e-3)
    assert join_spread(late, 2) == pytest.approx(44.0, abs=1e-3)
    assert join_spread([assigned(1, 3.3)], 2) is None
    assert not join_stalled(Result("w", "writer", 1, 1, 1.0, 1.0, join_spread=0.1))
    assert join_stalled(Result("w", "writer", 1, 1, 1.0, 1.0, join_spread=44.0))
    assert join_stalled(Result("w", "writer", 1, 1, 1.0, 1.0, join_spread=None))
