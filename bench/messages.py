"""Production-like messages for real brokers: every message differs the way real ones do.

Built from the shipped sample reports (writer/sample_reports, the same bodies as
/work/shared/data/reports): each message takes a random set of the 20 real rule hits with
per-cluster details (node names, counts, versions), an ``analysis_metadata`` of its own, and
``info``/``pass`` lists of varying length drawn from ~150 rule keys. Deterministic per message
number, so the benchmark can rebuild any message instead of keeping them.

Uniform messages (``common.MessageFactory``, the same report every time) compress far better
than these; a backlog of them says little about a real broker's network and disk.
"""

from __future__ import annotations

import copy
import datetime
import random
from functools import cache

import orjson

from writer import sample_messages

_BASE = sample_messages.BASE_TIME
_VERSIONS = ["4.12.45", "4.13.30", "4.14.18", "4.15.9", "4.16.3"]
_RULE_FAMILIES = ["node", "operator", "etcd", "network", "storage", "image_registry", "auth", "monitoring",
                  "ingress", "machine_config", "sap", "vsphere", "aws", "upgrade", "certificate"]


@cache
def _hits() -> tuple[dict, ...]:
    """Every rule hit of the sample reports (20 distinct rules)."""
    hits = {}
    for size in sample_messages.SIZES:
        for hit in sample_messages.sample_report(size).get("reports", []):
            hits[hit["rule_id"]] = hit
    return tuple(hits.values())


def _node(rng: random.Random) -> str:
    domain = rng.choice(["ec2.internal", "us-east-2.compute.internal"])
    return f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}.{domain}"


def _vary(value, rng: random.Random):
    """The same shape with per-cluster values: numbers, node/host names, lists of different length."""
    if isinstance(value, dict):
        return {key: (item if key in ("type", "error_key") else _vary(item, rng)) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, str) for item in value):
            return [_vary(item, rng) for item in value[: rng.randint(1, len(value) + 2)] or value[:1]]
        return [_vary(item, rng) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return rng.randint(0, max(10, 2 * value))
    if isinstance(value, float):
        return round(value * rng.uniform(0.5, 1.5), 3)
    if isinstance(value, str) and ("." in value and not value.startswith("http")) or value in ("master", "worker"):
        return rng.choice([_node(rng), value])
    return value


@cache
def _rule_variants(kind: str) -> tuple[tuple[dict, ...], ...]:
    """150 rules of ``kind``, each in 4 variants (nodes, counts, tags): built once, shared by messages."""
    rng = random.Random(kind)
    rules = []
    for i in range(150):
        family = _RULE_FAMILIES[i % len(_RULE_FAMILIES)]
        rules.append(tuple(
            {
                "rule_id": f"ccx_rules_ocp.{kind}.{family}_{i:03d}|{kind.upper()}_{family.upper()}_{i:03d}",
                "component": f"ccx_rules_ocp.external.rules.{family}_{i:03d}.report",
                "type": kind,
                "key": f"{kind.upper()}_{family.upper()}_{i:03d}",
                "details": {"type": kind, f"{kind}_key": f"{family.upper()}_{i:03d}",
                            "nodes": [_node(rng) for _ in range(rng.randint(0, 3))], "count": rng.randint(0, 500)},
                "tags": rng.sample(["performance", "security", "fault_tolerance", "service_availability"],
                                   rng.randint(0, 2)),
                "links": {},
            }
            for _ in range(4)
        ))
    return tuple(rules)


def _rule_results(kind: str, rng: random.Random, count: int) -> list[dict]:
    rules = _rule_variants(kind)
    return [rules[i][rng.randrange(4)] for i in rng.sample(range(len(rules)), count)]


def varied_body(number: int) -> dict:
    """Message ``number``: cluster ``sample_messages.cluster_id(number)``, LastChecked as in sample_messages."""
    rng = random.Random(number * 7919 + 17)
    cluster = sample_messages.cluster_id(number)
    checked = _BASE + datetime.timedelta(seconds=number, microseconds=123456)
    started = checked - datetime.timedelta(seconds=rng.uniform(2, 40))
    version = rng.choice(_VERSIONS)
    hits = [copy.deepcopy(hit) for hit in rng.sample(_hits(), rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 7, 10, 14]))]
    for hit in hits:
        hit["details"] = _vary(hit["details"], rng)
    report = {
        "system": {"metadata": {"cluster_id": cluster}, "hostname": None},
        "fingerprints": [],
        "skips": [],
        "info": _rule_results("info", rng, rng.randint(2, 12)),
        "pass": _rule_results("pass", rng, rng.randint(15, 50)),
        "analysis_metadata": {
            "start": started.isoformat(),
            "finish": (started + datetime.timedelta(seconds=rng.uniform(0.5, 4))).isoformat(),
            "execution_context": "ccx_ocp_core.context.InsightsOperatorContext",
            "plugin_sets": {
                "insights-core": {"version": f"insights-core-3.0.{rng.randint(280, 320)}-1", "commit": "placeholder"},
                "ccx_rules_ocp": {"version": f"ccx_rules_ocp-2022.{rng.randint(6, 12)}.{rng.randint(1, 28)}-1",
                                  "commit": None},
                "ccx_ocp_core": {"version": f"ccx_ocp_core-2022.{rng.randint(6, 12)}.{rng.randint(1, 28)}-1",
                                 "commit": None},
                "cluster_version": {"version": version, "commit": None},
            },
        },
        "reports": hits,
    }
    return {
        "OrgID": 1000 + number % 97,
        "AccountNumber": 5000 + number % 97,
        "ClusterName": cluster,
        "Report": report,
        "LastChecked": checked.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        "Version": 2,
        "RequestId": f"{rng.getrandbits(64):016x}",
    }


def varied(number: int) -> bytes:
    return orjson.dumps(varied_body(number))
