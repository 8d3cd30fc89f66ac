"""Supervisor: starts the worker processes, restarts them, stops them cleanly, serves metrics.

Contracts:

- SIGTERM/SIGINT: every worker gets SIGTERM, finishes and commits the batch
  it holds, leaves the group; the supervisor exits 0. Bound: batch timeout +
  one batch write (at most ``[processing] shutdown_timeout_s`` while the
  database is failing), after which a worker still running is killed (its
  uncommitted batch is consumed again later, nothing is lost).
- A worker that dies is restarted with exponential backoff; more than
  ``max_restarts`` deaths within ``restart_window_s`` stop the service with
  the exit status of the last death (or 2, consumer error).
- Replay mode: the end offsets of every partition are read at start; when the
  workers' published positions reach them all (or the partitions are
  finished), the workers are stopped and a summary is printed
  (see writer/replay.py for the range, writer/replay_summary.py for the end).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from writer import exit_codes, health, restart_policy
from writer.config import Config, parse_listen_address
from writer.replay import ReplayTarget
from writer.replay_options import ReplayOptions, ReplayRequestError
from writer.stages.stop import StopRequest

if TYPE_CHECKING:
    from writer.database_probe import DatabaseProbe
    from writer.health import WorkerView
    from writer.http_server import HttpServer
    from writer.progress import ProgressReporter
from writer.memory import peak_rss_kib

log = logging.getLogger("writer.supervisor")

# One turn of the main loop: how soon a dead worker is noticed and a due restart starts.
LOOP_INTERVAL_S = 0.2
# On stop, beyond a worker's own bounds (shutdown timeout + batch timeout): time to close its consumer
# (leave the group, final commit) before it is killed.
CLOSE_MARGIN_S = 5.0
# After SIGKILL: how long to wait for the process to be reaped (the kernel ends it; this only bounds the wait).
KILL_WAIT_S = 5.0


def preflight_database(config: Config) -> str | None:
    """Why the service cannot start on this database, or None.

    Checked once at start so that a wrong address, credentials or database
    name stops the service with one clear line; once running, the workers
    treat a lost connection as transient and retry.
    """
    import psycopg

    from writer import database
    from writer.catalog import table_exists

    try:
        with database.connect(config, autocommit=True) as connection:
            if not table_exists(connection, "new_reports"):
                return (f"table new_reports does not exist in {database.describe(config)}: "
                        "run --db-init-migration, --db-init and --migrate latest first")
    except psycopg.Error as error:
        return f"cannot connect to PostgreSQL at {database.describe(config)}: {database.safe_error_text(error)}"
    return None


@dataclass
class WorkerSlot:
    slot: int
    process: BaseProcess | None = None
    restart_at: float = 0.0
    started: float = 0.0  # wall-clock start of the current process
    restart_due: float = 0.0  # wall-clock time of the scheduled restart (for liveness; 0: none)
    deaths: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, config: Config, metrics_dir: str, replay: bool = False, group_id: str | None = None,
                 replay_options: ReplayOptions | None = None) -> None:
        from writer.metrics import Metrics

        self.config = config
        self.metrics_dir = metrics_dir
        self.replay = replay
        self.group_id = group_id
        self.context = multiprocessing.get_context("spawn")
        self.count = config.worker_count
        from writer.status import new_status_array

        self.status_array = new_status_array(self.context, self.count)
        self.slots = [WorkerSlot(i) for i in range(self.count)]
        # A plain flag, set by the signal handler: an Event's set() there could wait for the lock that the main
        # thread, interrupted inside the same Event's wait(), holds. The loop's wait ends at the signal through
        # ``wakeup`` (see ``stopped_by_signals``).
        self.stop_request = StopRequest(config.processing.shutdown_timeout_s)
        self.wakeup: socket.socket | None = None
        self.metrics = Metrics(config.metrics.namespace)
        self.exit_status = exit_codes.OK
        self.http: HttpServer | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.replay_target: ReplayTarget | None = None
        self.replay_options = replay_options or ReplayOptions()
        self.progress: ProgressReporter | None = None
        self.database_probe: DatabaseProbe | None = None
        self.loop_beat = time.time()  # the main loop's last turn, for liveness
        self.processes: tuple[tuple[int, int | None, float, float], ...] = ()
        self._metrics_files = threading.Lock()
        self.health_limits = health.limits(config)
        self._publish_processes()

    # ---- metrics and health ---------------------------------------------

    def render_metrics(self) -> bytes:
        from writer.metrics import collect_multiprocess, render

        with self._metrics_files:
            return render(collect_multiprocess(self.metrics_dir), self.config.metrics.namespace)

    def totals(self) -> dict[str, float]:
        from writer.metrics import collect_multiprocess, totals

        with self._metrics_files:
            return totals(collect_multiprocess(self.metrics_dir), self.config.metrics.namespace)

    def _forget_process_metrics(self, pid: int | None) -> None:
        from writer.metrics import archive_dead_process

        if pid is None:  # never started: it wrote no metrics
            return
        with self._metrics_files:  # a scrape must see the files before or after, never half-moved
            archive_dead_process(self.metrics_dir, pid)

    def _views(self) -> tuple[list[WorkerView], health.Limits]:
        """What /health and /ready decide from. Called from the HTTP thread: reads only snapshots the main
        loop publishes (never a Process object, whose is_alive() would reap a worker behind its back)."""
        from writer.health import WorkerView
        from writer.status import read_slot

        views = []
        for slot, pid, started, restart_due in self.processes:
            state = read_slot(self.status_array, slot)
            # The slot keeps a dead predecessor's values until the new process writes its own.
            own = pid is not None and int(state["pid"]) == pid
            views.append(WorkerView(
                slot=slot, pid=pid, started=started, last_poll=state["last_poll"] if own else 0.0,
                broker_up=own and state["broker_up"] == 1, database_ok=not own or state["database_ok"] == 1,
                assigned=int(state["assigned"]) if own else 0,
                kafka_wait_since=state["kafka_wait_since"] if own else 0.0,
                database_wait_since=state["database_wait_since"] if own else 0.0,
                restart_at=restart_due if pid is None else 0.0,
            ))
        return views, self.health_limits

    def health(self) -> tuple[bool, dict[str, Any]]:
        from writer.health import liveness

        views, bounds = self._views()
        return liveness(views, self.loop_beat, time.time(), bounds)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        from writer.database_probe import UNKNOWN
        from writer.health import DatabaseView, readiness

        views, bounds = self._views()
        database = self.database_probe.view() if self.database_probe else DatabaseView(UNKNOWN, "", 0.0)
        return readiness(views, database, self.loop_beat, self.stop_request.requested, time.time(), bounds)

    def _publish_processes(self) -> None:
        # One tuple, replaced whole: the HTTP thread reads it once per request.
        self.processes = tuple(
            (s.slot, s.process.pid if s.process is not None else None, s.started, s.restart_due) for s in self.slots
        )

    # ---- processes --------------------------------------------------------

    def _start_worker(self, slot: WorkerSlot) -> None:
        from writer.worker import worker_main

        process = self.context.Process(
            target=worker_main, args=(self.config, slot.slot, self.status_array, self.group_id,
                                      self.replay_target.plan if self.replay_target else None, self.count),
            name=f"worker-{slot.slot}", daemon=False,
        )
        process.start()
        slot.process = process
        slot.started = time.time()
        slot.restart_due = 0.0
        self._publish_processes()
        log.info("worker %d started", slot.slot, extra={"worker_pid": process.pid})

    def _start_due_workers(self) -> None:
        """Start every worker slot without a process whose (re)start time has come."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None and now >= slot.restart_at:
                self._start_worker(slot)

    def _reap(self) -> bool:
        """Note dead workers and schedule their restarts; False when they keep dying and the service must stop."""
        now = time.monotonic()
        policy = self.config.processing
        for slot in self.slots:
            process = slot.process
            if process is None or process.is_alive():
                continue
            code = process.exitcode
            self._forget_process_metrics(process.pid)
            slot.process = None
            self._publish_processes()
            slot.deaths, delay = restart_policy.after_death(slot.deaths, now, policy.restart_window_s,
                                                            policy.max_restarts)
            log.error("worker %d (pid %d) died with status %s", slot.slot, process.pid, code)
            if delay is None:
                log.error("worker %d died %d times within %d s: stopping", slot.slot, len(slot.deaths),
                          policy.restart_window_s)
                self.exit_status = restart_policy.service_exit_status(code)
                return False
            slot.restart_at = now + delay
            slot.restart_due = time.time() + delay
            self._publish_processes()
            self.metrics.worker_restarts.inc()
            log.warning("restarting worker %d in %.1f s", slot.slot, delay)
        return True

    def _stop_workers(self) -> None:
        from writer.cloudwatch import exit_wait_s as cloudwatch_exit_wait_s

        running = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM; a worker that just exited is no error
        policy = self.config.processing
        # + a worker's last wait for CloudWatch at exit, so a worker sending its last lines is not killed.
        deadline = (time.monotonic() + policy.shutdown_timeout_s + policy.batch_timeout_ms / 1000
                    + CLOSE_MARGIN_S + cloudwatch_exit_wait_s(self.config))
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %d did not stop in time; killing it (its batch will be consumed again)",
                          process.pid)
                process.kill()
                process.join(KILL_WAIT_S)
            self._forget_process_metrics(process.pid)
        for slot in self.slots:
            slot.process = None
        self._publish_processes()

    # ---- main loop ----------------------------------------------------------

    def request_stop(self, *_signal_args) -> None:
        """SIGTERM/SIGINT (see ``stopped_by_signals``). Runs in a signal handler: assignments only."""
        self.stop_request.request()

    def _wait(self, seconds: float) -> None:
        """Until the next turn of the main loop, or a signal's wakeup."""
        if self.wakeup is None:
            self.stop_request.sleep(seconds)
            return
        readable, _, _ = select.select([self.wakeup], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError):
                self.wakeup.recv(4096)  # the signal numbers: the handler has set the flag already

    def run(self) -> int:
        from writer import http_server

        host, port = parse_listen_address(self.config.metrics.address)
        try:
            self.http = http_server.start(host, port, self.render_metrics, self.health, self.ready)
        except OSError as error:
            log.error("cannot serve metrics on %s: %s", self.config.metrics.address, error.strerror)
            return exit_codes.HTTP_SERVER_ERROR
        shown_host = host if host != "0.0.0.0" else "localhost"
        self.metrics_address = f"http://{shown_host}:{self.http.server_address[1]}/metrics"
        problem = preflight_database(self.config)
        if problem is not None:
            log.error("%s", problem)
            self._close_http()
            return exit_codes.STORAGE_ERROR
        if self.replay:
            try:
                self.replay_target = ReplayTarget(self.config, self.group_id, self.replay_options, self.context)
            except (ConnectionError, ReplayRequestError) as error:
                log.error("%s", error)
                self._close_http()
                return exit_codes.KAFKA_ERROR if isinstance(error, ConnectionError) else exit_codes.CONFIGURATION_ERROR
            plan = self.replay_target.plan
            log.info("replay: %d messages in %d partitions up to the end offsets seen at start",
                     plan.planned, len(plan.ends), extra={"starts": {str(p): o for p, o in plan.starts.items()},
                            "ends": {str(p): o for p, o in plan.ends.items()}})
            self.progress = self._progress_reporter(self.replay_target)
        log.info("starting %d workers; metrics on %s", self.count, self.metrics_address)
        self.database_probe = self._new_database_probe()
        self.database_probe.start()
        try:
            while not self.stop_request.requested:
                self.loop_beat = time.time()
                if not self._reap():
                    break
                self._start_due_workers()
                self.metrics.workers_alive.set(sum(1 for s in self.slots if s.process is not None))
                if self.replay_target is not None:
                    remaining = self.replay_target.remaining_partitions()
                    if self.progress is not None:
                        self.progress.tick(remaining)
                    if remaining == 0:
                        self.finished = time.monotonic()
                        break
                self._wait(LOOP_INTERVAL_S)
        finally:
            if self.progress is not None:
                self.progress.close()  # the final figures, before any other line
            if self.finished is not None:
                log.info("replay: caught up with the end offsets")
            self.database_probe.stop()
            self._stop_workers()
            if self.replay_target is not None:
                self.replay_target.close()
            self._close_http()
        if self.replay_target is not None and self.finished is None and self.exit_status == exit_codes.OK:
            self.exit_status = exit_codes.REPLAY_INCOMPLETE
        log.info("supervisor stopped", extra={"exit_status": self.exit_status,
                                              "peak_rss_kib": peak_rss_kib()})
        return self.exit_status

    def _progress_reporter(self, target: ReplayTarget) -> ProgressReporter | None:
        from writer.progress import ProgressReporter, ReplayGauges

        options = self.replay_options
        if options.progress == "off":
            return None
        gauges = ReplayGauges(self.config.metrics.namespace)
        return ProgressReporter(options.progress, options.progress_interval, target.plan.planned, self.totals,
                                target.messages_done, gauges)

    def _new_database_probe(self):
        from writer import database
        from writer.database_probe import DatabaseProbe

        return DatabaseProbe(database.conninfo(self.config), database.describe(self.config),
                             self.metrics.database_credentials_rejected.inc)

    def _close_http(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()


def summary(totals: dict[str, float], seconds: float) -> dict:
    prefix = "messages_rejected{reason="
    rejected = {k[len(prefix):-1]: int(v) for k, v in totals.items() if k.startswith("messages_rejected{")}
    messages = int(totals.get("consumed_messages", 0))
    return {
        "messages": messages,
        "stored": int(totals.get("stored_messages", 0)),
        "duplicates": int(totals.get("duplicates_skipped", 0)),
        "rejected": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "seconds": round(seconds, 3),
        "messages_per_second": round(messages / seconds, 1) if seconds > 0 else 0.0,
    }


def format_summary(result: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result["rejected_by_reason"].items()))
    return (
        f"messages {result['messages']}, stored {result['stored']}, duplicates {result['duplicates']}, "
        f"rejected {result['rejected']}{f' ({reasons})' if reasons else ''}, "
        f"{result['seconds']:.2f} s, {result['messages_per_second']:.0f} messages/s"
    )


def run_service(config: Config, replay: bool = False, group_id: str | None = None, on_summary=None,
                replay_options: ReplayOptions | None = None) -> int:
    """Run the service until stopped (or, in replay mode, caught up); returns the exit status.

    In replay mode the summary is printed, or handed to ``on_summary`` as a dict
    (see writer/replay_summary.py).
    """
    if not config.broker.enabled:
        log.warning("[broker] enabled is false: nothing to consume")
        return exit_codes.OK
    from writer.metrics_dir import MetricsDirectory

    metrics_dir = MetricsDirectory()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.path
    supervisor = Supervisor(config, metrics_dir.path, replay=replay, group_id=group_id, replay_options=replay_options)
    try:
        with stopped_by_signals(supervisor):
            status = supervisor.run()
            if replay and supervisor.replay_target is not None:
                from writer import replay_summary

                seconds = (supervisor.finished or time.monotonic()) - supervisor.started
                totals = supervisor.totals()
                result = replay_summary.extend(summary(totals, seconds), totals, replay_options,
                                               supervisor.replay_target.plan, status)
                result["metrics_address"] = supervisor.metrics_address
                if replay_options is not None and replay_options.summary_json:
                    replay_summary.write_json(replay_options.summary_json, result)
                if on_summary is None:
                    print(replay_summary.format_line(result), flush=True)
                else:
                    on_summary(result)
            return status
    finally:
        metrics_dir.remove()


@contextlib.contextmanager
def stopped_by_signals(supervisor: Supervisor) -> Iterator[None]:
    """SIGTERM and SIGINT stop ``supervisor``: its handler only sets a flag, and the byte Python's C-level handler
    writes to the wakeup socket (``signal.set_wakeup_fd``) ends the main loop's wait at once. The previous handlers
    come back afterwards."""
    wake_read, wake_write = socket.socketpair()
    for end in (wake_read, wake_write):
        end.setblocking(False)
    previous = {sig: signal.signal(sig, supervisor.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    supervisor.wakeup = wake_read
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.wakeup = None
        wake_read.close()
        wake_write.close()
