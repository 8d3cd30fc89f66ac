"""7. Hostile messages mixed into a valid stream (the same partitions and batches) under the running service:
each valid one stored once, each rejected one in the dead-letter topic once, unchanged, with its reason and
source, every reason counted exactly; numbers recorded for the README's reliability tables.

The hostile messages are a table of named cases, each with what must happen to it: ``Stored`` under a
primary key (its stored report optionally checked) or ``Rejected`` with a reason.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from tests.harness.database import Key
from tests.harness.fix_scenario import sizes
from tests.harness.kafka import PARTITIONS, end_offsets, header, produce_raw, read_topic
from tests.harness.scenario import expected_key, no_worker_crash, replay_summary
from writer.sample_messages import encoded, message

# ---- the cases -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """Stored under ``primary_key``; ``check``, if given, holds for the stored report (parsed)."""

    primary_key: Key
    check: Callable[[dict], bool] | None = None


@dataclass(frozen=True)
class Rejected:
    """Rejected: dead-lettered with ``reason`` (header ccx-rejection-reason) and counted under it."""

    reason: str


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes | None
    expected: Stored | Rejected
    kafka_key: bytes | None = b"hostile"
    headers: list[tuple[str, bytes | None]] | None = None


# Stored cases use sample numbers from 10**6 on, so their keys never collide with the valid stream.
_numbers = itertools.count(10**6)


def _sample(**changes: object) -> tuple[int, dict]:
    number = next(_numbers)
    body = message(number)
    body.update(changes)
    return number, body


def _body(**changes: object) -> dict:
    return _sample(**changes)[1]


def _without(field_name: str) -> dict:
    return {k: v for k, v in _body().items() if k != field_name}


def _report_with(reports: object) -> dict:
    return {**_body()["Report"], "reports": reports}


def _raw_reports(reports_json: str) -> tuple[int, bytes]:
    """A sample message whose Report.reports is the raw JSON text given (for what orjson cannot write)."""
    number, body = _sample(Report=_report_with("__MARK__"))
    return number, orjson.dumps(body).replace(b'"__MARK__"', reports_json.encode("utf-8", "surrogatepass"))


def stored(name: str, changes: dict | None = None, check: Callable[[dict], bool] | None = None,
           dump: Callable[[dict], bytes] = orjson.dumps, when: datetime.datetime | None = None,
           kafka_key: bytes | None = b"hostile", headers: list | None = None) -> Case:
    """A sample message changed by ``changes``, stored under its key (``when``: its expected updated_at)."""
    number, body = _sample(**(changes or {}))
    org_id, cluster, updated_at = expected_key(number)
    return Case(name, dump(body), Stored((org_id, cluster, when or updated_at), check), kafka_key, headers)


def stored_raw(name: str, number: int, value: bytes, check: Callable[[dict], bool] | None = None) -> Case:
    """``value`` written by hand for sample ``number``, stored under that number's key."""
    return Case(name, value, Stored(expected_key(number), check))


def rejected(name: str, value: bytes | None, reason: str, kafka_key: bytes | None = b"hostile",
             headers: list | None = None) -> Case:
    return Case(name, value, Rejected(reason), kafka_key, headers)


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    return depth


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


HEADERS_OF_ALL_KINDS = [
    ("binary", b"\x00\xff\xfe\x00"), ("empty", b""), ("null", None), ("repeated", b"1"), ("repeated", b"2"),
    ("ünïcødé-nämé", "välue ✓".encode()), ("", b"no name"), ("large", b"h" * 20000),
    ("ccx-rejection-reason", b"forged by the producer"),
]
BIG_REPORTS = [{"rule_id": f"rule_{i}", "details": {"text": f"{i:08d}" + "x" * 1000}} for i in range(5000)]  # ~5 MB
ONE_HOUR_AHEAD = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
WIDE_INTEGERS = _raw_reports("[" + str(2**70) + ", " + str(-(2**80)) + ", 18446744073709551616]")
DUPLICATE_KEYS = _sample()

CASES: list[Case] = [
    # empty and null values, bytes that are not UTF-8 / not JSON
    rejected("empty value", b"", "empty_message"),
    rejected("null value", None, "empty_message"),
    rejected("binary garbage", b"\xff\xfe\xfd\x00", "invalid_json"),
    rejected("invalid UTF-8 inside a string",
             orjson.dumps(_body(Report=_report_with([{"d": "__BAD__"}]))).replace(b"__BAD__", b"\xc3\x28\xff"),
             "invalid_json"),
    rejected("UTF-8 byte order mark", b"\xef\xbb\xbf" + orjson.dumps(_body()), "invalid_json"),
    rejected("trailing garbage", orjson.dumps(_body()) + b" trailing", "invalid_json"),
    rejected("truncated JSON", orjson.dumps(_body())[:-1], "invalid_json"),
    rejected("NaN literal", b'{"OrgID": NaN}', "invalid_json"),
    # JSON that is not an object
    *[rejected(f"JSON {text[:10]!r}", text, "not_an_object")
      for text in (b'"a string"', b"42", b"null", b"true", b'[{"OrgID": 1}]')],
    # wrong types
    *[rejected(f"{field_name}={value!r}", orjson.dumps(_body(**{field_name: value})), "wrong_type")
      for field_name, value in (("OrgID", "1000"), ("OrgID", 1000.0), ("OrgID", True), ("OrgID", None),
                                ("AccountNumber", [1]), ("ClusterName", 12345), ("Report", "text"), ("Report", []),
                                ("Version", "2"), ("RequestId", 5))],
    # integers beyond 64 bits and out of range
    rejected("OrgID 2**70", orjson.dumps(_body(OrgID=7)).replace(b'"OrgID":7', b'"OrgID":' + str(2**70).encode()),
             "out_of_range"),
    rejected("AccountNumber -1", orjson.dumps(_body(AccountNumber=-1)), "out_of_range"),
    rejected("OrgID 2**31", orjson.dumps(_body(OrgID=2**31)), "out_of_range"),
    stored_raw("integers beyond 64 bits inside Report", *WIDE_INTEGERS,
               check=lambda report: report["reports"] == [2**70, -(2**80), 2**64]),
    # NUL characters
    stored("NUL inside report strings", {"Report": _report_with([{"details": "a\u0000b", "\u0000key": "\u0000"}])},
           check=lambda report: report["reports"] == [{"details": "a\u0000b", "\u0000key": "\u0000"}]),
    rejected("NUL inside ClusterName", orjson.dumps(_body(ClusterName="5d5892d4-1f74-4ccf-91af-00000000\u00000000")),
             "invalid_cluster_name"),
    rejected("NUL in LastChecked", orjson.dumps(_body(LastChecked="2020-01-01T00:00:00\u0000Z")), "invalid_timestamp"),
    # lone surrogates (not Unicode text), also on the exact-integer path
    rejected("lone surrogate escape", _raw_reports('["a\\ud800b"]')[1], "invalid_json"),
    rejected("lone surrogate + big integer", _raw_reports('["a\\ud800b", ' + str(2**70) + "]")[1], "invalid_json"),
    # deep nesting
    stored("nested 600 deep", {"Report": _report_with(_nested(600))}, dump=lambda body: json.dumps(body).encode(),
           check=lambda report: _depth(report["reports"]) == 600),
    rejected("nested 100000 deep", _raw_reports("[" * 100_000 + "]" * 100_000)[1], "invalid_json"),
    # within the original's 10,000 levels: stored (too deep for json.loads to check here)
    stored_raw("nested 5000 deep + big integer", *_raw_reports("[" * 5000 + str(2**70) + "]" * 5000)),
    # very large reports: one stored, one rejected (so it must fit in the dead-letter topic too)
    stored("report of ~5 MB", {"Report": _report_with(BIG_REPORTS)},
           check=lambda report: len(report["reports"]) == 5000),
    rejected("report of ~5 MB without system", orjson.dumps(_body(Report={"reports": BIG_REPORTS, "fingerprints": []})),
             "incomplete_report"),
    # duplicate keys: the last one wins (as in Go's encoding/json, which the original used)
    stored_raw("duplicate keys", DUPLICATE_KEYS[0],
               b'{"OrgID": 4242, "ClusterName": "not a uuid", ' + orjson.dumps(DUPLICATE_KEYS[1])[1:]),
    # timestamps
    rejected("year 2999", orjson.dumps(_body(LastChecked="2999-01-01T00:00:00Z")), "future_timestamp"),
    rejected("one hour ahead", orjson.dumps(_body(LastChecked=ONE_HOUR_AHEAD)), "future_timestamp"),
    *[rejected(f"LastChecked {text!r}", orjson.dumps(_body(LastChecked=text)), "invalid_timestamp")
      for text in ("yesterday", "2026-13-45T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T23:59:60Z",
                   "2026-01-01 10:00:00", "2026-01-01T10:00:00.1234567891Z", "0000-01-01T00:00:00Z", "",
                   "2026-01-01T10:00:00+25:00", "２０２６-01-01T10:00:00Z")],
    rejected("LastChecked a number", orjson.dumps(_body(LastChecked=1767261600)), "invalid_timestamp"),
    rejected("LastChecked missing", orjson.dumps(_without("LastChecked")), "invalid_timestamp"),
    stored("LastChecked with an offset", {"LastChecked": "2026-01-01T10:00:00+02:00"},
           when=datetime.datetime(2026, 1, 1, 8, 0, 0)),
    stored("LastChecked with nanoseconds", {"LastChecked": "2026-01-01T10:00:00.123456789Z"},
           when=datetime.datetime(2026, 1, 1, 10, 0, 0, 123457)),
    # missing fields and Report keys
    *[rejected(f"Report without {missing}",
               orjson.dumps(_body(Report={k: v for k, v in _body()["Report"].items() if k != missing})),
               "incomplete_report")
      for missing in ("fingerprints", "reports", "system")],
    rejected("empty Report", orjson.dumps(_body(Report={})), "incomplete_report"),
    *[rejected(f"no {missing}", orjson.dumps(_without(missing)), "missing_field")
      for missing in ("OrgID", "AccountNumber", "ClusterName", "Report")],
    rejected("ClusterName in braces", orjson.dumps(_body(ClusterName="{5d5892d4-1f74-4ccf-91af-000000000000}")),
             "invalid_cluster_name"),
    # odd but valid
    stored("Version 1 (stored with a warning)", {"Version": 1}),
    stored("unknown fields, odd RequestId", {"Unknown": {"x": [1, 2]}, "RequestId": "req-\u0000-✓"}),
    stored("null Kafka key", kafka_key=None),
    stored("headers of all kinds", headers=HEADERS_OF_ALL_KINDS),
    rejected("rejected, with headers of all kinds", b"[]", "not_an_object", headers=HEADERS_OF_ALL_KINDS),
    rejected("rejected, null key", b"{}", "missing_field", kafka_key=None),
]


# ---- the scenario ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages,rounds", sizes(1, 5))
def test_hostile_messages(scenario, messages, rounds):
    dead_letter_topic = scenario.topic + ".dead-letters"
    # Every round: the valid stream with all hostile messages spread through it.
    records, expected_keys, outcomes = [], set(), []
    number = 0
    per_round = messages // rounds
    for _ in range(rounds):
        spacing = max(1, per_round // len(CASES))
        for index in range(per_round):
            records.append({"value": encoded(number), "key": str(number).encode(), "partition": number % PARTITIONS})
            outcomes.append(Stored(expected_key(number)))
            expected_keys.add(expected_key(number))
            number += 1
            if index % spacing == 0 and index // spacing < len(CASES):
                case = CASES[index // spacing]
                records.append({"value": case.value, "key": case.kafka_key, "headers": case.headers,
                                "partition": len(records) % PARTITIONS})
                outcomes.append(case.expected)
    positions = produce_raw(scenario.bootstrap, scenario.topic, records)
    ends = end_offsets(scenario.bootstrap, scenario.topic)
    assert all(ends[p] > 0 for p in range(PARTITIONS))
    expected_keys |= {case.expected.primary_key for case in CASES if isinstance(case.expected, Stored)}
    rejected_at = {positions[i]: (records[i], outcome.reason) for i, outcome in enumerate(outcomes)
                   if isinstance(outcome, Rejected)}

    scenario.messages = len(records)
    scenario.configure(BROKER__DEAD_LETTER_TOPIC=dead_letter_topic)
    started = time.monotonic()
    service = scenario.drain(scenario.start("--replay"))
    seconds = time.monotonic() - started
    no_worker_crash(service)
    # Rows: the valid stream and the hostile messages that are valid, each once, nothing else.
    # Every round repeats the hostile messages: those stored are written again under their key by design.
    scenario.verify(expected_keys, collections.Counter(o.primary_key for o in outcomes if isinstance(o, Stored)))
    with scenario.database.connect() as connection:
        for case in CASES:
            if isinstance(case.expected, Stored) and case.expected.check is not None:
                org_id, cluster, when = case.expected.primary_key
                report = connection.execute(
                    "SELECT report FROM new_reports WHERE org_id = %s AND cluster = %s AND updated_at = %s",
                    (org_id, cluster, when)).fetchone()[0]
                assert case.expected.check(json.loads(report)), case.name
    # Rejections: every one in the dead-letter topic, once, unchanged, with its reason and source.
    letters = read_topic(scenario.bootstrap, dead_letter_topic)
    seen = {}
    for letter in letters:
        source = (int(header(letter, "ccx-source-partition")), int(header(letter, "ccx-source-offset")))
        assert header(letter, "ccx-source-topic") == scenario.topic.encode()
        assert source not in seen, f"dead letter for {source} twice"
        assert source in rejected_at, f"dead letter for a message that should have been stored: {source}"
        original, reason = rejected_at[source]
        assert header(letter, "ccx-rejection-reason") == reason.encode(), (source, reason, letter.headers()[-5:])
        assert letter.key() == original["key"]
        # Every value here fits the dead-letter topic (the value-dropped path is forced, and required, in
        # tests/faults/test_kafka_errors.py::test_dead_letter_too_large_for_the_topic_goes_without_its_value).
        assert header(letter, "ccx-dead-letter-value-dropped") is None
        assert (letter.value() or b"") == (original["value"] or b"")
        expected_headers = [(k, v) for k, v in (original["headers"] or [])]
        assert (letter.headers() or [])[:len(expected_headers)] == expected_headers
        assert header(letter, "ccx-rejection-detail")
        seen[source] = reason
    assert set(seen) == set(rejected_at), (
        f"{len(set(rejected_at) - set(seen))} rejections missing from the dead-letter topic"
    )
    # The summary (metrics) counts each reason exactly.
    summary = service.stdout()
    expected_reasons = {}
    for _, reason in rejected_at.values():
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert replay_summary(service)["rejected"] == len(rejected_at)
    reasons = dict((name, int(count)) for count_text in re.findall(r"rejected \d+ \(([^)]*)\)", summary)
                   for name, count in (item.rsplit(" ", 1) for item in count_text.split(", ")))
    assert reasons == expected_reasons
    scenario.record("7. hostile messages mixed into a valid stream", faults=len(rejected_at), hostile_kinds=len(CASES),
                    rejected=len(rejected_at), dead_letters=len(letters), seconds=round(seconds, 1))
