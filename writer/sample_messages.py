"""Messages for ccx.ocp.results built from the shipped sample reports.

Used by the quick start, the tests and the benchmarks. The reports in
``sample_reports/`` hold ``analysis_metadata`` and ``reports`` only; a message
wraps them with the keys the pipeline adds (``system``, ``fingerprints``,
``skips``, and realistic ``info`` and ``pass`` lists that the writer strips).
"""

from __future__ import annotations

import datetime
import uuid
from functools import cache
from importlib import resources

import orjson

SIZES = ("analysis_metadata_only", "small_size", "middle_size", "large_size")
BASE_TIME = datetime.datetime(2026, 1, 1, 10, 0, 0, tzinfo=datetime.UTC)


@cache
def sample_report(size: str = "middle_size") -> dict:
    if size not in SIZES:
        raise ValueError(f"unknown report size {size!r}; choose one of {', '.join(SIZES)}")
    return orjson.loads(resources.files("writer").joinpath("sample_reports", f"{size}.json").read_bytes())


def _rule_results(kind: str, count: int) -> list[dict]:
    """Entries like the ones the rules engine writes into ``info`` and ``pass``."""
    return [
        {
            "rule_id": f"ccx_rules_ocp.{kind}.rule_{i:03d}|{kind.upper()}_KEY_{i:03d}",
            "component": f"ccx_rules_ocp.external.rules.rule_{i:03d}.report",
            "type": kind,
            "key": f"{kind.upper()}_KEY_{i:03d}",
            "details": {"type": kind, "info_key" if kind == "info" else "pass_key": f"KEY_{i:03d}", "nodes": i % 7},
            "tags": [],
            "links": {},
        }
        for i in range(count)
    ]


@cache
def full_report(size: str = "middle_size", info: int = 8, passed: int = 40) -> dict:
    report = dict(sample_report(size))
    report.setdefault("reports", [])
    report["system"] = {"metadata": {"cluster_id": "placeholder"}, "hostname": None}
    report["fingerprints"] = []
    report["skips"] = []
    report["info"] = _rule_results("info", info)
    report["pass"] = _rule_results("pass", passed)
    return report


def cluster_id(number: int) -> str:
    return str(uuid.UUID(int=(0x5D5892D4_1F74_4CCF_91AF_000000000000 + number)))


def message(number: int, size: str = "middle_size", org_id: int | None = None,
            last_checked: datetime.datetime | None = None, request_id: str | None = None) -> dict:
    """Message ``number``: a distinct cluster and timestamp, so a distinct primary key."""
    when = last_checked or BASE_TIME + datetime.timedelta(seconds=number, microseconds=123456)
    report = dict(full_report(size))
    cluster = cluster_id(number)
    report["system"] = {"metadata": {"cluster_id": cluster}, "hostname": None}
    body = {
        "OrgID": org_id if org_id is not None else 1000 + number % 97,
        "AccountNumber": 5000 + number % 97,
        "ClusterName": cluster,
        "Report": report,
        "LastChecked": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        "Version": 2,
    }
    if request_id is not None:
        body["RequestId"] = request_id
    return body


def encoded(number: int, size: str = "middle_size", **kwargs) -> bytes:
    return orjson.dumps(message(number, size, **kwargs))


def invalid_messages(count: int) -> list[tuple[bytes, str]]:
    """``count`` invalid messages, cycling through kinds, with the reason each must get."""
    valid = message(10**9)
    kinds = [
        (b"", "empty_message"),
        (b"{not json", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (orjson.dumps({k: v for k, v in valid.items() if k != "OrgID"}), "missing_field"),
        (orjson.dumps({**valid, "OrgID": "1000"}), "wrong_type"),
        (orjson.dumps({**valid, "OrgID": 2**31}), "out_of_range"),
        (orjson.dumps({**valid, "ClusterName": "not-a-uuid"}), "invalid_cluster_name"),
        (orjson.dumps({**valid, "Report": {"reports": []}}), "incomplete_report"),
        (orjson.dumps({**valid, "LastChecked": "yesterday"}), "invalid_timestamp"),
        (orjson.dumps({**valid, "LastChecked": "2999-01-01T00:00:00Z"}), "future_timestamp"),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]
