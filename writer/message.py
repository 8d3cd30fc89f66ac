"""What happens to one incoming message (SPEC section 3), as pure functions.

``parse_message(value, offset, now)`` takes the raw Kafka value and returns
either a ``Row`` ready to be stored or a ``Rejection`` with a reason code and
a one-line detail. Whatever the bytes are, the caller gets one of the two;
the only exception that escapes is MemoryError (the worker must crash and
consume the batch again, not reject a valid message as invalid).

Cost: orjson parses every message once. The standard library parses it a
second time, exactly, only when it holds an integer literal beyond 64 bits
(which orjson reads as a float), as confirmed by one regular-expression scan
of the raw bytes (cheaper than a parse), and the scan runs only when orjson's
result shows a sign of such a number. Invalid JSON is parsed once (twice
when orjson's complaint is a number out of its range). So a message costs
about one parse and never more than two plus a scan, except one with an
integer beyond 64 bits, which also pays the exact parse.

Nesting: orjson stops at 1024 levels; a message nested deeper is rejected
as ``invalid_json`` ("depth limit exceeded"). Anything less deep is stored
(the original's Go decoder stops at 10000 levels; real reports nest about
ten).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

CURRENT_SCHEMA_VERSION = 2
PG_INTEGER_MAX = 2**31 - 1
REQUIRED_REPORT_KEYS = ("fingerprints", "reports", "system")
STRIPPED_REPORT_KEYS = ("system", "fingerprints", "skips", "info", "pass", "analysis_metadata")

# Reason codes: a small fixed set, used as metric label values.
EMPTY_MESSAGE = "empty_message"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
OUT_OF_RANGE = "out_of_range"
INVALID_CLUSTER_NAME = "invalid_cluster_name"
INCOMPLETE_REPORT = "incomplete_report"
INVALID_TIMESTAMP = "invalid_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
REFUSED_BY_DATABASE = "refused_by_database"
REJECTION_REASONS = (
    EMPTY_MESSAGE, INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD, WRONG_TYPE, OUT_OF_RANGE,
    INVALID_CLUSTER_NAME, INCOMPLETE_REPORT, INVALID_TIMESTAMP, FUTURE_TIMESTAMP, REFUSED_BY_DATABASE,
)

# The form character(36) holds: the canonical 8-4-4-4-12 hexadecimal UUID.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# orjson reads an integer beyond 64 bits as a float, and writes a float that
# large with an exponent ("1.8446744073709552e+19"): "e+" in what we keep is
# the sign that the raw message may hold such an integer (or just the text
# "e+"); _has_wide_integer then decides with one scan.
_WIDE_NUMBER_MARK = b"e+"
_WIDENED_MAGNITUDE = 2.0**63
# orjson keeps integers in [-2**63, 2**64) exact.
_ORJSON_INT_RANGE = range(-(2**63), 2**64)
# From a position outside any string, skip (possessively: linear time, no backtracking) everything but
# an integer literal of 19 or more digits, which is captured. Valid JSON only (orjson accepted it).
_LONG_INTEGER = re.compile(
    rb'(?:[^"0-9.eE]++|"(?:[^"\\]++|\\.)*+"|[.eE][+-]?[0-9]*+|[0-9]{1,18}+(?![0-9])|[0-9]{19,}+(?=[.eE]))*+'
    rb"([0-9]{19,}+)"
)
# orjson's complaint about a number the exact parser may read (an integer too long even for a float).
_ORJSON_NUMBER_ERROR = "number is infinity"
# The standard library parser and encoder recurse once per level; orjson already refused anything
# nested deeper than 1024 levels, so this leaves room for the deepest message it accepted.
_EXACT_RECURSION_LIMIT = 3000


class _ParseExactly(Exception):
    """orjson may have turned an integer into a float in something we keep or check."""


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d: 0-9 only, not every Unicode digit
)


@dataclass(slots=True)  # not frozen: frozen dataclasses are several times slower to build
class Row:
    """One new_reports row, plus what the worker needs to report about it."""

    org_id: int
    account_number: int
    cluster: str
    report: bytes  # compact JSON of the shrunk report
    updated_at: datetime.datetime  # LastChecked in UTC, naive, microsecond precision
    kafka_offset: int
    request_id: str | None = None
    version: int | None = CURRENT_SCHEMA_VERSION

    @property
    def key(self) -> tuple[int, str, datetime.datetime]:
        """The primary key of new_reports."""
        return (self.org_id, self.cluster, self.updated_at)


@dataclass(slots=True, frozen=True)
class Rejection:
    reason: str
    detail: str
    org_id: int | None = None
    cluster: str | None = None
    request_id: str | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _has_wide_integer(value: bytes) -> bool:
    """Whether the JSON text holds, outside strings, an integer literal orjson cannot keep exact."""
    position = 0
    while (match := _LONG_INTEGER.match(value, position)) is not None:
        start, end = match.span(1)
        if end - start > 20:
            return True
        number = int(match.group(1))
        if value[start - 1:start] == b"-":
            number = -number
        if number not in _ORJSON_INT_RANGE:
            return True
        position = end
    return False


@contextlib.contextmanager
def _deep_recursion() -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _EXACT_RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _load_json(value: bytes, exact: bool) -> Any:
    if not exact:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as error:
            text = str(error)
            if text.startswith(_ORJSON_NUMBER_ERROR):
                raise _ParseExactly(text) from None  # e.g. an integer too long even for a float
            raise _Reject(INVALID_JSON, f"not valid JSON: {text.splitlines()[0][:200]}") from None
    try:
        with _deep_recursion():
            message = json.loads(value.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
            # Refuse what orjson refuses: lone surrogate escapes (\ud800) are not Unicode text.
            json.dumps(message, ensure_ascii=False).encode("utf-8")
        return message
    except (ValueError, RecursionError) as error:
        raise _Reject(INVALID_JSON, f"not valid JSON: {str(error).splitlines()[0][:200]}") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # e.g. 1e400, which orjson refuses and would write as null
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _dump_json(report: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(report)
    except orjson.JSONEncodeError:
        pass
    # Deeper nesting or wider integers than orjson writes.
    try:
        with _deep_recursion():
            return json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError) as error:
        raise _Reject(INVALID_JSON, f"Report cannot be written as JSON: {error}") from None


def _type_name(value: Any, wide: _WideIntegers | None) -> str:
    """The JSON value's Python type, for a rejection; an integer beyond 64 bits is named int, not float."""
    if wide is not None and type(value) is float and abs(value) >= _WIDENED_MAGNITUDE:
        wide.parse_exactly_if_found()
    return type(value).__name__


def _integer(message: dict[str, Any], field: str, wide: _WideIntegers | None) -> int:
    if field not in message:
        raise _Reject(MISSING_FIELD, f"{field} is missing")
    value = message[field]
    if type(value) is not int:
        raise _Reject(WRONG_TYPE, f"{field} must be an integer, got {_type_name(value, wide)}")
    if not 0 <= value <= PG_INTEGER_MAX:
        raise _Reject(OUT_OF_RANGE, f"{field} {value} is outside 0..{PG_INTEGER_MAX}")
    return value


def parse_timestamp(text: str) -> datetime.datetime:
    """RFC 3339 -> naive UTC datetime, nanoseconds rounded half-to-even to microseconds."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    nanoseconds = int((fraction or "0").ljust(9, "0"))
    micro, remainder = divmod(nanoseconds, 1000)
    if remainder > 500 or (remainder == 500 and micro % 2 == 1):
        micro += 1
    stamp = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    offset = datetime.timedelta()
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"invalid UTC offset in {text[:64]!r}")
        offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
    return stamp + datetime.timedelta(microseconds=micro) - offset


def shrink_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the keys the notification service never reads."""
    return {key: value for key, value in report.items() if key not in STRIPPED_REPORT_KEYS}


def parse_message(value: bytes | None, offset: int, now: datetime.datetime) -> Row | Rejection:
    """Validate, shrink and convert one message; ``now`` is naive UTC.

    orjson parses; in the rare message where it may have read an integer
    beyond 64 bits as a float, the standard library parses again, exactly.
    """
    try:
        return _parse(value, offset, now, exact=False)
    except _ParseExactly:
        return _parse(value, offset, now, exact=True)


class _WideIntegers:
    """Whether the message holds an integer beyond 64 bits: scanned once, on the first suspicion."""

    __slots__ = ("value", "found")

    def __init__(self, value: bytes) -> None:
        self.value = value
        self.found: bool | None = None

    def parse_exactly_if_found(self) -> None:
        if self.found is None:
            self.found = _has_wide_integer(self.value)
        if self.found:
            raise _ParseExactly


def _parse(value: bytes | None, offset: int, now: datetime.datetime, exact: bool) -> Row | Rejection:
    org_id = cluster = request_id = None
    try:
        if not value:
            raise _Reject(EMPTY_MESSAGE, "message has no value")
        wide = None if exact else _WideIntegers(value)  # exact: numbers are what was sent
        message = _load_json(value, exact)
        if not isinstance(message, dict):
            raise _Reject(NOT_AN_OBJECT, f"message is a JSON {_type_name(message, wide)}, not an object")
        request_id = message.get("RequestId")
        if request_id is not None and not isinstance(request_id, str):
            request_id = None
            raise _Reject(WRONG_TYPE, "RequestId must be a string")
        org_id = _integer(message, "OrgID", wide)
        account_number = _integer(message, "AccountNumber", wide)
        if "ClusterName" not in message:
            raise _Reject(MISSING_FIELD, "ClusterName is missing")
        cluster = message["ClusterName"]
        if not isinstance(cluster, str):
            cluster = None
            raise _Reject(WRONG_TYPE, "ClusterName must be a string")
        if not _UUID.fullmatch(cluster):
            shown, cluster = cluster[:64], None
            raise _Reject(INVALID_CLUSTER_NAME, f"ClusterName {shown!r} is not a UUID")
        if "Report" not in message:
            raise _Reject(MISSING_FIELD, "Report is missing")
        report = message["Report"]
        if not isinstance(report, dict):
            raise _Reject(WRONG_TYPE, f"Report must be an object, got {_type_name(report, wide)}")
        missing = [key for key in REQUIRED_REPORT_KEYS if key not in report]
        if missing:
            raise _Reject(INCOMPLETE_REPORT, f"Report lacks {', '.join(missing)}")
        version = message.get("Version")
        if version is not None and type(version) is not int:
            if wide is not None and type(version) is float and abs(version) >= _WIDENED_MAGNITUDE:
                wide.parse_exactly_if_found()
            raise _Reject(WRONG_TYPE, "Version must be an integer")
        shrunk = _dump_json(shrink_report(report))
        if wide is not None and _WIDE_NUMBER_MARK in shrunk:
            wide.parse_exactly_if_found()
        # Timestamp problems share one reason, whatever their form: the
        # original treats a missing or malformed LastChecked alike.
        if "LastChecked" not in message:
            raise _Reject(INVALID_TIMESTAMP, "LastChecked is missing")
        last_checked = message["LastChecked"]
        if not isinstance(last_checked, str):
            raise _Reject(INVALID_TIMESTAMP, f"LastChecked must be a string, got {_type_name(last_checked, wide)}")
        try:
            updated_at = parse_timestamp(last_checked)
        except (ValueError, OverflowError) as error:
            raise _Reject(INVALID_TIMESTAMP, f"LastChecked: {error}") from None
        if updated_at > now:
            raise _Reject(FUTURE_TIMESTAMP, f"got a message from the future: LastChecked {last_checked[:40]}")
        return Row(org_id, account_number, cluster, shrunk, updated_at, offset, request_id, version)
    except _Reject as rejection:
        return Rejection(rejection.reason, rejection.detail, org_id, cluster, request_id)
    except (_ParseExactly, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - the contract is "never raises" (but see the docstring)
        detail = f"unexpected input: {type(error).__name__}: {error}"
        return Rejection(INVALID_JSON, detail, org_id, cluster, request_id)
