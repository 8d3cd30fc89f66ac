"""SPEC section 3, rule by rule, as unit tests of the pure ``parse_message``: required fields, Version,
shrinking, LastChecked. The report's content, properties and parse counts: test_message_content.py."""

from __future__ import annotations

import datetime
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.messages import CLUSTER, NOW, STRIPPED, accepted, parse, rejected, valid
from writer import message as m
from writer.message import Rejection, Row, parse_message, parse_timestamp
from writer.sample_messages import message as sample_message

# --- a valid message -------------------------------------------------------------------------


def test_valid_message_gives_the_row():
    row = accepted(valid(), offset=42)
    assert row.org_id == 1000
    assert row.account_number == 5000
    assert row.cluster == CLUSTER
    assert row.updated_at == datetime.datetime(2020, 1, 23, 16, 15, 59, 478901)
    assert row.updated_at.tzinfo is None
    assert row.kafka_offset == 42
    assert row.request_id == "req-1"
    assert row.version == 2
    assert row.key == (1000, CLUSTER, row.updated_at)
    assert orjson.loads(row.report) == {"reports": [{"rule_id": "r|K", "details": {"x": 1}}]}


def test_sample_messages_parse_for_every_size():
    from writer.sample_messages import SIZES, encoded

    for number, size in enumerate(SIZES):
        row = parse_message(encoded(number, size), number, NOW)
        assert isinstance(row, Row), (size, row)
        assert set(orjson.loads(row.report)) == {"reports"}


def test_sample_invalid_messages_get_their_reasons():
    from writer.sample_messages import invalid_messages

    for value, reason in invalid_messages(10):
        result = parse_message(value, 0, NOW)
        assert isinstance(result, Rejection)
        assert result.reason == reason, (value[:80], result)


# --- 1. parsing and required fields ----------------------------------------------------------


@pytest.mark.parametrize("value", [b"", None])
def test_empty_value(value):
    result = parse_message(value, 0, NOW)
    assert isinstance(result, Rejection) and result.reason == m.EMPTY_MESSAGE


@pytest.mark.parametrize("value", [b"{not json", b"{", b"\"unterminated", b"{'OrgID': 1}", b"{}x", b"nul",
                                   b"\xff\xfe{}"])
def test_not_json(value):
    rejected(value, m.INVALID_JSON)


@pytest.mark.parametrize("value", [b"[1, 2, 3]", b"[]", b"\"text\"", b"12", b"null", b"true", b"1.5"])
def test_not_an_object(value):
    rejected(value, m.NOT_AN_OBJECT)


@pytest.mark.parametrize("field", ["OrgID", "AccountNumber", "ClusterName", "Report"])
def test_required_field_missing(field):
    result = rejected(valid(**{field: ...}), m.MISSING_FIELD)
    assert field in result.detail


@pytest.mark.parametrize("field", ["OrgID", "AccountNumber"])
@pytest.mark.parametrize("bad", ["1000", 1000.0, 1.5, True, False, None, [1000], {"id": 1000}])
def test_integer_field_of_wrong_type(field, bad):
    result = rejected(valid(**{field: bad}), m.WRONG_TYPE)
    assert field in result.detail


def test_float_written_with_exponent_is_not_an_integer():
    text = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"OrgID":1e3')
    assert b"1e3" in text
    rejected(text, m.WRONG_TYPE)


@pytest.mark.parametrize("field", ["OrgID", "AccountNumber"])
@pytest.mark.parametrize("number", [0, 1, 2147483647])
def test_integer_range_accepted(field, number):
    row = accepted(valid(**{field: number}))
    assert getattr(row, "org_id" if field == "OrgID" else "account_number") == number


@pytest.mark.parametrize("field", ["OrgID", "AccountNumber"])
@pytest.mark.parametrize("number", [-1, -2147483648, 2147483648, 4294967295, 2**63, 2**64 - 1])
def test_integer_out_of_postgres_range(field, number):
    result = rejected(valid(**{field: number}), m.OUT_OF_RANGE)
    assert field in result.detail


def test_integer_beyond_64_bits_in_orgid_is_out_of_range_not_a_float():
    text = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"OrgID":123456789012345678901234567890')
    rejected(text, m.OUT_OF_RANGE)


@pytest.mark.parametrize("field,reason,detail", [
    ("LastChecked", m.INVALID_TIMESTAMP, "LastChecked must be a string, got int"),
    ("Report", m.WRONG_TYPE, "Report must be an object, got int"),
    (None, m.NOT_AN_OBJECT, "message is a JSON int, not an object"),
])
@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_beyond_64_bits_is_named_int_not_float(field, reason, detail, number):
    # The rejection names what was sent: an integer of any width is an int.
    body = number if field is None else valid(**{field: number})
    assert rejected(json.dumps(body).encode(), reason).detail == detail


def test_a_float_beyond_64_bits_is_still_named_float():
    assert rejected(orjson.dumps(valid(LastChecked=1e19)), m.INVALID_TIMESTAMP).detail.endswith("got float")
    assert rejected(b"1e19", m.NOT_AN_OBJECT).detail == "message is a JSON float, not an object"


@pytest.mark.parametrize("bad", [123, None, True, ["x"], {"id": CLUSTER}])
def test_cluster_name_of_wrong_type(bad):
    rejected(valid(ClusterName=bad), m.WRONG_TYPE)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-uuid",
        CLUSTER[:-1],
        CLUSTER + "0",
        CLUSTER.replace("-", ""),
        "{" + CLUSTER + "}",
        "urn:uuid:" + CLUSTER,
        " " + CLUSTER,
        CLUSTER + "\n",
        CLUSTER.replace("a", "g"),
        "5d5892d41-f74-4ccf-91af-548dfc9767aa",
        "５d5892d4-1f74-4ccf-91af-548dfc9767aa",  # a full-width digit
    ],
)
def test_cluster_name_not_a_uuid(bad):
    result = rejected(valid(ClusterName=bad), m.INVALID_CLUSTER_NAME)
    assert result.cluster is None  # an invalid name is never reported as the cluster


def test_cluster_name_upper_case_uuid_is_accepted():
    assert accepted(valid(ClusterName=CLUSTER.upper())).cluster == CLUSTER.upper()


@pytest.mark.parametrize("bad", [[], "report", 1, None, True])
def test_report_of_wrong_type(bad):
    rejected(valid(Report=bad), m.WRONG_TYPE)


@pytest.mark.parametrize("missing", [("fingerprints",), ("reports",), ("system",),
                                     ("fingerprints", "reports", "system")])
def test_report_missing_required_key(missing):
    report = {k: v for k, v in valid()["Report"].items() if k not in missing}
    result = rejected(valid(Report=report), m.INCOMPLETE_REPORT)
    for key in missing:
        assert key in result.detail


def test_rejection_carries_org_cluster_and_request_id_when_known():
    result = rejected(valid(LastChecked="yesterday"), m.INVALID_TIMESTAMP)
    assert (result.org_id, result.cluster, result.request_id) == (1000, CLUSTER, "req-1")
    early = rejected(valid(OrgID="x"), m.WRONG_TYPE)
    assert early.org_id is None and early.cluster is None and early.request_id == "req-1"


def test_request_id_of_wrong_type_is_rejected():
    result = rejected(valid(RequestId=12), m.WRONG_TYPE)
    assert result.request_id is None


# --- 2. Version ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_other_version_is_still_stored(version):
    assert accepted(valid(Version=version)).version == version


def test_missing_version_is_still_stored():
    assert accepted(valid(Version=...)).version is None


def test_version_of_wrong_type_is_rejected():
    # The original decodes Version into an integer field: a string fails the whole message.
    rejected(valid(Version="2"), m.WRONG_TYPE)


def test_request_id_carried_or_none():
    assert accepted(valid(RequestId="abc-123")).request_id == "abc-123"
    assert accepted(valid(RequestId=...)).request_id is None


# --- 3. shrinking ----------------------------------------------------------------------------


def test_shrink_removes_exactly_the_stripped_keys_and_keeps_the_rest():
    report = {
        "system": {"a": 1},
        "fingerprints": [],
        "skips": [{"s": 1}],
        "info": [],
        "pass": [],
        "analysis_metadata": {"m": 1},
        "reports": [{"rule_id": "x", "details": {"nested": {"system": "kept", "info": "kept"}}}],
        "extra": {"kept": True},
        "Info": "different case is kept",
        "zzz": None,
    }
    row = accepted(valid(Report=report))
    expected = {k: v for k, v in report.items() if k not in STRIPPED}
    assert set(expected) == {"reports", "extra", "Info", "zzz"}
    # Compact; the kept keys sorted (Go sorts a map's keys), what is inside each value as sent.
    assert row.report == (b'{"Info":"different case is kept","extra":{"kept":true},'
                          b'"reports":[{"rule_id":"x","details":{"nested":{"system":"kept","info":"kept"}}}],"zzz":null}')
    assert b" " not in row.report.replace(b"different case is kept", b"")
    assert orjson.loads(row.report) == expected


def test_shrink_only_required_keys_present():
    row = accepted(valid(Report={"fingerprints": [], "reports": [], "system": {}}))
    assert row.report == b'{"reports":[]}'


def test_shrink_report_function():
    report = {key: 1 for key in STRIPPED} | {"reports": [1], "other": 2}
    assert m.shrink_report(report) == {"reports": [1], "other": 2}
    assert set(m.STRIPPED_REPORT_KEYS) == STRIPPED


def test_shrunk_sample_report_keeps_reports_exactly():
    body = sample_message(3, "large_size")
    row = accepted(body)
    assert orjson.loads(row.report) == {"reports": body["Report"]["reports"]}


# --- 4. LastChecked --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2020-01-23T16:15:59Z", datetime.datetime(2020, 1, 23, 16, 15, 59)),
        ("2020-01-23T16:15:59.478901Z", datetime.datetime(2020, 1, 23, 16, 15, 59, 478901)),
        ("2020-01-23T16:15:59.5Z", datetime.datetime(2020, 1, 23, 16, 15, 59, 500000)),
        ("2020-01-23T16:15:59+02:00", datetime.datetime(2020, 1, 23, 14, 15, 59)),
        ("2020-01-23T16:15:59-05:30", datetime.datetime(2020, 1, 23, 21, 45, 59)),
        ("2020-01-23T16:15:59.123456+00:00", datetime.datetime(2020, 1, 23, 16, 15, 59, 123456)),
        ("2020-01-23T16:15:59.123456-00:00", datetime.datetime(2020, 1, 23, 16, 15, 59, 123456)),
        ("2020-01-01T01:00:00+02:00", datetime.datetime(2019, 12, 31, 23, 0, 0)),  # across a year
        ("2020-02-29T20:00:00-05:30", datetime.datetime(2020, 3, 1, 1, 30, 0)),  # across a leap day
    ],
)
def test_timestamp_offsets_become_naive_utc(text, expected):
    row = accepted(valid(LastChecked=text))
    assert row.updated_at == expected
    assert row.updated_at.tzinfo is None


@pytest.mark.parametrize(
    "fraction,microseconds,extra_seconds",
    [
        ("478901889", 478902, 0),  # the SPEC's example
        ("478901499", 478901, 0),
        ("478901501", 478902, 0),
        ("000000500", 0, 0),  # exactly half, 0 is even: stays
        ("000001500", 2, 0),  # exactly half, 1 is odd: up to 2
        ("000002500", 2, 0),  # exactly half, 2 is even: stays
        ("000003500", 4, 0),
        ("0000005", 0, 0),  # seven digits: 500 ns
        ("0000015", 2, 0),
        ("999999499", 999999, 0),
        ("999999500", 0, 1),  # 999999 is odd: rounds up into the next second
        ("999999999", 0, 1),
        ("1", 100000, 0),
        ("12", 120000, 0),
    ],
)
def test_nanoseconds_rounded_half_to_even(fraction, microseconds, extra_seconds):
    text = f"2020-12-31T23:59:58.{fraction}Z"
    expected = datetime.datetime(2020, 12, 31, 23, 59, 58, microseconds) + datetime.timedelta(seconds=extra_seconds)
    assert parse_timestamp(text) == expected
    assert accepted(valid(LastChecked=text)).updated_at == expected


def test_rounding_up_crosses_the_year():
    assert parse_timestamp("2020-12-31T23:59:59.9999999Z") == datetime.datetime(2021, 1, 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2020-01-23",
        "2020-01-23T16:15:59",  # no offset
        "2020-01-23 16:15:59Z",
        "2020-01-23T16:15Z",
        "2020-01-23T16:15:59.Z",
        "2020-01-23T16:15:59.1234567890Z",  # more than nanoseconds
        "2020-13-01T00:00:00Z",
        "2020-02-30T00:00:00Z",
        "2019-02-29T00:00:00Z",
        "2020-01-23T24:00:00Z",
        "2020-01-23T16:60:00Z",
        "2020-01-23T16:15:60Z",
        "2020-01-23T16:15:59+24:00",
        "2020-01-23T16:15:59+02:60",
        "2020-01-23T16:15:59+0200",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "2020-01-23T16:15:59Z trailing",
        " 2020-01-23T16:15:59Z",
        "२०२०-01-23T16:15:59Z",  # Devanagari digits are not RFC 3339 digits
        "2020-01-23T16:15:59.١٢٣Z",  # Arabic-Indic digits in the fraction
    ],
)
def test_unparsable_timestamp(text):
    result = rejected(valid(LastChecked=text), m.INVALID_TIMESTAMP)
    assert result.org_id == 1000 and result.cluster == CLUSTER


@pytest.mark.parametrize("bad", [..., None, 1579796159, 1579796159.5, ["2020-01-23T16:15:59Z"], {}])
def test_timestamp_missing_or_not_a_string(bad):
    rejected(valid(LastChecked=bad), m.INVALID_TIMESTAMP)


def test_timestamp_in_the_future():
    result = rejected(valid(LastChecked="2030-01-01T00:00:00.000001Z"), m.FUTURE_TIMESTAMP)
    assert "got a message from the future" in result.detail
    assert result.org_id == 1000 and result.cluster == CLUSTER


def test_timestamp_in_the_future_after_offset_conversion():
    # 2030-01-01T01:00+02:00 is 2029-12-31T23:00Z: the past for NOW.
    assert accepted(valid(LastChecked="2030-01-01T01:00:00+02:00")).updated_at < NOW
    # 2029-12-31T23:00-05:30 is 2030-01-01T04:30Z: the future.
    rejected(valid(LastChecked="2029-12-31T23:00:00-05:30"), m.FUTURE_TIMESTAMP)


def test_timestamp_equal_to_now_is_accepted():
    assert accepted(valid(LastChecked="2030-01-01T00:00:00Z")).updated_at == NOW


def test_far_future_year_9999():
    rejected(valid(LastChecked="9999-12-31T23:59:59.999999Z"), m.FUTURE_TIMESTAMP)
    # Rounding or an offset past the end of year 9999 cannot be represented: invalid, not a crash.
    for text in ("9999-12-31T23:59:59.9999999Z", "9999-12-31T23:00:00-05:00"):
        assert isinstance(parse(valid(LastChecked=text)), Rejection)


# --- envelope field names, matched as Go's decoder matches them ---------------------------------------------


@pytest.mark.parametrize("spelling", ["orgid", "ORGID", "OrgId", "org\\u0069d"])
def test_a_field_name_in_another_case_fills_the_field(spelling):
    # Go: an exact match first, else one under bytes.EqualFold (simple Unicode case folding).
    body = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"%s":1234' % spelling.encode())
    assert accepted(body).org_id == 1234


@pytest.mark.parametrize("name,spelling", [
    ("LastChecked", "lastchec\\u212aed"),  # KELVIN SIGN folds to K
    ("ClusterName", "clu\\u017fterName"),  # LATIN SMALL LETTER LONG S folds to S
    ("Report", "REPORT"),
    ("AccountNumber", "accountnumber"),
    ("RequestId", "requestID"),
    ("Version", "VERSION"),
])
def test_every_field_folds(name, spelling):
    text = orjson.dumps(valid(Version=7)).replace(b'"%s":' % name.encode(), b'"%s":' % spelling.encode(), 1)
    row = accepted(text)
    assert (row.org_id, row.account_number, row.cluster, row.version, row.request_id) == (
        1000, 5000, CLUSTER, 7, "req-1")


# İ and ı are each a case-folding orbit of their own in Go (unicode.SimpleFold, caseOrbit in tables.go: {0x0130,
# 0x0130}, {0x0131, 0x0131}), so foldName keeps them and no field name matches.
@pytest.mark.parametrize("spelling", ["Org_ID", "OrgIDs", "Orgíd", "Org\\u0049\\u0044x", "Org\\u0130D", "Org\\u0131D",
                                      "Org\u0130D", "Org\u0131D"])
def test_a_name_that_does_not_fold_to_a_field_is_ignored(spelling):
    body = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"%s":1234' % spelling.encode())
    rejected(body, m.MISSING_FIELD)


def test_unknown_top_level_keys_and_metadata_are_ignored():
    row = accepted(valid(Metadata={"gathering_time": "2020-01-01T00:00:00Z"}, Extra=[1, {"x": 2}]))
    assert row.org_id == 1000 and row.report == b'{"reports":[{"rule_id":"r|K","details":{"x":1}}]}'


def test_report_named_twice_is_merged_as_go_decodes_into_one_map():
    body = orjson.dumps(valid(report={"reports": [2], "extra": 1}))
    assert accepted(body).report == b'{"extra":1,"reports":[2]}'


@pytest.mark.parametrize("value,reason", [(b"1e400", m.INVALID_JSON), (b"1" * 5000, m.INVALID_JSON),
                                          (b'"x"', m.WRONG_TYPE), (b"null", m.WRONG_TYPE)])
def test_a_folded_field_is_checked_like_the_exact_one(value, reason):
    body = orjson.dumps(valid()).replace(b'"OrgID":1000', b'"orgid":' + value)
    rejected(body, reason)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
       st.booleans())
def test_the_usual_timestamp_form_reads_as_the_general_one(moment, fraction):
    # "...SS.ffffffZ" and "...SSZ" take a shorter path; "+00:00" the general one, which must agree.
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    text += f".{moment.microsecond:06d}" if fraction else ""
    expected = moment if fraction else moment.replace(microsecond=0)
    assert parse_timestamp(text + "Z") == parse_timestamp(text + "+00:00") == expected


@pytest.mark.parametrize("text", ["2020-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "2020-01-01T24:00:00.000000Z",
                                  "2020-01-01T00:00:60Z", "2020-01-01t00:00:00Z", "2020-13-01T00:00:00Z"])
def test_an_impossible_timestamp_of_the_usual_form_is_rejected(text):
    rejected(valid(LastChecked=text), m.INVALID_TIMESTAMP)
