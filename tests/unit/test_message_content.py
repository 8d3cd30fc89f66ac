"""The report's content through ``parse_message`` (SPEC section 3): integers kept exactly, invalid text, nesting;
properties (nothing raises, whatever the input); how many times a message is parsed."""

from __future__ import annotations

import datetime
import json
import re
import string

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.messages import NOW, STRIPPED, accepted, parse, rejected, valid
from writer import message as m
from writer.message import Rejection, Row, parse_message

# --- content of the report -------------------------------------------------------------------


def test_integers_beyond_64_bits_in_the_report_are_kept_exactly():
    big = 123456789012345678901234567890
    report = valid()["Report"] | {"reports": [{"count": big, "neg": -big, "u64": 2**64 - 1, "u64p1": 2**64}]}
    text = json.dumps(valid(Report=report)).encode()
    row = accepted(text)
    assert b"123456789012345678901234567890" in row.report
    assert b"-123456789012345678901234567890" in row.report
    assert b"18446744073709551616" in row.report
    assert b"e+" not in row.report and b"." not in row.report
    assert json.loads(row.report) == {"reports": [{"count": big, "neg": -big, "u64": 2**64 - 1, "u64p1": 2**64}]}


@pytest.mark.parametrize(
    "number",
    [
        -(2**63), -(2**63) - 1, -9999999999999999999, -10000000000000000000, -(2**64), -(10**30),
        2**63 - 1, 2**63, 2**64 - 1, 2**64, 9999999999999999999, 10**19, 10**30,
    ],
)
def test_integers_at_the_64_bit_edges_are_kept_exactly(number):
    report = valid()["Report"] | {"reports": [{"n": number}, [number]]}
    row = accepted(json.dumps(valid(Report=report)).encode())
    assert row.report == b'{"reports":[{"n":%d},[%d]]}' % (number, number)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_every_integer_in_the_report_is_kept_exactly(number):
    report = valid()["Report"] | {"reports": [number]}
    row = accepted(json.dumps(valid(Report=report)).encode())
    assert row.report == b'{"reports":[%d]}' % number


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2**63, max_value=10**40) | st.integers(min_value=-(10**40), max_value=-(2**63) - 1))
def test_wide_integers_anywhere_we_look_are_exact(number):
    # In the kept report, and in the checked fields (out of range, not a float).
    row = accepted(json.dumps(valid(Report=valid()["Report"] | {"reports": [{"n": number}]})).encode())
    assert json.loads(row.report) == {"reports": [{"n": number}]}
    rejection = parse(json.dumps(valid(OrgID=number)).encode())
    assert rejection.reason == "out_of_range"
    versioned = accepted(json.dumps(valid(Version=number)).encode())
    assert versioned.version == number


def test_wide_integers_only_in_stripped_parts_keep_the_fast_path():
    report = valid()["Report"] | {"info": [{"n": 2**70}], "pass": [-(2**70)]}
    row = accepted(json.dumps(valid(Report=report)).encode())
    assert b"e+" not in row.report and "info" not in json.loads(row.report)


def test_long_digit_run_in_a_string_goes_through_the_exact_path_too():
    report = valid()["Report"] | {"reports": [{"id": "12345678901234567890123", "f": 0.1, "e": 1e-7}]}
    row = accepted(valid(Report=report))
    assert orjson.loads(row.report) == {"reports": [{"id": "12345678901234567890123", "f": 0.1, "e": 1e-7}]}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
@pytest.mark.parametrize("long_digits", [False, True])
def test_non_finite_numbers_rejected(constant, long_digits):
    # long_digits also sends the message through the exact-integer parser.
    extra = b',"id":12345678901234567890123' if long_digits else b""
    text = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":' + constant + extra + b"}")
    assert constant in text
    rejected(text, m.INVALID_JSON)


@pytest.mark.parametrize("long_digits", [False, True])
@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xc0\xaf"],
)
def test_invalid_utf8_rejected(bad, long_digits):
    extra = b',"id":12345678901234567890123' if long_digits else b""
    text = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":"a' + bad + b'b"' + extra + b"}")
    rejected(text, m.INVALID_JSON)


@pytest.mark.parametrize("long_digits", [False, True])
@pytest.mark.parametrize("where", ["report", "request_id"])
def test_lone_surrogate_escape_is_rejected_on_both_json_paths(long_digits, where):
    body = orjson.dumps(valid(RequestId="REQ"))
    extra = b',"id":12345678901234567890123' if long_digits else b""
    if where == "report":
        body = body.replace(b'"details":{"x":1}', b'"details":{"x":"a\\ud800b"' + extra + b"}")
    else:
        body = body.replace(b'"REQ"', b'"a\\udc00b"').replace(b'"details":{"x":1}', b'"details":{"x":1' + extra + b"}")
    result = parse(body)
    # Both JSON parsers must agree: a lone surrogate is not Unicode text and cannot be stored or sent.
    assert isinstance(result, Rejection), result
    assert result.reason == m.INVALID_JSON


def test_surrogate_pair_escape_is_one_character():
    body = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":"\\ud83d\\ude00"}')
    row = accepted(body)
    assert orjson.loads(row.report)["reports"][0]["details"]["x"] == "\U0001F600"


@pytest.mark.parametrize("long_digits", [False, True])
def test_nul_characters_are_stored_escaped(long_digits):
    details = {"x": "a\x00b", "\x00key": "\x00", "y": 12345678901234567890123 if long_digits else 1}
    report = valid()["Report"] | {"reports": [{"details": details}]}
    row = accepted(json.dumps(valid(Report=report)).encode())
    assert b"\x00" not in row.report
    assert b"\\u0000" in row.report
    assert json.loads(row.report) == {"reports": [{"details": details}]}


def test_control_characters_are_escaped_in_the_report():
    text = "tab\there\nnewline\rcr\x01\x1f\\backslash\"quote"
    report = valid()["Report"] | {"reports": [text]}
    row = accepted(valid(Report=report))
    assert not any(byte < 0x20 for byte in row.report)
    assert orjson.loads(row.report) == {"reports": [text]}


def test_unicode_kept_as_utf8():
    text = "žluťoučký kůň 日本語 \U0001F600 \u2028"
    report = valid()["Report"] | {"reports": [text]}
    row = accepted(valid(Report=report))
    assert text.encode("utf-8") in row.report


def test_duplicate_keys_last_one_wins():
    body = orjson.dumps(valid())
    body = body.replace(b'"OrgID":1000', b'"OrgID":1,"OrgID":1000')
    body = body.replace(b'"details":{"x":1}', b'"details":{"x":1,"x":2}')
    row = accepted(body)
    assert row.org_id == 1000
    assert orjson.loads(row.report)["reports"][0]["details"] == {"x": 2}


def test_duplicate_keys_can_remove_a_required_field():
    body = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"OrgID":1000,"OrgID":"x"')
    rejected(body, m.WRONG_TYPE)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


# Pinned (SPEC 3 rejects only what is not JSON; message.py's docstring): a message nested up to orjson's
# 1024 levels is stored, whichever parser reads it; deeper is rejected as invalid_json, never a crash.
@pytest.mark.parametrize("depth", [100, 300, 500, 1000, 1020, 1100, 5000, 100000])
@pytest.mark.parametrize("long_digits", [False, True])
@pytest.mark.parametrize("where", ["reports", "system"])
def test_deeply_nested_report_is_stored_up_to_1024_levels_and_rejected_beyond(depth, long_digits, where):
    inner = nested(depth)
    if long_digits:  # also through the exact-integer parser
        inner = inner.replace(b"1", b"12345678901234567890123", 1)
    parts = {"fingerprints": b"[]", "reports": b"[]", "system": b"{}"}
    parts[where] = inner
    report = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in parts.items()) + b"}"
    body = orjson.dumps(valid(Report={})).replace(b'"Report":{}', b'"Report":' + report)
    result = parse(body)
    if depth + 2 <= 1024:  # the message object and Report are two levels more
        assert isinstance(result, Row), result
        expected = b'{"reports":[]}' if where == "system" else b'{"reports":' + inner + b"}"
        assert result.report == expected
    else:
        assert isinstance(result, Rejection), result
        assert result.reason == m.INVALID_JSON
        assert "depth limit exceeded" in result.detail


def test_nested_500_levels_in_reports_is_stored_exactly():
    body = orjson.dumps(valid(Report={})).replace(
        b'"Report":{}', b'"Report":{"fingerprints":[],"reports":' + nested(500) + b',"system":{}}'
    )
    row = accepted(body)
    assert row.report == b'{"reports":' + nested(500) + b"}"


def test_big_message_is_fine():
    report = valid()["Report"] | {"reports": [{"rule": i, "text": "x" * 100} for i in range(20000)]}
    row = accepted(valid(Report=report))
    assert len(orjson.loads(row.report)["reports"]) == 20000


# --- property-based: never raises ------------------------------------------------------------

STRIPPED_KEYS = sorted(STRIPPED)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.sampled_from(STRIPPED_KEYS + ["reports"]), children, max_size=5),
    max_leaves=25,
)


def check_result(result) -> None:
    assert isinstance(result, (Row, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in m.REJECTION_REASONS
        assert isinstance(result.detail, str) and result.detail
        return
    assert isinstance(result.report, bytes)
    assert b"\x00" not in result.report
    result.report.decode("utf-8")
    stored = json.loads(result.report)  # the standard library keeps every integer exact
    assert isinstance(stored, dict)
    assert not STRIPPED & set(stored)
    assert "reports" in stored
    if re.search(rb"[0-9]{20}|-[0-9]{19}", result.report) is None:  # no integer orjson would widen
        assert orjson.loads(result.report) == stored
        assert orjson.dumps(orjson.loads(result.report)) == result.report
    assert 0 <= result.org_id <= m.PG_INTEGER_MAX and 0 <= result.account_number <= m.PG_INTEGER_MAX
    assert m._UUID.fullmatch(result.cluster)
    assert result.updated_at.tzinfo is None and result.updated_at <= NOW
    if result.request_id is not None:
        result.request_id.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(value):
    check_result(parse_message(value, 0, NOW))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(value):
    text = json.dumps(value).encode()
    check_result(parse_message(text, 0, NOW))


field_values = {
    "OrgID": st.integers(min_value=-(2**65), max_value=2**65) | json_values,
    "AccountNumber": st.integers(min_value=-(2**33), max_value=2**33) | json_values,
    "ClusterName": st.uuids().map(str) | st.text(alphabet=string.hexdigits + "-", max_size=40) | json_values,
    "Report": json_values,
    "LastChecked": st.datetimes(
        min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)
    ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    | st.text(alphabet="0123456789-:TZ.+", max_size=40)
    | json_values,
    "Version": st.integers(min_value=-5, max_value=300) | json_values,
    "RequestId": st.text(max_size=30) | json_values,
}


@st.composite
def mutated_messages(draw):
    body = valid()
    report = dict(body["Report"])
    for key in draw(st.lists(st.sampled_from(sorted(report)), max_size=3)):
        action = draw(st.sampled_from(["drop", "replace"]))
        if action == "drop":
            report.pop(key, None)
        else:
            report[key] = draw(json_values)
    for key, value in draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)).items():
        report[key] = value
    body["Report"] = report
    for field in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=3, unique=True)):
        if draw(st.booleans()):
            body.pop(field)
        else:
            body[field] = draw(field_values[field])
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages(), st.integers(min_value=0, max_value=2**63 - 1))
def test_mutated_valid_messages_never_raise(body, offset):
    text = json.dumps(body).encode()
    result = parse_message(text, offset, NOW)
    check_result(result)
    if isinstance(result, Row):
        assert result.kafka_offset == offset
        assert json.loads(result.report) == {k: v for k, v in body["Report"].items() if k not in STRIPPED}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_byte_level_mutations_never_raise(data):
    text = bytearray(orjson.dumps(valid()))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
        kind = data.draw(st.sampled_from(["set", "delete", "insert"]))
        byte = data.draw(st.integers(min_value=0, max_value=255))
        if kind == "set":
            text[position] = byte
        elif kind == "delete" and len(text) > 1:
            del text[position]
        else:
            text.insert(position, byte)
    check_result(parse_message(bytes(text), 0, NOW))


# --- cost: how many times a message is parsed (counted, not timed) ---------------------------


@pytest.fixture
def parses(monkeypatch):
    """Counts of full parses by orjson and by the standard library's exact parser, and of raw scans."""
    counts = {"orjson": 0, "exact": 0, "scan": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(m.orjson, "loads", counting("orjson", orjson.loads))
    monkeypatch.setattr(m.json, "loads", counting("exact", json.loads))
    if hasattr(m, "_has_wide_integer"):  # absent before the scan existed: the counts then tell the difference
        monkeypatch.setattr(m, "_has_wide_integer", counting("scan", m._has_wide_integer))
    return counts


def report_with(text: str) -> dict:
    return valid(Report={"fingerprints": [], "reports": [{"details": text, "n": [1e300, 2.5e+20]}], "system": {}})


def test_text_e_plus_in_a_report_is_parsed_once(parses):
    row = accepted(report_with("size e+ or 1.8446744073709552e+19 as text"))
    assert b"1.8446744073709552e+19 as text" in row.report
    assert parses == {"orjson": 1, "exact": 0, "scan": 1}


def test_large_floats_are_floats_and_parsed_once(parses):
    body = orjson.dumps(valid(OrgID=1e19))
    result = rejected(body, m.WRONG_TYPE)
    assert "OrgID" in result.detail
    assert parses == {"orjson": 1, "exact": 0, "scan": 1}


@pytest.mark.parametrize("body", [b"{bad", b'{"OrgID": 1', b'"\\ud800"', b"[" * 2000, b"\xff\xfe", b"nul\x00",
                                  b'{"a": 01}'])
def test_invalid_json_is_parsed_once(parses, body):
    assert rejected(body, m.INVALID_JSON)
    assert parses == {"orjson": 1, "exact": 0, "scan": 0}


def test_a_number_orjson_cannot_read_is_parsed_at_most_twice(parses):
    rejected(b'{"OrgID": 1e400}', m.INVALID_JSON)
    assert parses == {"orjson": 1, "exact": 1, "scan": 0}


def test_integer_beyond_64_bits_takes_the_exact_path_once(parses):
    body = orjson.dumps(report_with("x")).replace(b'"n":[', b'"n":[123456789012345678901234567890,')
    row = accepted(body)
    assert b"123456789012345678901234567890" in row.report
    assert parses == {"orjson": 1, "exact": 1, "scan": 1}


@pytest.mark.parametrize("text,wide", [
    (b'{"a":18446744073709551615}', False),  # 2**64 - 1: orjson keeps it
    (b'{"a":18446744073709551616}', True),
    (b'{"a":-9223372036854775808}', False),  # -2**63
    (b'{"a":-9223372036854775809}', True),
    (b'{"a":123456789012345678901}', True),
    (b'{"a":"123456789012345678901"}', False),  # in a string
    (b'{"a":"x\\"123456789012345678901"}', False),  # after an escaped quote, still in the string
    (b'{"a":1.23456789012345678901}', False),  # a fraction
    (b'{"a":1e123456789012345678901}', False),  # an exponent
    (b'{"a":12345678901234567890123e5}', False),  # a float literal
    (b'{"123456789012345678901":[true,false,null,12345678901234567890123]}', True),
])
def test_has_wide_integer(text, wide):
    assert m._has_wide_integer(text) is wide


def test_memory_error_is_not_an_invalid_message(monkeypatch):
    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(m.orjson, "loads", exhausted)
    with pytest.raises(MemoryError):
        parse(orjson.dumps(valid()))
    monkeypatch.undo()
    monkeypatch.setattr(m, "parse_timestamp", exhausted)  # anywhere in the checks, not only the parser
    with pytest.raises(MemoryError):
        parse(orjson.dumps(valid()))
