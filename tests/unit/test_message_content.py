"""The report's content through ``parse_message`` (SPEC section 3): numbers and text kept as sent, invalid text,
nesting; properties (nothing raises, whatever the input; what is stored is the original's bytes); how many times a
message is decoded. The byte-for-byte table against encoding/json is tests/unit/test_go_json.py."""

from __future__ import annotations

import datetime
import json
import string
import sys

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import go_json_reference
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


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"+1", b".5", b"01", b"1."])
def test_what_is_not_a_json_number_is_rejected(constant):
    text = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":' + constant + b"}")
    assert constant in text
    rejected(text, m.INVALID_JSON)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1e-400", b"1" * 400])
def test_a_number_no_float_holds_is_stored_as_sent(number):
    # The original never parses a report value: its grammar alone decides (encoding/json's scanner).
    text = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":' + number + b"}")
    assert b'"details":{"x":' + number + b"}" in accepted(text).report


@pytest.mark.parametrize("where", ["reports", "info", "ClusterName"])
@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xc0\xaf"],
)
def test_invalid_utf8_rejected_wherever_it_is(bad, where):
    body = orjson.dumps(valid(ClusterName="CLUSTER"))
    if where == "reports":
        body = body.replace(b'"details":{"x":1}', b'"details":{"x":"a' + bad + b'b"}')
    elif where == "info":
        body = body.replace(b'"info":[{"i":1}]', b'"info":["a' + bad + b'b"]')
    else:
        body = body.replace(b'"CLUSTER"', b'"a' + bad + b'b"')
    rejected(body, m.INVALID_JSON)


@pytest.mark.parametrize("where", ["report", "stripped", "request_id"])
def test_lone_surrogate_escape_is_rejected(where):
    body = orjson.dumps(valid(RequestId="REQ"))
    if where == "report":
        body = body.replace(b'"details":{"x":1}', b'"details":{"x":"a\\ud800b"}')
    elif where == "stripped":
        body = body.replace(b'"info":[{"i":1}]', b'"info":["\\udc00"]')
    else:
        body = body.replace(b'"REQ"', b'"a\\udc00b"')
    result = parse(body)
    # Not Unicode text: refused as the service always did (the original would store it; README, "Switching over").
    assert isinstance(result, Rejection), result
    assert result.reason == m.INVALID_JSON


def test_surrogate_pair_escape_is_kept_as_sent():
    body = orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":{"x":"\\ud83d\\ude00"}')
    row = accepted(body)
    assert b'"details":{"x":"\\ud83d\\ude00"}' in row.report
    assert orjson.loads(row.report)["reports"][0]["details"]["x"] == "\U0001F600"


def test_nul_characters_are_stored_escaped():
    details = {"x": "a\x00b", "\x00key": "\x00", "y": 12345678901234567890123}
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


def test_unicode_kept_as_utf8_but_line_and_paragraph_separators():
    text = "žluťoučký kůň 日本語 \U0001F600 "
    report = valid()["Report"] | {"reports": [text + "\u2028\u2029"]}
    row = accepted(valid(Report=report))  # orjson writes the text as UTF-8, U+2028 and U+2029 included
    assert text.encode("utf-8") + b"\\u2028\\u2029" in row.report


def test_duplicate_keys_last_one_wins():
    body = orjson.dumps(valid())
    body = body.replace(b'"OrgID":1000', b'"OrgID":1,"OrgID":1000')
    body = body.replace(b'"details":{"x":1}', b'"details":{"x":1,"x":2}')
    row = accepted(body)
    assert row.org_id == 1000
    assert b'"details":{"x":1,"x":2}' in row.report  # inside a value: as sent (the original never parses it)


def test_duplicate_keys_can_remove_a_required_field():
    body = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"OrgID":1000,"OrgID":"x"')
    rejected(body, m.WRONG_TYPE)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


# Pinned (message.py's docstring): a message nested up to encoding/json's 10000 levels is stored, deeper is rejected
# as invalid_json, never a crash, in a kept value or a stripped one.
@pytest.mark.parametrize("depth", [100, 995, 1100, 5000, 9998, 9999, 100000])
@pytest.mark.parametrize("where", ["reports", "system"])
def test_deeply_nested_report_is_stored_up_to_10000_levels_and_rejected_beyond(depth, where):
    inner = nested(depth)
    parts = {"fingerprints": b"[]", "reports": b"[]", "system": b"{}"}
    parts[where] = inner
    report = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in parts.items()) + b"}"
    body = orjson.dumps(valid(Report={})).replace(b'"Report":{}', b'"Report":' + report)
    result = parse(body)
    if depth + 2 <= m.MAX_NESTING:  # the message object and Report are two levels more
        assert isinstance(result, Row), result
        expected = b'{"reports":[]}' if where == "system" else b'{"reports":' + inner + b"}"
        assert result.report == expected
    else:
        assert isinstance(result, Rejection), result
        assert result.reason == m.INVALID_JSON
        assert "depth limit exceeded" in result.detail


def test_the_recursion_limit_is_restored_after_a_deep_message():
    before = sys.getrecursionlimit()
    accepted(orjson.dumps(valid()).replace(b'"details":{"x":1}', b'"details":' + nested(5000)))
    assert sys.getrecursionlimit() == before


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
    assert list(stored) == sorted(stored)
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
        assert result.report == go_json_reference.stored_report(json.dumps(body["Report"]).encode())


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


# --- cost: how many times a message is decoded (counted, not timed) ---------------------------


class Counting:
    def __init__(self, decoder, counts: dict[str, int], name: str) -> None:
        self.decoder, self.counts, self.name = decoder, counts, name

    def decode(self, value):
        self.counts[self.name] += 1
        return self.decoder.decode(value)


@pytest.fixture
def decodes(monkeypatch):
    """Counts of msgspec decodes: the whole message (usual, any keys), a Report again, a field's value."""
    counts = {"usual": 0, "top_level": 0, "report": 0, "value": 0}
    for name in counts:
        attribute = f"_{name.upper()}_DECODER"
        monkeypatch.setattr(m, attribute, Counting(getattr(m, attribute), counts, name))
    return counts


def test_a_usual_message_is_decoded_once(decodes):
    accepted(valid(Metadata={"gathering_time": "x"}))
    assert decodes == {"usual": 1, "top_level": 0, "report": 0, "value": 0}


@pytest.mark.parametrize("body,passes", [
    (b"{bad", 1), (b'{"OrgID": 1', 1), (b'"\\ud800"', 1), (b"nul\x00", 1), (b'{"a": 01}', 1),
    (b"[" * 2000, 2),  # deeper than the recursion left: counted, then once more with room for 10000 levels
])
def test_invalid_json_is_decoded_once(decodes, body, passes):
    rejected(body, m.INVALID_JSON)
    assert decodes["usual"] == passes and decodes["report"] == 0


def test_invalid_utf8_is_not_decoded(decodes):
    rejected(b'{"OrgID": "\xff"}', m.INVALID_JSON)
    assert decodes == {"usual": 0, "top_level": 0, "report": 0, "value": 0}


def test_another_top_level_key_costs_one_more_pass_over_the_report(decodes):
    accepted(valid(Extra=1))
    assert decodes == {"usual": 1, "top_level": 1, "report": 1, "value": 6}


def test_memory_error_is_not_an_invalid_message(monkeypatch):
    class Exhausted:
        def decode(self, value):
            raise MemoryError

    monkeypatch.setattr(m, "_USUAL_DECODER", Exhausted())
    with pytest.raises(MemoryError):
        parse(orjson.dumps(valid()))
    monkeypatch.undo()

    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(m, "parse_timestamp", exhausted)  # anywhere in the checks, not only the decoder
    with pytest.raises(MemoryError):
        parse(orjson.dumps(valid()))
