"""The stored report, byte for byte the original's (SPEC section 3).

The original (consumer.go) decodes ``Report`` as ``map[string]*json.RawMessage``,
deletes the six stripped keys and stores ``json.Marshal`` of the rest. The
expected bytes below follow Go's encoding/json, read at these commits of
github.com/golang/go (src/encoding/json):

- encode.go (956bcd2963222dd5b981090f4cb66b547bad9c31), ``Marshal``: ``e.marshal(v, encOpts{escapeHTML: true})``.
- encode.go, ``mapEncoder.encode``: keys sorted with ``slices.SortFunc(sv, ... strings.Compare(i.ks, j.ks))``
  (byte order of the Go strings), each written by ``appendString(..., kv.ks, opts.escapeHTML)``, then ``':'``,
  then the value; ``','`` between pairs.
- encode.go, ``marshalerEncoder``: a RawMessage is its own bytes (stream.go, ``RawMessage.MarshalJSON``:
  ``return m, nil``; nil: ``"null"``), copied by ``appendCompact(out, b, opts.escapeHTML)``.
- indent.go (21ff6704bc8efa72abe191263aae938f3c867480), ``appendCompact``: with ``escape``, every
  ``'<'``, ``'>'``, ``'&'`` becomes ``\\u00`` + ``hex[c>>4]``, ``hex[c&0xF]`` (lower case: ``\\u003c``,
  ``\\u003e``, ``\\u0026``); bytes E2 80 A8 / E2 80 A9 (``src[i+2]&^1 == 0xA8``) become ``\\u2028`` /
  ``\\u2029``; a byte the scanner calls ``scanSkipSpace`` (space, tab, CR, LF outside strings) is dropped;
  every other byte is appended unchanged (``dst = append(dst, src[start:]...)``): escapes, numbers, key order
  and repeated keys inside a value stay as sent.
- encode.go, ``appendString`` (keys only: they were unquoted into Go strings by the decoder): bytes in
  ``htmlSafeSet`` (tables.go, c674ce87c2e47699bb51e02885fb80519ecbfb27: printable ASCII and DEL, but
  ``"``, ``\\``, ``<``, ``>``, ``&``) as they are; ``\\\\`` and ``\\"``; ``\\b``, ``\\f``, ``\\n``, ``\\r``,
  ``\\t``; any other byte below 0x20 and ``<>&`` as ``\\u00`` + two lower-case hex digits; U+2028, U+2029 as
  ``\\u2028``, ``\\u2029``; every other character as its UTF-8.
- decode.go, ``object``: a map element is set with ``v.SetMapIndex(kv, subv)``, so a repeated key's later
  value wins; keys are unquoted first (``unquoteBytes``), so ``"rep\\u006frts"`` is the key ``reports``.
- scanner.go, ``pushParseState``: ``if len(s.parseState) <= maxNestingDepth`` (``maxNestingDepth = 10000``).
"""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import go_json_reference
from writer.message import Rejection, Row, parse_message

NOW = datetime.datetime(2030, 1, 1)
ENVELOPE = (b'{"OrgID":1,"AccountNumber":2,"ClusterName":"5d5892d4-1f74-4ccf-91af-548dfc9767aa",'
            b'"LastChecked":"2020-01-01T00:00:00Z","Report":%s}')
REQUIRED = b'"fingerprints":[],"system":{}'


def stored(report: bytes) -> bytes:
    row = parse_message(ENVELOPE % report, 7, NOW)
    assert isinstance(row, Row), row
    return row.report


# (what the message's Report holds, what the original stores). RequiredKeys are added where not given.
TABLE = [
    # whitespace between and inside values: dropped outside strings (scanSkipSpace), kept inside them
    (b'{ "fingerprints" : [ ] ,\n\t"reports" :\r\n [ 1 , { "a" : "x  y\\t" } ] , "system" : { } }',
     b'{"reports":[1,{"a":"x  y\\t"}]}'),
    (b'{"reports":\n[\n  {\n    "a": [ ]\n  }\n]\n,' + REQUIRED + b"}", b'{"reports":[{"a":[]}]}'),
    # keys sorted by their bytes; the six stripped keys gone; the order inside a value stays as sent
    (b'{"system":{},"reports":[],"b":1,"a":2,"fingerprints":[],"B":3,"_":4,"skips":[],"info":[],"pass":[],'
     b'"analysis_metadata":{}}', b'{"B":3,"_":4,"a":2,"b":1,"reports":[]}'),
    (b'{"reports":[{"z":1,"a":{"c":3,"b":2}}],' + REQUIRED + b"}", b'{"reports":[{"z":1,"a":{"c":3,"b":2}}]}'),
    (b'{"\xc3\xa9":1,"z":2,"\xe6\x97\xa5":3,"reports":[],' + REQUIRED + b"}",
     b'{"reports":[],"z":2,"\xc3\xa9":1,"\xe6\x97\xa5":3}'),
    # a repeated key: the later value wins (SetMapIndex); inside a value both stay, as sent
    (b'{"reports":[1],' + REQUIRED + b',"reports":[2],"x":1,"x":{"y":2}}', b'{"reports":[2],"x":{"y":2}}'),
    (b'{"reports":[{"a":1,"a":2}],' + REQUIRED + b"}", b'{"reports":[{"a":1,"a":2}]}'),
    (b'{"rep\\u006frts":[1],' + REQUIRED + b',"reports":[2]}', b'{"reports":[2]}'),
    (b'{"reports":[1],' + REQUIRED + b',"rep\\u006frts":[3]}', b'{"reports":[3]}'),
    (b'{"reports":[],"sys\\u0074em":{"x":1},"fingerprints":[],"info":[1],"info":[2]}', b'{"reports":[]}'),
    # <, >, & written as \u003c, \u003e, \u0026 (appendCompact escape, lower-case hex), in values and keys
    (b'{"reports":["<a href=\\"x\\">&amp;</a>"],' + REQUIRED + b"}",
     b'{"reports":["\\u003ca href=\\"x\\"\\u003e\\u0026amp;\\u003c/a\\u003e"]}'),
    (b'{"reports":[],"a<b>&c":1,' + REQUIRED + b"}", b'{"a\\u003cb\\u003e\\u0026c":1,"reports":[]}'),
    # U+2028 and U+2029 sent as UTF-8: escaped; sent as escapes: kept as sent
    (b'{"reports":["a\xe2\x80\xa8b\xe2\x80\xa9c","\\u2028"],' + REQUIRED + b"}",
     b'{"reports":["a\\u2028b\\u2029c","\\u2028"]}'),
    (b'{"reports":[],"k\xe2\x80\xa8":1,' + REQUIRED + b"}", b'{"k\\u2028":1,"reports":[]}'),
    # escapes in values: kept exactly as sent (appendCompact never decodes a string)
    (b'{"reports":["\\u00e9","\\u00E9","\\/","\\"","\\\\","\\b\\f\\n\\r\\t","\\u003c","\\ud83d\\ude00","\xc3\xa9"],'
     + REQUIRED + b"}",
     b'{"reports":["\\u00e9","\\u00E9","\\/","\\"","\\\\","\\b\\f\\n\\r\\t","\\u003c","\\ud83d\\ude00","\xc3\xa9"]}'),
    # escapes in keys: the key is a Go string, written again by appendString
    (b'{"reports":[],"\\u00e9":1,"a\\/b":2,"q\\"q":3,"\\t":4,"\\u0001":5,"\\u007f":6,"\\b\\f":7,"\\u0041":8,'
     + REQUIRED + b"}",
     b'{"\\u0001":5,"\\b\\f":7,"\\t":4,"A":8,"a/b":2,"q\\"q":3,"reports":[],"\x7f":6,"\xc3\xa9":1}'),
    # numbers: kept as sent, never parsed (so never widened, rounded or refused for their size)
    (b'{"reports":[1e2,1E+2,1.0,-0,0.10,-0.0e-0,123456789012345678901234567890,-18446744073709551617,1e400,'
     b'-1e400,2.5e-400],' + REQUIRED + b"}",
     b'{"reports":[1e2,1E+2,1.0,-0,0.10,-0.0e-0,123456789012345678901234567890,-18446744073709551617,1e400,'
     b'-1e400,2.5e-400]}'),
    # nested objects and null values
    (b'{"reports":[{"details":{"nodes":[{"name":"n1","roles":null}],"empty":{}},"links":{}}],"z":null,'
     + REQUIRED + b"}",
     b'{"reports":[{"details":{"nodes":[{"name":"n1","roles":null}],"empty":{}},"links":{}}],"z":null}'),
    (b'{"reports":null,' + REQUIRED + b"}", b'{"reports":null}'),
    (b'{"reports":true,"f":false,"s":"x",' + REQUIRED + b"}", b'{"f":false,"reports":true,"s":"x"}'),
]


@pytest.mark.parametrize("report,expected", TABLE)
def test_stored_report_is_the_originals_bytes(report, expected):
    assert stored(report) == expected
    # The slow reading of the same rules agrees (it is the oracle of the property test below).
    assert go_json_reference.stored_report(report) == expected


def test_nesting_up_to_the_originals_limit_is_stored_and_deeper_rejected():
    def message(depth: int) -> bytes:  # the message and Report are two levels of their own
        inner = depth - 2
        return ENVELOPE % (b'{"reports":' + b"[" * inner + b"]" * inner + b"," + REQUIRED + b"}")

    row = parse_message(message(10_000), 0, NOW)
    assert isinstance(row, Row), row
    assert row.report == b'{"reports":' + b"[" * 9998 + b"]" * 9998 + b"}"
    rejection = parse_message(message(10_001), 0, NOW)
    assert isinstance(rejection, Rejection) and rejection.reason == "invalid_json"
    assert "depth limit exceeded" in rejection.detail


def test_a_message_the_pipeline_writes_is_stored_as_the_original_stores_it():
    # json.dumps as the pipeline calls it: ", " and ": " separators, non-ASCII as \u escapes, Metadata, newline.
    body = {"OrgID": 1, "AccountNumber": 2, "ClusterName": "5d5892d4-1f74-4ccf-91af-548dfc9767aa",
            "Report": {"system": {"metadata": {}}, "fingerprints": [], "skips": [], "info": [], "pass": [],
                       "analysis_metadata": {"start": "x"},
                       "reports": [{"rule_id": "a|B", "details": {"msg": "žluťoučký <kůň> & co", "n": 1.5e-7}}]},
            "LastChecked": "2020-01-01T00:00:00Z", "Version": 2, "RequestId": None,
            "Metadata": {"gathering_time": "2020-01-01T00:00:00Z"}}
    value = (json.dumps(body) + "\n").encode()
    row = parse_message(value, 0, NOW)
    assert isinstance(row, Row), row
    assert row.report == (b'{"reports":[{"rule_id":"a|B","details":{"msg":"\\u017elu\\u0165ou\\u010dk\\u00fd '
                          b'\\u003ck\\u016f\\u0148\\u003e \\u0026 co","n":1.5e-07}}]}')


json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
report_keys = st.sampled_from(list(go_json_reference.STRIPPED) + ["reports", "a", "B", "é", "<&>", "\u2028"])


@st.composite
def reports(draw) -> bytes:
    """A Report object as some producer might write it: any spacing, escaped or not, keys repeated."""
    pairs = [("fingerprints", []), ("reports", draw(json_values)), ("system", {})]
    pairs += draw(st.lists(st.tuples(report_keys | st.text(max_size=6), json_values), max_size=5))
    pairs = draw(st.permutations(pairs))
    ensure_ascii = draw(st.booleans())
    separator = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    indent = draw(st.sampled_from([None, 1, "\t"]))

    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, separators=separator, indent=indent)

    return ("{" + separator[0].join(dump(k) + separator[1] + dump(v) for k, v in pairs) + "}").encode("utf-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_any_report_is_stored_as_the_original_stores_it(report):
    assert stored(report) == go_json_reference.stored_report(report)
