"""A candidate message decode (msgspec), kept for measurement; the service decodes with writer.message (orjson).

Same contract as ``writer.message.parse_message`` (a ``Row`` or a ``Rejection``, only MemoryError escapes)
and the same validation after decoding, field by field; bench/test_candidate_decode.py holds the two side by
side. Why it is not the service's decode: README "Why the message decode stays orjson" (issue 10 asked for
half the workers' CPU per message end to end; this gives about a third). Re-measure with
``python -m bench.decode_compare`` (per message) and ``python -m bench.e2e --decoder candidate`` (end to end).

Decoding: one pass validates the whole message as JSON and builds Python objects only for the seven fields
read; each value of ``Report`` is left as the bytes msgspec found (``msgspec.Raw``). Only the stored values
(every key but the stripped ones) are then decoded, and orjson writes them, so a stored report is what
writer.message stores, byte for byte (where orjson cannot write it, integers beyond 64 bits or over 254
levels, msgspec does: compact, integers exact). A message whose fields have unexpected shapes (top level not
an object, ``Report`` not an object, a number out of range in a field) is decoded again, loosely, to give
each its reason.

What is checked where, to reject what writer.message rejects:

- Grammar, escapes (a lone surrogate ``\\ud800`` is not text), NaN and Infinity, trailing data, a
  byte-order mark: msgspec, over the whole message.
- UTF-8: msgspec checks it only in the strings it builds, so the message is checked first (``isascii``,
  and a decode when it is not ASCII).
- Duplicate keys: the last one wins, at every level, as with orjson.
- Numbers: integers of any size are exact (up to Python's 4300 digits), no second parse. A number too
  large for a float (``1e400``) or an integer of more digits is ``invalid_json`` in a value that is read;
  in a value thrown away unread (a stripped report key, an unknown top-level key) only its grammar is
  checked: such a message is stored, where writer.message rejects it (the one difference, by design).

Nesting: deeper than 1024 levels is ``invalid_json`` ("depth limit exceeded"), as in writer.message.
msgspec spends one level of Python's recursion limit per nesting level, so under CPython 3.11 and a limit
of at most 1025 (the default is 1000) a decode that succeeds is proof enough; one that runs out of
recursion is followed by an exact count of the nesting and, when within 1024, a decode under a raised
limit. Where the limit bounds nothing (Python 3.12+ counts C recursion apart; a raised limit), every
message longer than 2048 bytes pays two ``bytes.count`` after its decode (about 9 µs for 14 KB), and one
with more than 1024 opening brackets the exact count.
"""

from __future__ import annotations

import datetime
import re
import sys
from typing import Any

import msgspec
import orjson

# The validation after decoding is writer.message's: its reason codes, types and helpers (private ones
# included, so that the two decodes cannot drift apart in what they check).
from writer.message import (
    _UUID,
    EMPTY_MESSAGE,
    FUTURE_TIMESTAMP,
    INCOMPLETE_REPORT,
    INVALID_CLUSTER_NAME,
    INVALID_JSON,
    INVALID_TIMESTAMP,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    OUT_OF_RANGE,
    PG_INTEGER_MAX,
    REQUIRED_REPORT_KEYS,
    STRIPPED_REPORT_KEYS,
    WRONG_TYPE,
    Rejection,
    Row,
    _deep_recursion,
    _Reject,
    parse_timestamp,
    shrink_report,
)

MAX_NESTING = 1024  # orjson's limit, the rule writer.message keeps

_STRIPPED = frozenset(STRIPPED_REPORT_KEYS)
_TOO_DEEP = f"not valid JSON: depth limit exceeded (nested deeper than {MAX_NESTING} levels)"
# A decode that succeeded under a recursion limit of at most MAX_NESTING + 1 nested at most MAX_NESTING levels.
_NESTING_BOUNDED_BY_RECURSION = sys.version_info < (3, 12)
# Valid JSON only: a string (skipped whole, with its escaped quotes) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')
_OPENING = frozenset(b"[{")
_CLOSING = frozenset(b"]}")

_FIELD_NAMES = {
    "org_id": "OrgID",
    "account_number": "AccountNumber",
    "cluster": "ClusterName",
    "report": "Report",
    "last_checked": "LastChecked",
    "version": "Version",
    "request_id": "RequestId",
}


# Typed loosely (Any): the checks in _parse give each wrong value its reason code. gc=False: values
# decoded from JSON cannot form reference cycles.
class _Fields(msgspec.Struct, rename=_FIELD_NAMES, gc=False):
    """The top-level fields read; any other key is skipped (validated, not built)."""

    org_id: Any = msgspec.UNSET
    account_number: Any = msgspec.UNSET
    cluster: Any = msgspec.UNSET
    last_checked: Any = msgspec.UNSET
    version: Any = None
    request_id: Any = None


class _Message(_Fields, gc=False):
    """The usual shape: Report is an object, its values left undecoded."""

    report: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


class _MessageOfAnyShape(_Fields, gc=False):
    """Report of any JSON type, for a message the usual shape refused."""

    report: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_MESSAGE_DECODER = msgspec.json.Decoder(_Message)
_ANY_SHAPE_DECODER = msgspec.json.Decoder(_MessageOfAnyShape)
_REPORT_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUE_DECODER = msgspec.json.Decoder()


def _invalid_json(error: Exception, where: str = "") -> _Reject:
    return _Reject(INVALID_JSON, f"not valid JSON: {where}{str(error).splitlines()[0][:200]}")


def nested_deeper_than(value: bytes, limit: int) -> bool:
    """Whether the JSON text nests more than ``limit`` arrays and objects inside one another."""
    if value.count(b"[") + value.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(value):
        char = value[match.start()]
        if char in _OPENING:
            depth += 1
            if depth > limit:
                return True
        elif char in _CLOSING:
            depth -= 1
    return False


def _nesting_proven_by_decoder() -> bool:
    return _NESTING_BOUNDED_BY_RECURSION and sys.getrecursionlimit() <= MAX_NESTING + 1


def _decode(value: bytes, nesting_counted: bool) -> tuple[_Fields, Any]:
    """The message's fields, and its Report: a dict whose stored values are decoded, or whatever else it is.

    RecursionError escapes: parse_message decides on the nesting.
    """
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _invalid_json(error) from None
    fields: _Fields
    report: Any
    try:
        message = _MESSAGE_DECODER.decode(value)
    except msgspec.ValidationError:
        fields, report = _decode_any_shape(value)
    except msgspec.DecodeError as error:
        raise _invalid_json(error) from None
    else:
        fields, report = message, message.report
    if (not nesting_counted and not _nesting_proven_by_decoder() and len(value) > 2 * MAX_NESTING
            and nested_deeper_than(value, MAX_NESTING)):
        raise _Reject(INVALID_JSON, _TOO_DEEP)
    if isinstance(report, dict):
        report = _read_stored_values(report)
    return fields, report


def _decode_any_shape(value: bytes) -> tuple[_Fields, Any]:
    try:
        message = _ANY_SHAPE_DECODER.decode(value)
    except msgspec.ValidationError as error:  # the top level is not an object, or a field's number is out of range
        try:
            document = _VALUE_DECODER.decode(value)
        except msgspec.DecodeError as invalid:
            raise _invalid_json(invalid) from None
        if isinstance(document, dict):
            raise _invalid_json(error) from None
        raise _Reject(NOT_AN_OBJECT, f"message is a JSON {type(document).__name__}, not an object") from None
    except msgspec.DecodeError as error:
        raise _invalid_json(error) from None
    if message.report is msgspec.UNSET:
        return message, msgspec.UNSET
    try:
        return message, _REPORT_DECODER.decode(message.report)
    except msgspec.ValidationError:  # not an object: decoded whole, for the type named in the rejection
        pass
    try:
        return message, _VALUE_DECODER.decode(message.report)
    except msgspec.DecodeError as error:
        raise _invalid_json(error, "Report: ") from None


def _read_stored_values(report: dict[str, msgspec.Raw]) -> dict[str, Any]:
    """The report with every stored value decoded; the stripped ones stay raw, unread."""
    try:
        return {key: raw if key in _STRIPPED else _VALUE_DECODER.decode(raw) for key, raw in report.items()}
    except msgspec.DecodeError as error:  # e.g. 1e400, which no float holds
        raise _invalid_json(error, "Report: ") from None


def _dump_json(report: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(report)
    except orjson.JSONEncodeError:
        pass
    # Wider integers or deeper nesting (over 254 levels) than orjson writes; as compact, integers exact.
    try:
        return msgspec.json.encode(report)
    except msgspec.EncodeError as error:
        raise _Reject(INVALID_JSON, f"Report cannot be written as JSON: {error}") from None


def _integer(value: Any, field: str) -> int:
    if value is msgspec.UNSET:
        raise _Reject(MISSING_FIELD, f"{field} is missing")
    if type(value) is not int:
        raise _Reject(WRONG_TYPE, f"{field} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= PG_INTEGER_MAX:
        raise _Reject(OUT_OF_RANGE, f"{field} {value} is outside 0..{PG_INTEGER_MAX}")
    return value


def parse_message(value: bytes | None, offset: int, now: datetime.datetime) -> Row | Rejection:
    """Validate, shrink and convert one message; ``now`` is naive UTC (as writer.message.parse_message)."""
    try:
        return _parse(value, offset, now)
    except RecursionError:
        pass
    # Nested deeper than the recursion left to msgspec allows: count the levels, decode again if within the rule.
    if value is None or nested_deeper_than(value, MAX_NESTING):
        return Rejection(INVALID_JSON, _TOO_DEEP)
    with _deep_recursion():
        try:
            return _parse(value, offset, now, nesting_counted=True)
        except RecursionError:  # a C recursion limit below MAX_NESTING (not CPython 3.11's)
            return Rejection(INVALID_JSON, _TOO_DEEP)


def _parse(value: bytes | None, offset: int, now: datetime.datetime, nesting_counted: bool = False) -> Row | Rejection:
    org_id = cluster = request_id = None
    try:
        if not value:
            raise _Reject(EMPTY_MESSAGE, "message has no value")
        message, report = _decode(value, nesting_counted)
        request_id = message.request_id
        if request_id is not None and not isinstance(request_id, str):
            request_id = None
            raise _Reject(WRONG_TYPE, "RequestId must be a string")
        org_id = _integer(message.org_id, "OrgID")
        account_number = _integer(message.account_number, "AccountNumber")
        if message.cluster is msgspec.UNSET:
            raise _Reject(MISSING_FIELD, "ClusterName is missing")
        cluster = message.cluster
        if not isinstance(cluster, str):
            cluster = None
            raise _Reject(WRONG_TYPE, "ClusterName must be a string")
        if not _UUID.fullmatch(cluster):
            shown, cluster = cluster[:64], None
            raise _Reject(INVALID_CLUSTER_NAME, f"ClusterName {shown!r} is not a UUID")
        if report is msgspec.UNSET:
            raise _Reject(MISSING_FIELD, "Report is missing")
        if not isinstance(report, dict):
            raise _Reject(WRONG_TYPE, f"Report must be an object, got {type(report).__name__}")
        missing = [key for key in REQUIRED_REPORT_KEYS if key not in report]
        if missing:
            raise _Reject(INCOMPLETE_REPORT, f"Report lacks {', '.join(missing)}")
        version = message.version
        if version is not None and type(version) is not int:
            raise _Reject(WRONG_TYPE, "Version must be an integer")
        shrunk = _dump_json(shrink_report(report))
        # Timestamp problems share one reason, whatever their form (as writer.message).
        last_checked = message.last_checked
        if last_checked is msgspec.UNSET:
            raise _Reject(INVALID_TIMESTAMP, "LastChecked is missing")
        if not isinstance(last_checked, str):
            raise _Reject(INVALID_TIMESTAMP, f"LastChecked must be a string, got {type(last_checked).__name__}")
        try:
            updated_at = parse_timestamp(last_checked)
        except (ValueError, OverflowError) as error:
            raise _Reject(INVALID_TIMESTAMP, f"LastChecked: {error}") from None
        if updated_at > now:
            raise _Reject(FUTURE_TIMESTAMP, f"got a message from the future: LastChecked {last_checked[:40]}")
        return Row(org_id, account_number, cluster, shrunk, updated_at, offset, request_id, version)
    except _Reject as rejection:
        return Rejection(rejection.reason, rejection.detail, org_id, cluster, request_id)
    except (RecursionError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - the contract is "never raises" (but see writer.message)
        detail = f"unexpected input: {type(error).__name__}: {error}"
        return Rejection(INVALID_JSON, detail, org_id, cluster, request_id)
