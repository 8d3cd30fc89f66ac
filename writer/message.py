"""What happens to one incoming message (SPEC section 3), as pure functions.

``parse_message(value, offset, now)`` takes the raw Kafka value and returns
either a ``Row`` ready to be stored or a ``Rejection`` with a reason code and
a one-line detail. Whatever the bytes are, the caller gets one of the two;
the only exception that escapes is MemoryError (the worker must crash and
consume the batch again, not reject a valid message as invalid).

The report is carried, not rebuilt, as the original does: it decodes
``Report`` as a map of raw JSON values (Go's ``map[string]*json.RawMessage``),
deletes the stripped keys and ``json.Marshal``s the rest. So here:

1. the message's UTF-8 is checked once (``isascii``, or a decode), and
   msgspec checks its grammar once, over the whole message, building Python
   objects only for the envelope fields; each value of ``Report`` stays the
   bytes it was sent as (``msgspec.Raw``), never parsed;
2. the kept keys are written sorted (``report_bytes``), each value compacted
   (whitespace outside strings removed, every other byte kept: numbers and
   escapes as sent) with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, as
   encoding/json's ``Marshal`` writes a RawMessage (``writer.go_json``).

Envelope field names match as in Go: exactly, else case-insensitively
(``orgid`` fills ``OrgID``). A message whose top level holds any key besides
the seven fields and the pipeline's ``Metadata`` is decoded again, with its
``Report`` (``_decode_any_keys``: 30-40 µs instead of 19); the usual message
is decoded once.

Limits, each for a reason:

- nesting deeper than ``MAX_NESTING`` levels is ``invalid_json``: the
  original's decoder refuses it (encoding/json's scanner), and msgspec
  recurses once per level, so a deeper message would only exhaust the stack;
- size: none of its own; Kafka bounds a message (the broker's
  ``message.max.bytes``), and nothing here grows faster than the message.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from writer.go_json import compact_value, fold_name, object_key

CURRENT_SCHEMA_VERSION = 2
PG_INTEGER_MAX = 2**31 - 1
REQUIRED_REPORT_KEYS = ("fingerprints", "reports", "system")
STRIPPED_REPORT_KEYS = ("system", "fingerprints", "skips", "info", "pass", "analysis_metadata")
MAX_NESTING = 10_000  # encoding/json's maxNestingDepth (scanner.go)

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
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d: 0-9 only, not every Unicode digit
)
# The usual LastChecked: UTC, whole microseconds (nothing to round).
_RFC3339_UTC_MICROSECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z", re.ASCII)
_STRIPPED = frozenset(STRIPPED_REPORT_KEYS)
_TOO_DEEP = f"not valid JSON: depth limit exceeded (nested deeper than {MAX_NESTING} levels)"
# Valid JSON only: a string (skipped whole, with its escaped quotes) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


@dataclass(slots=True)  # not frozen: frozen dataclasses are several times slower to build
class Row:
    """One new_reports row, plus what the worker needs to report about it."""

    org_id: int
    account_number: int
    cluster: str
    report: bytes  # the kept part of Report, as the original writes it
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


_FIELD_NAMES = {
    "org_id": "OrgID",
    "account_number": "AccountNumber",
    "cluster": "ClusterName",
    "report": "Report",
    "last_checked": "LastChecked",
    "version": "Version",
    "request_id": "RequestId",
}
_ATTRIBUTE = {name: attribute for attribute, name in _FIELD_NAMES.items()}
_ATTRIBUTE_BY_FOLDED_NAME = {fold_name(name): attribute for name, attribute in _ATTRIBUTE.items()}


# Typed loosely (Any): the checks in _parse give each wrong value its reason code. gc=False: decoded JSON
# values cannot form reference cycles.
class _Envelope(msgspec.Struct, rename=_FIELD_NAMES | {"metadata": "Metadata"}, forbid_unknown_fields=True,
                gc=False):
    """The seven fields as _parse reads them (and the pipeline's Metadata, never read)."""

    org_id: Any = msgspec.UNSET
    account_number: Any = msgspec.UNSET
    cluster: Any = msgspec.UNSET
    report: Any = msgspec.UNSET  # dict[str, msgspec.Raw] once decoded; anything else in _decode_any_keys
    last_checked: Any = msgspec.UNSET
    version: Any = None
    request_id: Any = None
    metadata: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # not read


class _UsualMessage(_Envelope, rename=_FIELD_NAMES | {"metadata": "Metadata"}, forbid_unknown_fields=True,
                    gc=False):
    """The usual message, in one pass: names spelled exactly, Report an object; anything else fails validation."""

    report: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


_USUAL_DECODER = msgspec.json.Decoder(_UsualMessage)
_TOP_LEVEL_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_REPORT_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUE_DECODER = msgspec.json.Decoder()


def _invalid_json(error: Exception, where: str = "") -> _Reject:
    return _Reject(INVALID_JSON, f"not valid JSON: {where}{str(error).splitlines()[0][:200]}")


def _decode(value: bytes) -> _Envelope:
    """The envelope, its Report a dict of raw values when it is an object. RecursionError escapes (nesting)."""
    if not value.isascii():
        try:
            value.decode("utf-8")  # msgspec checks UTF-8 only in the strings it builds
        except UnicodeDecodeError as error:
            raise _invalid_json(error) from None
    try:
        return _USUAL_DECODER.decode(value)
    except msgspec.ValidationError:  # another key, a field's value msgspec cannot hold, Report not an object...
        return _decode_any_keys(value)
    except msgspec.DecodeError as error:
        raise _invalid_json(error) from None


def _decode_any_keys(value: bytes) -> _Envelope:
    """Any message: its top-level keys matched to the fields as Go matches them, each value decoded on its own.

    A field named by several keys (OrgID and orgid) takes the value of the last of them in the decoded
    object's order, and several Report objects are merged in that order (README, "Switching over")."""
    try:
        top = _TOP_LEVEL_DECODER.decode(value)
    except msgspec.ValidationError:  # the top level is not an object
        try:
            document = _VALUE_DECODER.decode(value)
        except msgspec.DecodeError as error:  # ValidationError too: a number no Python float holds (1e400)
            raise _invalid_json(error) from None
        raise _Reject(NOT_AN_OBJECT, f"message is a JSON {type(document).__name__}, not an object") from None
    except msgspec.DecodeError as error:
        raise _invalid_json(error) from None
    envelope = _Envelope()
    for key, raw in top.items():
        attribute = _ATTRIBUTE.get(key) or _ATTRIBUTE_BY_FOLDED_NAME.get(fold_name(key))
        if attribute is None:
            continue
        if attribute == "report":
            envelope.report = _merged_report(envelope.report, raw)
            continue
        try:
            setattr(envelope, attribute, _VALUE_DECODER.decode(raw))
        except msgspec.ValidationError as error:  # a number no Python number holds (1e400, 5000 digits)
            raise _invalid_json(error, f"{_FIELD_NAMES[attribute]}: ") from None
    return envelope


def _merged_report(earlier: Any, raw: msgspec.Raw) -> Any:
    """Report given once more: Go decodes a second object into the same map (keys merged, the later wins)."""
    try:
        report = _REPORT_DECODER.decode(raw)
    except msgspec.ValidationError:  # not an object: decoded whole, for the type named in the rejection
        try:
            return _VALUE_DECODER.decode(raw)
        except msgspec.ValidationError as error:
            raise _invalid_json(error, "Report: ") from None
    if isinstance(earlier, dict):
        return earlier | report
    return report


def _integer(value: Any, field: str) -> int:
    if value is msgspec.UNSET:
        raise _Reject(MISSING_FIELD, f"{field} is missing")
    if type(value) is not int:
        raise _Reject(WRONG_TYPE, f"{field} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= PG_INTEGER_MAX:
        raise _Reject(OUT_OF_RANGE, f"{field} {value} is outside 0..{PG_INTEGER_MAX}")
    return value


def parse_timestamp(text: str) -> datetime.datetime:
    """RFC 3339 -> naive UTC datetime, nanoseconds rounded half-to-even to microseconds."""
    if _RFC3339_UTC_MICROSECONDS.fullmatch(text):  # the usual form, exact as it is: a tenth of the general path
        return datetime.datetime.fromisoformat(text[:-1])
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
    return {key: value for key, value in report.items() if key not in _STRIPPED}


def report_bytes(report: dict[str, msgspec.Raw]) -> bytes:
    """The kept keys of ``report`` as Go's json.Marshal writes a map of RawMessage: sorted, values compacted."""
    kept = [key for key in report if key not in _STRIPPED]
    if len(kept) == 1:  # the usual report keeps only "reports"
        key = kept[0]
        return b"{" + object_key(key) + compact_value(report[key]) + b"}"
    kept.sort()  # code point order, which is the byte order of UTF-8 (Go sorts the keys' bytes)
    return b"{" + b",".join([object_key(key) + compact_value(report[key]) for key in kept]) + b"}"


def nested_deeper_than(value: bytes, limit: int) -> bool:
    """Whether the JSON text nests more than ``limit`` arrays and objects inside one another."""
    if value.count(b"[") + value.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(value):
        if match.end() - match.start() > 1:
            continue  # a string
        if value[match.start()] in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


@contextlib.contextmanager
def _recursion_room() -> Iterator[None]:
    """msgspec spends one level of Python's recursion limit per nesting level: room for MAX_NESTING, then back."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, MAX_NESTING + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def parse_message(value: bytes | None, offset: int, now: datetime.datetime) -> Row | Rejection:
    """Validate, shrink and convert one message; ``now`` is naive UTC."""
    try:
        return _parse(value, offset, now)
    except RecursionError:
        pass
    # Nested deeper than the recursion left allows: count the levels, decode again if within the limit.
    if value is None or nested_deeper_than(value, MAX_NESTING):
        return Rejection(INVALID_JSON, _TOO_DEEP)
    with _recursion_room():
        try:
            return _parse(value, offset, now)
        except RecursionError:  # a C recursion limit below MAX_NESTING (Python 3.12+)
            return Rejection(INVALID_JSON, _TOO_DEEP)


def _parse(value: bytes | None, offset: int, now: datetime.datetime) -> Row | Rejection:
    org_id = cluster = request_id = None
    try:
        if not value:
            raise _Reject(EMPTY_MESSAGE, "message has no value")
        message = _decode(value)
        request_id = message.request_id
        if request_id is not None and not isinstance(request_id, str):
            request_id = None
            raise _Reject(WRONG_TYPE, "RequestId must be a string")
        org_id = _integer(message.org_id, "OrgID")
        account_number = _integer(message.account_number, "AccountNumber")
        cluster = message.cluster
        if cluster is msgspec.UNSET:
            cluster = None
            raise _Reject(MISSING_FIELD, "ClusterName is missing")
        if not isinstance(cluster, str):
            cluster = None
            raise _Reject(WRONG_TYPE, "ClusterName must be a string")
        if not _UUID.fullmatch(cluster):
            shown, cluster = cluster[:64], None
            raise _Reject(INVALID_CLUSTER_NAME, f"ClusterName {shown!r} is not a UUID")
        report = message.report
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
        # Timestamp problems share one reason, whatever their form: the
        # original treats a missing or malformed LastChecked alike.
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
        return Row(org_id, account_number, cluster, report_bytes(report), updated_at, offset, request_id, version)
    except _Reject as rejection:
        return Rejection(rejection.reason, rejection.detail, org_id, cluster, request_id)
    except (RecursionError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - the contract is "never raises" (but see the docstring)
        detail = f"unexpected input: {type(error).__name__}: {error}"
        return Rejection(INVALID_JSON, detail, org_id, cluster, request_id)
