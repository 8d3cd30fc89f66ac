"""The replay's pure parts: flags, times, the window, progress figures, summary lines. No Kafka, no database."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from writer import exit_codes
from writer.cli import build_parser
from writer.progress import ProgressReporter, RateMeter, ReplayGauges, describe, figures, format_duration
from writer.replay import messages_done, partition_done, starts_from_answers
from writer.replay_options import (
    ReplayOptions,
    ReplayRequestError,
    Window,
    check_group,
    options_from_args,
    parse_partitions,
    parse_time,
)
from writer.replay_summary import extend, format_line, write_json
from writer.replay_worker import ReplayScope

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("text,expected", [
    ("6h", NOW - datetime.timedelta(hours=6)),
    ("2d", NOW - datetime.timedelta(days=2)),
    ("90m", NOW - datetime.timedelta(minutes=90)),
    ("1d12h", NOW - datetime.timedelta(hours=36)),
    ("1w", NOW - datetime.timedelta(days=7)),
    ("45s", NOW - datetime.timedelta(seconds=45)),
    ("2026-11-29T04:00:00Z", datetime.datetime(2026, 11, 29, 4, tzinfo=UTC)),
    ("2026-11-29T05:30:00+01:30", datetime.datetime(2026, 11, 29, 4, tzinfo=UTC)),
    ("2026-11-29T04:00:00.250Z", datetime.datetime(2026, 11, 29, 4, 0, 0, 250000, tzinfo=UTC)),
])
def test_times(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text,message", [
    ("yesterday", "neither an RFC 3339 time"),
    ("6", "neither an RFC 3339 time"),
    ("6y", "neither an RFC 3339 time"),
    ("-6h", "neither an RFC 3339 time"),
    ("2026-11-29T04:00:00", "has no time zone"),
])
def test_bad_times(text, message):
    with pytest.raises(ReplayRequestError, match=message):
        parse_time(text, NOW)


def test_partitions():
    assert parse_partitions("3,0") == (0, 3)
    assert parse_partitions("1, 1 ,2") == (1, 2)
    for bad in ("", "a", "0;3", "-1", ","):
        with pytest.raises(ReplayRequestError, match="expected partition numbers"):
            parse_partitions(bad)


def test_window_is_half_open_and_places_missing_timestamps_outside():
    window = Window(1000, 2000)
    assert [window.place(t) for t in (999, 1000, 1999, 2000, 5000)] == [-1, 0, 0, 1, 1]
    assert window.place(-1) == -1 and window.place(None) == -1
    assert Window(None, 2000).place(0) == 0 and Window(1000, None).place(10**13) == 0
    assert Window().place(-1) == 0  # no window: every message is in, timestamp or not


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_options_from_flags():
    options = options_from_args(_args("--replay", "--since", "6h", "--until", "2026-11-29T11:00:00Z",
                                      "--partitions", "3,0", "--dry-run", "--progress-interval", "2"), NOW, False)
    assert options.since == NOW - datetime.timedelta(hours=6)
    assert options.until == datetime.datetime(2026, 11, 29, 11, tzinfo=UTC)
    assert options.partitions == (0, 3) and options.dry_run and options.self_assigned
    assert options.progress == "log" and options.progress_interval == 2.0
    assert options.window == Window(int((NOW - datetime.timedelta(hours=6)).timestamp() * 1000),
                                    int(datetime.datetime(2026, 11, 29, 11, tzinfo=UTC).timestamp() * 1000))
    assert options_from_args(_args("--replay"), NOW, True).progress == "bar"
    assert options_from_args(_args("--replay", "--progress", "off"), NOW, True).progress == "off"
    assert options_from_args(_args(), NOW, True) is None
    assert not options_from_args(_args("--replay"), NOW, False).self_assigned


@pytest.mark.parametrize("argv,message", [
    (["--dry-run"], "--dry-run only apply with --replay"),
    (["--since", "6h", "--partitions", "1"], "--since, --partitions only apply with --replay"),
    (["--replay", "--since", "1h", "--until", "2h"], "must be before --until"),
    (["--replay", "--progress-interval", "0"], "--progress-interval must be a positive"),
    (["--replay", "--summary-json", "/nonexistent-dir/x.json"], "its directory does not exist"),
])
def test_flags_that_do_not_fit(argv, message):
    with pytest.raises(ReplayRequestError, match=message):
        options_from_args(_args(*argv), NOW, False)


def test_bad_flags_are_a_one_line_configuration_error(cli):
    result = cli("--replay", "--since", "2026-11-29T04:00:00")
    assert result.returncode == exit_codes.CONFIGURATION_ERROR == 1
    assert result.stderr.strip().splitlines() == [
        "ccx-notification-writer: '2026-11-29T04:00:00' has no time zone: add Z or an offset such as +01:00"]


def test_figures_from_counter_totals():
    totals = {"consumed_messages": 600.0, "replay_skipped_outside_window": 150.0, "stored_messages": 500.0,
              "duplicates_skipped": 40.0, "messages_rejected{reason=invalid_json}": 35.0,
              "messages_rejected{reason=empty_message}": 25.0}
    f = figures(totals, 750, 1000, 50.0, 12.0)
    assert (f.done, f.total, f.rejected, f.stored, f.duplicates, f.skipped) == (750, 1000, 60, 500, 40, 150)
    assert f.eta_s == 5.0 and f.percent == 75.0
    assert describe(f) == "750/1,000 messages (75.0%), 50 messages/s, ETA 0:05, rejected 60"
    assert figures(totals, 750, 1000, 0.0, 1.0).eta_s is None  # no rate yet: no estimate
    assert figures({}, 0, 0, 0.0, 0.0).percent == 100.0


def _plan(starts, ends, positions, finished=()):
    size = max(ends) + 1
    return SimpleNamespace(topic="t", starts=starts, ends=ends,
                           planned_total=sum(ends[p] - starts[p] for p in ends),
                           positions=[positions.get(p, 0) for p in range(size)],
                           finished=[1 if p in finished else 0 for p in range(size)])


def test_done_counts_offsets_behind_the_positions_and_finished_partitions_whole():
    # 0: half way; 1: finished by --until at offset 130 of [100, 200); 2: at its end; 3: empty.
    plan = _plan({0: 0, 1: 100, 2: 10, 3: 5}, {0: 50, 1: 200, 2: 20, 3: 5}, {0: 25, 1: 131, 2: 20, 3: 5}, {1})
    assert messages_done(plan) == 25 + 100 + 10 + 0
    assert [partition_done(plan, p) for p in range(4)] == [False, True, True, True]
    plan.positions[0] = 50
    assert messages_done(plan) == 160 == plan.planned_total  # all of [start, end) everywhere


def test_rate_over_the_recent_window():
    meter = RateMeter(window=10)
    assert meter.add(0.0, 0) == 0.0
    assert meter.add(1.0, 100) == 100.0
    assert meter.add(5.0, 500) == 100.0
    for second in range(6, 30):
        rate = meter.add(float(second), 500 + (second - 5) * 10)  # slows down to 10/s
    assert rate == pytest.approx(10.0)


def test_durations():
    assert [format_duration(s) for s in (None, 0, 59.4, 61, 3599, 3600, 90061)] == [
        "?", "0:00", "0:59", "1:01", "59:59", "1:00:00", "25:01:01"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_with_the_figures(caplog):
    clock, done = _Clock(), {"n": 0}
    reporter = ProgressReporter("log", 10.0, 1000, lambda: {"consumed_messages": float(done["n"])},
                                lambda: done["n"], None, clock)
    caplog.set_level(logging.INFO, logger="writer.progress")
    for second in range(0, 26):
        clock.now = float(second)
        done["n"] = 40 * second
        reporter.tick()
    reporter.close()
    lines = [r for r in caplog.records if r.name == "writer.progress"]
    assert [(r.done, r.elapsed_s) for r in lines] == [(400, 10.0), (800, 20.0), (1000, 25.0)]
    assert lines[0].getMessage() == "replay progress: 400/1,000 messages (40.0%), 40 messages/s, ETA 0:15, rejected 0"
    assert (lines[0].rate_per_s, lines[0].eta_s, lines[0].percent) == (40.0, 15.0, 40.0)
    assert lines[-1].eta_s == 0.0


def test_gauges_carry_done_rate_eta_and_partitions_left_with_until():
    # Two partitions of 100 offsets; partition 1 ends early at --until, so done reaches the total.
    plan = _plan({0: 0, 1: 0}, {0: 100, 1: 100}, {0: 0, 1: 0})
    registry = CollectorRegistry()
    clock = _Clock()
    reporter = ProgressReporter("off", 10.0, 200, lambda: {}, lambda: messages_done(plan),
                                ReplayGauges("ns", registry), clock)
    value = lambda name: registry.get_sample_value(f"ns_replay_{name}")  # noqa: E731
    left = lambda: sum(1 for p in plan.ends if not partition_done(plan, p))  # noqa: E731

    reporter.tick(left())
    assert (value("messages_planned"), value("messages_done"), value("eta_seconds")) == (200, 0, -1)
    assert value("partitions_remaining") == 2
    clock.now, plan.positions[0], plan.positions[1] = 2.0, 60, 20
    reporter.tick(left())
    assert value("messages_done") == 80 and value("rate_messages_per_second") == 40.0
    assert value("eta_seconds") == 3.0 and value("partitions_remaining") == 2
    clock.now, plan.positions[0], plan.positions[1], plan.finished[1] = 4.0, 100, 31, 1  # --until at offset 30
    reporter.tick(left())
    assert value("messages_done") == 200 and value("rate_messages_per_second") == 50.0
    assert value("eta_seconds") == 0.0 and value("partitions_remaining") == 0


def test_summary_for_automation(tmp_path):
    base = {"messages": 10, "stored": 7, "duplicates": 1, "rejected": 2, "rejected_by_reason": {"invalid_json": 2},
            "seconds": 2.0, "messages_per_second": 5.0}
    options = ReplayOptions(since=datetime.datetime(2026, 11, 29, 4, tzinfo=UTC), dry_run=True)
    base_dry = dict(base, duplicates=3)
    totals = {"replay_skipped_outside_window": 3.0, "replay_dry_run_already_stored": 1.0}
    result = extend(base_dry, totals, options, None, exit_codes.OK)
    assert (result["would_store"], result["already_stored"], result["repeated"]) == (7, 1, 2)
    assert "stored" not in result and "duplicates" not in result
    assert result["complete"] is True and result["skipped_outside_window"] == 3
    assert format_line(result) == (
        "dry run finished: messages 10, would store 7, already stored 1, repeated 2, would reject 2 (invalid_json 2), "
        "2.00 s, 5 messages/s, skipped 3 outside the window; nothing written, no offset committed")
    stopped = extend(base, {}, ReplayOptions(), None, exit_codes.REPLAY_INCOMPLETE)
    assert stopped["complete"] is False and stopped["exit_status"] == 8
    assert format_line(stopped).startswith("replay stopped (exit status 8): messages 10, stored 7, duplicates 1,")
    path = tmp_path / "summary.json"
    write_json(str(path), stopped)
    assert json.loads(path.read_text())["exit_status"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_start_offsets_from_the_answers():
    since = 1_000_000
    lows, ends = {0: 0, 1: 100, 2: 5, 3: 0, 4: 0, 5: 0}, {0: 50, 1: 200, 2: 9, 3: 0, 4: 30, 5: 30}
    # 0: inside; 1: below the earliest offset (wrong); 2: -1 and the last message is recent (the mock's -1);
    # 3: empty, no answer; 4: -1 and the last message is older than since (a real "none"); 5: an error.
    answers = {0: 20, 1: 40, 2: -1, 3: -1, 4: -1, 5: None}
    last = {2: since, 4: since - 1, 5: 1}
    assert starts_from_answers(answers, lows, ends, since, last) == (
        {0: 20, 1: 100, 2: 5, 3: 0, 4: 30, 5: 0}, [1, 2, 3, 5])
    assert starts_from_answers({0: -1}, {0: 0}, {0: 50}, since, {}) == ({0: 0}, [0])  # last message unknown
    assert starts_from_answers({0: 50}, {0: 0}, {0: 50}, since, {}) == ({0: 50}, [])  # at the end: nothing to replay
    assert starts_from_answers({0: 51}, {0: 0}, {0: 50}, since, {}) == ({0: 0}, [0])
    # The whole offsets_for_times call failed: every partition from its earliest offset.
    assert starts_from_answers(None, {0: 3, 1: 0}, {0: 50, 1: 9}, since, {0: 1}) == ({0: 3, 1: 0}, [0, 1])


@pytest.mark.parametrize("argv,group_id,refused", [
    (["--replay", "--since", "6h"], None, True),
    (["--replay", "--until", "1h"], "live", True),
    (["--replay", "--since", "6h"], "replay-2026-11-29", False),
    (["--replay", "--since", "6h", "--partitions", "0"], None, False),
    (["--replay", "--since", "6h", "--dry-run"], None, False),
    (["--replay"], None, False),
])
def test_a_window_never_commits_in_the_live_group(argv, group_id, refused):
    options = options_from_args(build_parser().parse_args(argv), NOW, False)
    if refused:
        with pytest.raises(ReplayRequestError, match=r"would move the running service's group \(live\)"):
            check_group(options, group_id, "live")
    else:
        check_group(options, group_id, "live")


def test_a_window_in_the_live_group_is_a_one_line_configuration_error(cli, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text('{"complete": true}')  # an earlier run's
    result = cli("--replay", "--since", "6h", "--summary-json", str(summary),
                 env={"CCX_NOTIFICATION_WRITER__BROKER__GROUP": "live-group"})
    assert result.returncode == exit_codes.CONFIGURATION_ERROR
    assert result.stderr.strip().splitlines() == [
        "ccx-notification-writer: --since/--until in a consumer group would move the running service's group "
        "(live-group): name a replay group of its own with --group-id, or use --partitions or --dry-run"]
    assert not summary.exists()


class _Consumer:
    def __init__(self) -> None:
        self.paused = []

    def pause(self, partitions) -> None:
        self.paused.extend(tp.partition for tp in partitions)


class _Event:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "t"


def _scope(positions, finished=()):
    plan = _plan({0: 0, 1: 0, 2: 0}, {0: 10, 1: 10, 2: 10}, positions, finished)
    plan.window, plan.self_assigned = Window(), False
    return ReplayScope(plan, 0, 1, ""), plan


def test_the_end_of_a_partition_at_or_past_its_end_offset_finishes_it():
    # Partition 0 stands at 8 (offsets 8, 9: transaction markers no consumer receives): the consumer reports
    # the end of the partition at 10. Partition 1 reports an end at 7 (below its end offset seen at start:
    # not finished). Partition 2's end event comes past its end offset (new messages meanwhile).
    scope, plan = _scope({0: 8, 1: 7, 2: 10})
    next_offsets = {}
    progress = scope.new_progress()
    for event in (_Event(0, 10), _Event(1, 7), _Event(2, 12)):
        scope.reached_end(event, next_offsets, progress)
    assert next_offsets == {("t", 0): 10, ("t", 2): 10}  # committed in a group: the end seen at start, no further
    consumer = _Consumer()
    scope.batch_finished(consumer, progress)
    assert list(plan.positions) == [10, 7, 10]
    assert [partition_done(plan, p) for p in range(3)] == [True, False, True]
    assert sorted(consumer.paused) == [0, 2]


def test_only_unfinished_partitions_are_resumed():
    scope, plan = _scope({0: 10, 1: 4, 2: 3}, finished={2})
    partitions = [TopicPartition("t", p) for p in (0, 1, 2, 7)]  # 7: not part of the replay
    assert [tp.partition for tp in scope.unfinished(partitions)] == [1]


class _Message(_Event):
    def timestamp(self):
        return (1, 0)


def test_a_message_at_or_past_its_end_offset_finishes_the_partition():
    # Partition 0 stands at 8 and offset 9 is a transaction marker: the first message it receives is at 10, past
    # its end offset (new messages meanwhile). On a busy topic no end-of-partition event ever comes.
    scope, plan = _scope({0: 8, 1: 4, 2: 3}, finished={2})
    next_offsets = {}
    progress = scope.new_progress()
    assert not scope.admits(_Message(0, 10), next_offsets, progress)
    assert not scope.admits(_Message(0, 11), next_offsets, progress)
    assert not scope.admits(_Message(2, 12), next_offsets, progress)  # finished already (--until): nothing more
    assert next_offsets == {("t", 0): 10}  # committed in a group: the end seen at start, no further
    consumer = _Consumer()
    scope.batch_finished(consumer, progress)
    assert list(plan.positions) == [10, 4, 3]
    assert [partition_done(plan, p) for p in range(3)] == [True, False, True]
    assert consumer.paused == [0]
