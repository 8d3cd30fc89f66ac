"""Prometheus metrics, shared by all processes through prometheus-client's multiprocess mode.

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is first
imported in a process; the supervisor sets it and its workers inherit it.

The original service's nine counters keep their exact series names (no
``_total`` suffix) because its Grafana dashboard queries them; ``render``
writes them the way the original's Go client did. Everything added by this
project follows the usual Prometheus naming.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

ORIGINAL_COUNTERS = {
    "consumed_messages": "The total number of messages consumed from Kafka",
    "consuming_errors": "The total number of errors during consuming messages from Kafka",
    "parse_incoming_message": "The total number of parsed messages",
    "check_schema_version": "The total number of messages with successful schema check",
    "marshal_report": "The total number of marshaled reports",
    "shrink_report": "The total number of shrunk reports",
    "check_last_checked_timestamp": "The total number of messages with last checked timestamp",
    "stored_messages": "The total number of stored messages",
    "stored_bytes": "The total number of stored bytes",
}


# consumer_lag of a partition this worker no longer owns: set to this, left out when rendered
# (multiprocess mode cannot remove a series; the most recent value wins, so the next owner's shows).
NO_LONGER_OWNED = float("nan")


def _name(namespace: str, name: str) -> str:
    return f"{namespace}_{name}" if namespace else name


class Metrics:
    """All metrics of one process, named under the configured namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.original = {
            name: Counter(_name(namespace, name), text, registry=None) for name, text in ORIGINAL_COUNTERS.items()
        }
        n = lambda name: _name(namespace, name)  # noqa: E731
        self.batch_size = Histogram(
            n("batch_size_messages"), "Messages per consumed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=None,
        )
        self.write_duration = Histogram(
            n("batch_write_duration_seconds"), "Time to write one batch to PostgreSQL (one transaction)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=None,
        )
        self.rows_stored = Counter(n("rows_stored"), "Rows inserted into new_reports", registry=None)
        self.duplicates = Counter(
            n("duplicates_skipped"), "Messages whose primary key was already stored (replays)", registry=None
        )
        self.rejected = Counter(n("messages_rejected"), "Messages rejected, by reason", ["reason"], registry=None)
        self.dead_letters = Counter(
            n("dead_letters"), "Rejected messages delivered to the dead-letter topic", registry=None
        )
        self.unexpected_version = Counter(
            n("unexpected_schema_version"), "Messages with a Version other than the current one (stored)", registry=None
        )
        self.db_retries = Counter(n("database_retries"), "Retries after transient database errors", registry=None)
        self.commit_failures = Counter(
            n("offset_commit_failures"), "Offset commits refused (e.g. during a rebalance), retried later",
            registry=None,
        )
        self.consumer_lag = Gauge(
            n("consumer_lag_messages"), "Messages behind the high watermark, per partition",
            ["topic", "partition"], multiprocess_mode="mostrecent", registry=None,
        )
        self.last_commit = Gauge(
            n("last_commit_timestamp_seconds"), "Unix time of the last Kafka offset commit",
            multiprocess_mode="max", registry=None,
        )
        self.workers_alive = Gauge(
            n("workers_alive"), "Worker processes running", multiprocess_mode="livesum", registry=None
        )
        self.worker_restarts = Counter(n("worker_restarts"), "Worker processes restarted after dying", registry=None)
        self.database_credentials_rejected = Counter(
            n("database_credentials_rejected"),
            "Readiness probes whose connection PostgreSQL refused for our credentials (retried)", registry=None,
        )
        self.tracker_dropped = Counter(
            n("tracker_statuses_dropped"), "Payload-tracker statuses dropped (queue full, not delivered in time)",
            registry=None,
        )


def collect_multiprocess(directory: str) -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


class _Families:
    def __init__(self, families) -> None:
        self._families = families

    def collect(self):
        return self._families


def render(registry: CollectorRegistry, namespace: str) -> bytes:
    """Prometheus text exposition, with the original counters under their original names."""
    original_names = {_name(namespace, name): text for name, text in ORIGINAL_COUNTERS.items()}
    families = list(registry.collect())
    rest = [f for f in families if f.name not in original_names]
    for family in rest:
        if family.type == "gauge":
            family.samples = [s for s in family.samples if s.value == s.value]  # NaN: NO_LONGER_OWNED
    lines = []
    for name, text in original_names.items():
        value = sum(
            s.value for f in families if f.name == name for s in f.samples if s.name == f"{name}_total"
        )
        lines.append(f"# HELP {name} {text}\n# TYPE {name} counter\n{name} {floatToGoString(value)}\n")
    return "".join(lines).encode() + generate_latest(_Families(rest))


def totals(registry: CollectorRegistry, namespace: str) -> dict[str, float]:
    """Counter totals by sample name (labels folded into 'name{label=value}'), for summaries and tests."""
    result: dict[str, float] = {}
    for family in registry.collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            name = sample.name[: -len("_total")]
            if namespace and name.startswith(namespace + "_"):
                name = name[len(namespace) + 1:]
            if sample.labels:
                name += "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            result[name] = result.get(name, 0.0) + sample.value
    return result


def archive_dead_process(directory: str, pid: int) -> None:
    """Fold a dead process's metric files into one archive file per kind, then delete them.

    prometheus-client keeps one file per process and kind for ever, so every
    restart would add files that each scrape reads. Counters and histograms
    are summed into ``counter_archive.db`` / ``histogram_archive.db`` (totals
    never go backwards); ``max`` gauges keep their maximum; other gauges of a
    dead process (its consumer lag, its liveness) are dropped: they describe
    a process that no longer exists. The caller keeps scrapes out meanwhile.
    """
    import glob
    import os

    from prometheus_client.mmap_dict import MmapedDict

    for path in glob.glob(os.path.join(directory, f"*_{pid}.db")):
        kind = os.path.basename(path)[: -len(f"_{pid}.db")]  # counter, histogram, gauge_max, gauge_livesum...
        if kind in ("counter", "histogram", "summary", "gauge_max", "gauge_min"):
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                kept = {key: value for key, value, _ in archive.read_all_values()}
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(path):
                    if key in kept and kind == "gauge_max":
                        value = max(kept[key], value)
                    elif key in kept and kind == "gauge_min":
                        value = min(kept[key], value)
                    elif key in kept:
                        value += kept[key]
                    archive.write_value(key, value, timestamp)
            finally:
                archive.close()
        os.remove(path)
