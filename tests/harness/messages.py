"""Messages for the parsing tests: a small valid body to change field by field, and its parse outcome."""

from __future__ import annotations

import datetime

import orjson

from writer import message as m
from writer.message import Rejection, Row, parse_message

NOW = datetime.datetime(2030, 1, 1, 0, 0, 0)  # naive UTC, after every sample timestamp
CLUSTER = "5d5892d4-1f74-4ccf-91af-548dfc9767aa"
STRIPPED = {"system", "fingerprints", "skips", "info", "pass", "analysis_metadata"}


def valid(**changes: object) -> dict:
    """A small valid message; a change whose value is ``...`` removes that field."""
    body = {
        "OrgID": 1000,
        "AccountNumber": 5000,
        "ClusterName": CLUSTER,
        "Report": {
            "fingerprints": [],
            "reports": [{"rule_id": "r|K", "details": {"x": 1}}],
            "system": {"metadata": {}, "hostname": None},
            "skips": [],
            "info": [{"i": 1}],
            "pass": [{"p": 1}],
            "analysis_metadata": {"start": "2020-01-01"},
        },
        "LastChecked": "2020-01-23T16:15:59.478901Z",
        "Version": 2,
        "RequestId": "req-1",
    }
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def parse(body: dict | bytes, offset: int = 7, now: datetime.datetime = NOW) -> Row | Rejection:
    value = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_message(value, offset, now)


def rejected(body: dict | bytes, reason: str) -> Rejection:
    result = parse(body)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert result.reason in m.REJECTION_REASONS
    assert result.detail
    return result


def accepted(body: dict | bytes, **kwargs: object) -> Row:
    result = parse(body, **kwargs)
    assert isinstance(result, Row), result
    return result
