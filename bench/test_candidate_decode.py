"""The candidate decode (bench/candidate_decode.py, msgspec) against the service's (writer.message, orjson).

Keeps the comparison in bench/decode_compare.py and ``bench.e2e --decoder candidate`` honest: same bytes in,
same outcome. A Row with the same fields and the stored report byte for byte (or, where orjson cannot write
it and each side used its fallback encoder, equal after an exact parse), compact; or a Rejection with the
same reason, org, cluster, request id, and the same detail for every reason but invalid_json (whose text is
the JSON library's). One difference is by design (the candidate's docstring): a number no float holds, in a
value thrown away unread, is rejected by writer.message only. No servers; a few seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import string
import sys
from pathlib import Path

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import candidate_decode as candidate
from writer import message as landed
from writer import sample_messages
from writer.message import Rejection, Row

NOW = datetime.datetime(2030, 1, 1)
CLUSTER = "5d5892d4-1f74-4ccf-91af-548dfc9767aa"
# The real report bodies (byte-identical copies of ../shared/data/reports/).
REAL_BODIES = sorted((Path(sample_messages.__file__).parent / "sample_reports").glob("*.json"))
# writer.message's complaint about a number no float (or no int of 4300 digits) holds.
UNREAD_NUMBER = re.compile(r"is out of range|Exceeds the limit")
STORED, REJECTED, UNREAD_NUMBER_ACCEPTED = "stored", "rejected", "unread number accepted"


@contextlib.contextmanager
def recursion_limit(limit: int):
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def exact(report: bytes):
    with recursion_limit(max(sys.getrecursionlimit(), 5000)):
        return json.loads(report)  # every integer exact


def orjson_writes(value) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def outcome(value: bytes | None) -> str:
    """Both decodes of ``value``, compared; which of the three outcomes it was."""
    new = candidate.parse_message(value, 5, NOW)
    old = landed.parse_message(value, 5, NOW)
    shown = value[:300] if value else value
    if isinstance(old, Rejection) and isinstance(new, Row) and old.reason == landed.INVALID_JSON \
            and UNREAD_NUMBER.search(old.detail):
        return UNREAD_NUMBER_ACCEPTED
    assert type(new) is type(old), (shown, new, old)
    if isinstance(old, Rejection):
        assert (new.reason, new.org_id, new.cluster, new.request_id) == \
            (old.reason, old.org_id, old.cluster, old.request_id), (shown, new, old)
        assert old.reason == landed.INVALID_JSON or new.detail == old.detail, (shown, new, old)
        return REJECTED
    assert (new.org_id, new.account_number, new.cluster, new.updated_at, new.kafka_offset, new.request_id,
            new.version) == (old.org_id, old.account_number, old.cluster, old.updated_at, old.kafka_offset,
                             old.request_id, old.version), (shown, new, old)
    if new.report != old.report:
        stored = exact(old.report)
        assert not orjson_writes(stored), (new.report[:300], old.report[:300])
        assert exact(new.report) == stored
    with recursion_limit(max(sys.getrecursionlimit(), 5000)):
        assert msgspec.json.format(new.report, indent=-1) == new.report  # compact
    return STORED


def wrap(report: dict | None, **fields) -> dict:
    return {"OrgID": 1000, "AccountNumber": 5000, "ClusterName": CLUSTER, "Report": report,
            "LastChecked": "2020-01-23T16:15:59.478901889Z", "Version": 2, "RequestId": "req-1"} | fields


# --- real report bodies ------------------------------------------------------------------------


def renderings(path: Path) -> dict[str, bytes]:
    """One real body as messages written several ways, each to be stored alike."""
    text = path.read_bytes()
    body = orjson.loads(text)
    full = sample_messages.full_report("middle_size") | body  # the keys the pipeline adds, as the writer sees them
    message = wrap(full)
    note = "žluťoučký kůň 日本語 \U0001F600 \u2028 tab\t nul\x00 \"quoted\" back\\slash </script>"
    noted = wrap(full | {"reports": [*body.get("reports", []), {"details": {"note": note}}]})
    wide = wrap(full | {"reports": [*body.get("reports", []), {"counter": 2**70, "small": -(2**63) - 1}]})
    added = b"".join(b'"%s":%s,' % (key.encode(), orjson.dumps(value)) for key, value in full.items()
                     if key not in body)
    verbatim = orjson.dumps(wrap({})).replace(b'"Report":{}', b'"Report":{' + added + text.lstrip()[1:])
    return {
        "compact": orjson.dumps(message),
        "indented": json.dumps(message, indent=2).encode(),
        "escaped": json.dumps(noted).encode(),  # \uXXXX escapes, surrogate pairs
        "utf-8": json.dumps(noted, ensure_ascii=False).encode(),
        "wide integers": json.dumps(wide).encode(),
        "the file's own bytes": verbatim,  # its indentation and newlines inside the stored values
        "duplicate reports key": verbatim.replace(b'"Report":{', b'"Report":{"reports":[1, 2],', 1),
    }


@pytest.mark.parametrize("path", REAL_BODIES, ids=lambda path: path.stem)
def test_real_report_bodies_are_stored_as_the_service_stores_them(path):
    body = orjson.loads(path.read_bytes())
    for name, value in renderings(path).items():
        assert outcome(value) == STORED, name
        kept = exact(candidate.parse_message(value, 5, NOW).report)
        assert list(kept) == ["reports"], name
        assert kept["reports"][:len(body.get("reports", []))] == body.get("reports", []), name


def test_real_bodies_are_there():
    assert [path.stem for path in REAL_BODIES] == sorted(sample_messages.SIZES)


def test_benchmark_messages_are_stored_alike():
    from bench import messages

    values = [sample_messages.encoded(number, size) for number, size in enumerate(sample_messages.SIZES * 3)]
    values += [messages.varied(number) for number in range(20)]
    assert {outcome(value) for value in values} == {STORED}


# --- the edges ---------------------------------------------------------------------------------------


VALID = orjson.dumps(wrap({"fingerprints": [], "reports": [{"rule_id": "r|K", "details": {"x": 1}}],
                           "system": {"hostname": None}, "info": [{"i": 1}], "pass": [], "skips": [],
                           "analysis_metadata": {"start": "2020"}}))


def put(where: str, text: bytes) -> bytes:
    """``text`` as a value in the stored report, a stripped key, an unknown top-level key, or a field."""
    if where == "reports":
        return VALID.replace(b'"details":{"x":1}', b'"details":{"x":' + text + b"}")
    if where == "info":
        return VALID.replace(b'"info":[{"i":1}]', b'"info":[{"i":' + text + b"}]")
    if where == "unknown key":
        return VALID.replace(b'{"OrgID"', b'{"Extra":[' + text + b'],"OrgID"', 1)
    return re.sub(rb'"%s":("[^"]*"|[^,}]*)' % where.encode(), lambda _: b'"%s":%s' % (where.encode(), text),
                  VALID, count=1)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


# Levels around put's value: the message, Report, reports, its item and details; Report, info and its item;
# the message and Extra.
ENCLOSING = {"reports": 5, "info": 4, "unknown key": 2}


def edges() -> dict[str, bytes | None]:
    cases: dict[str, bytes | None] = {
        "valid": VALID, "empty": b"", "none": None,
        "byte-order mark": b"\xef\xbb\xbf" + VALID,
        "utf-16 byte-order mark": b"\xff\xfe" + VALID,
        "surrounding whitespace": b" \r\n\t" + VALID + b"\n ",
        "trailing data": VALID + b"x",
        "two objects": VALID + VALID,
        "form feed as whitespace": VALID.replace(b',"AccountNumber"', b',\x0c"AccountNumber"'),
        "whitespace inside stored values": put("reports", b' [ 1 ,\n\t2 , { "a" : [ ] , "b":{ } } ] '),
        "numbers written differently": put("reports", b"[-0, -0.0, 1E2, 1.0e+2, 0.1e-5, 1e-400, 2.5E+20, 0.000]"),
        "largest double": put("reports", b"[1.7976931348623157e308, 1.7976931348623158e308, 4.9e-324]"),
        "escapes": put("reports", rb'"\" \\ \/ \b \f \n \r \t \u0000 \u001F \u00e9 \u2028 \uD83D\uDE00"'),
        "Report-like keys deeper": put("reports", b'{"Report":1,"OrgID":"x","info":[1],"system":2}'),
        "only the required report keys": orjson.dumps(wrap({"fingerprints": [], "reports": [], "system": {}})),
        "unknown report keys kept": orjson.dumps(wrap({"fingerprints": [], "reports": [], "system": {}, "zz": [1]})),
        "OrgID twice, the second wrong": VALID.replace(b'"OrgID":1000', b'"OrgID":1000,"OrgID":"x"'),
        "OrgID twice, the second right": VALID.replace(b'"OrgID":1000', b'"OrgID":"x","OrgID":1000'),
        "Report twice, the second a list": VALID.replace(b'"LastChecked"', b'"Report":[1],"LastChecked"'),
        "Report twice, the first a list": VALID.replace(b'{"OrgID"', b'{"Report":[1],"OrgID"'),
        "Report twice, the second incomplete": VALID.replace(b'"LastChecked"',
                                                             b'"Report":{"reports":[]},"LastChecked"'),
        "stripped key twice": VALID.replace(b'"info":[{"i":1}]', b'"info":[{"i":1}],"info":{"j":[2]}'),
        "message nested in Report": orjson.dumps(wrap({})).replace(b'"Report":{}', b'"Report":' + VALID),
    }
    for where in ENCLOSING:
        for label, text in [
            ("NaN", b"NaN"), ("-Infinity", b"-Infinity"), ("leading zero", b"01"), ("bare minus", b"-"),
            ("dot without digits", b"1."), ("plus sign", b"+1"), ("2**64", b"18446744073709551616"),
            ("-(2**63)-1", b"-9223372036854775809"), ("10**30", b"1" + b"0" * 30), ("4300 digits", b"7" * 4300),
            ("lone high surrogate", rb'"a\ud800b"'), ("lone low surrogate", rb'"a\udc00b"'),
            ("surrogate pair", rb'"\udbff\udfff"'), ("surrogate in a key", rb'{"\ud800":1}'),
            ("bad escape", rb'"\x"'), ("short unicode escape", rb'"\u12"'), ("raw control", b'"a\x01b"'),
            ("invalid utf-8", b'"a\xffb"'), ("truncated utf-8", b'"a\xe2\x82"'), ("overlong utf-8", b'"\xc0\xaf"'),
            ("utf-8 surrogate", b'"\xed\xa0\x80"'), ("invalid utf-8 in a key", b'{"\xff":1}'),
            ("duplicate keys", b'{"a":1,"b":2,"a":3}'), ("unclosed array", b"[1,2"), ("trailing comma", b"[1,2,]"),
            ("single quotes", b"'a'"),
            ("1e400", b"1e400"), ("5000 digits", b"9" * 5000), ("400-digit float", b"1" + b"0" * 400 + b".0"),
        ]:
            cases[f"{label} in {where}"] = put(where, text)
        for levels in (254, 255, 256, 1023, 1024, 1025, 2000):  # in the whole message
            cases[f"{levels} levels in {where}"] = put(where, nested(levels - ENCLOSING[where]))
    for field in ["OrgID", "AccountNumber", "ClusterName", "LastChecked", "Version", "RequestId", "Report"]:
        for label, text in [("null", b"null"), ("true", b"true"), ("string", b'"1000"'), ("float", b"1000.0"),
                            ("exponent", b"1e3"), ("negative", b"-1"), ("2**31", b"2147483648"),
                            ("2**64", b"18446744073709551616"), ("10**30", b"1" + b"0" * 30), ("1e400", b"1e400"),
                            ("array", b"[1]"), ("object", b'{"a":1}'), ("lone surrogate", rb'"\ud800"'),
                            ("nested", nested(30))]:
            cases[f"{field} {label}"] = (orjson.dumps(wrap({})).replace(b'"Report":{}', b'"Report":' + text)
                                         if field == "Report" else put(field, text))
        cases[f"{field} missing"] = orjson.dumps({key: value for key, value in orjson.loads(VALID).items()
                                                  if key != field})
    for label, text in [("array", b"[1,2,3]"), ("string", b'"text"'), ("number", b"12"), ("null", b"null"),
                        ("2**64", b"18446744073709551616"), ("float", b"1.5"), ("deep array", b"[" * 2000),
                        ("lone surrogate", rb'"\ud800"'), ("1e400", b"1e400"), ("nul", b"nul"),
                        ("object then garbage", b"{}x")]:
        cases[f"top level {label}"] = text
    return cases


EDGES = edges()
# Stored by the candidate, rejected by writer.message, by design: checked for grammar only, never read.
UNREAD_NUMBERS = {f"{label} in {where}" for where in ["info", "unknown key"]
                  for label in ["1e400", "5000 digits", "400-digit float"]}
# The same outcome on both sides, and these names a given one (not merely "the same").
MUST_STORE = ["valid", "surrounding whitespace", "whitespace inside stored values", "escapes", "2**64 in reports",
              "4300 digits in reports", "1024 levels in reports", "1024 levels in info", "256 levels in reports",
              "surrogate pair in info", "duplicate keys in reports", "OrgID twice, the second right",
              "unknown report keys kept"]
MUST_REJECT = ["byte-order mark", "NaN in info", "-Infinity in unknown key", "1e400 in reports",
               "1025 levels in info", "1025 levels in reports", "2000 levels in unknown key",
               "lone high surrogate in info", "invalid utf-8 in unknown key", "invalid utf-8 in a key in info",
               "utf-8 surrogate in info", "OrgID 1e400", "Report 1e400", "top level 1e400", "5000 digits in reports",
               "LastChecked 2**64", "Report 2**64", "top level 2**64"]


def test_edge_cases_end_as_in_the_service():
    seen = {name: outcome(value) for name, value in EDGES.items()}
    assert {name for name, result in seen.items() if result == UNREAD_NUMBER_ACCEPTED} == UNREAD_NUMBERS
    assert [name for name in MUST_STORE if seen[name] != STORED] == []
    assert [name for name in MUST_REJECT if seen[name] != REJECTED] == []
    assert len(EDGES) > 200


def test_a_number_no_float_holds_is_only_checked_for_grammar_where_it_is_never_read():
    for name in sorted(UNREAD_NUMBERS):
        row = candidate.parse_message(EDGES[name], 0, NOW)
        assert isinstance(row, Row), (name, row)
        assert row.report == b'{"reports":[{"rule_id":"r|K","details":{"x":1}}]}', name


@pytest.mark.parametrize("python_312", [False, True], ids=["3.11 raised limit", "3.12+ simulated"])
def test_nesting_rule_holds_where_the_recursion_limit_proves_nothing(monkeypatch, python_312):
    # With a raised recursion limit msgspec decodes 1100 levels without running out, so the candidate counts
    # the nesting after the decode; on 3.12+ (C recursion counted apart from the limit) it always does.
    monkeypatch.setattr(candidate, "_NESTING_BOUNDED_BY_RECURSION", not python_312)
    for where in ENCLOSING:
        for levels in (100, 1024, 1025, 1100):
            value = put(where, nested(levels - ENCLOSING[where]))
            with recursion_limit(5000):
                result = candidate.parse_message(value, 0, NOW)
            if levels <= candidate.MAX_NESTING:
                assert isinstance(result, Row), (where, levels, result)
            else:
                assert isinstance(result, Rejection) and "depth limit exceeded" in result.detail, (where, levels)


@pytest.mark.parametrize("text,deeper", [
    (nested(1024), False),
    (nested(1025), True),
    (b'["' + b"[" * 2000 + b'"]', False),  # brackets in a string are text
    (b'["\\"' + b"[" * 2000 + b'"]', False),  # after an escaped quote, still in the string
    (b"[{}]" * 2000, False),  # many brackets, not deep
])
def test_nested_deeper_than(text, deeper):
    assert candidate.nested_deeper_than(text, candidate.MAX_NESTING) is deeper


# --- generated messages -------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from([*landed.STRIPPED_REPORT_KEYS, "reports"]), children,
                      max_size=4),
    max_leaves=20,
)
field_values = {
    "OrgID": st.integers(min_value=-(2**65), max_value=2**65) | json_values,
    "AccountNumber": st.integers(min_value=-(2**33), max_value=2**33) | json_values,
    "ClusterName": st.uuids().map(str) | st.text(alphabet=string.hexdigits + "-", max_size=40) | json_values,
    "LastChecked": st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) | st.text(alphabet="0123456789-:TZ.+", max_size=40)
    | json_values,
    "Version": st.integers(min_value=-5, max_value=300) | json_values,
    "RequestId": st.text(max_size=30) | json_values,
}
SPACING = st.sampled_from([{}, {"indent": 1}, {"separators": (" , ", " : ")}])


@st.composite
def messages(draw) -> bytes:
    """Mostly valid messages: fields and report keys dropped or replaced, unknown keys added, any order,
    written compact or spaced, ASCII-escaped or not (integers beyond 64 bits exact)."""
    report = {"fingerprints": [], "reports": draw(json_values), "system": {"metadata": {}, "hostname": None},
              "skips": [], "info": draw(json_values), "pass": draw(json_values), "analysis_metadata": {"a": 1}}
    for key in draw(st.lists(st.sampled_from(sorted(report)), max_size=3)):
        if draw(st.booleans()):
            report.pop(key, None)
        else:
            report[key] = draw(json_values)
    report |= draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    body = wrap(report)
    for field in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=3, unique=True)):
        if draw(st.booleans()):
            body.pop(field)
        else:
            body[field] = draw(field_values[field])
    body |= draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    if draw(st.integers(0, 9)) == 0:
        body["Report"] = draw(json_values)
    order = draw(st.permutations(list(body)))
    return json.dumps({key: body[key] for key in order}, ensure_ascii=draw(st.booleans()), **draw(SPACING)).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_generated_messages_end_as_in_the_service(value):
    assert outcome(value) in (STORED, REJECTED)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_byte_mutations_of_a_real_message_end_as_in_the_service(data):
    text = bytearray(sample_messages.encoded(3, data.draw(st.sampled_from(sample_messages.SIZES))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
        byte = data.draw(st.integers(min_value=0, max_value=255) | st.sampled_from(list(b'"\\{}[],:0123456789eE-+.')))
        kind = data.draw(st.sampled_from(["set", "delete", "insert"]))
        if kind == "set":
            text[position] = byte
        elif kind == "delete":
            del text[position]
        else:
            text.insert(position, byte)
    assert outcome(bytes(text)) in (STORED, REJECTED, UNREAD_NUMBER_ACCEPTED)
