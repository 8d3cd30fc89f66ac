"""Micro-benchmarks of the hot pure functions (pytest-benchmark).

They run as ordinary tests by default (pyproject's addopts has --benchmark-disable: each
function runs once and its result is checked). To measure:

    .venv/bin/python -m pytest bench/test_micro.py --benchmark-enable
"""

from __future__ import annotations

import datetime
import json

import orjson
import pytest

from writer.copy_rows import encode_rows, unique_by_key
from writer.message import STRIPPED_REPORT_KEYS, Row, parse_message
from writer.sample_messages import SIZES, encoded, full_report

NOW = datetime.datetime(2030, 1, 1)


@pytest.mark.parametrize("size", SIZES)
def test_parse_message(benchmark, size):
    value = encoded(7, size)
    benchmark.extra_info["message_bytes"] = len(value)
    row = benchmark(parse_message, value, 7, NOW)
    assert isinstance(row, Row), row
    assert row.kafka_offset == 7
    stored = orjson.loads(row.report)
    assert not set(STRIPPED_REPORT_KEYS) & set(stored)
    assert stored["reports"] == full_report(size)["reports"]
    benchmark.extra_info["report_bytes"] = len(row.report)


def test_parse_message_production_format(benchmark):
    """As the pipeline writes a message (json.dumps: spaces after separators, ASCII escapes, Metadata, a newline):
    every kept value is compacted; a key beside the seven fields and Metadata takes the second decode."""
    body = orjson.loads(encoded(7, "middle_size")) | {"Metadata": {"gathering_time": "2026-01-01T10:00:00Z"}}
    body["Report"]["reports"].append({"counter": 2**70, "text": "a <b> & é"})
    value = (json.dumps(body) + "\n").encode()
    row = benchmark(parse_message, value, 7, NOW)
    assert isinstance(row, Row), row
    assert b'{"counter":1180591620717411303424,"text":"a \\u003cb\\u003e \\u0026 \\u00e9"}' in row.report


def test_parse_message_rejection(benchmark):
    value = encoded(7, "middle_size").replace(b'"LastChecked":"2026', b'"LastChecked":"2999')
    result = benchmark(parse_message, value, 7, NOW)
    assert not isinstance(result, Row)
    assert result.reason == "future_timestamp"


def batch(count: int, size: str = "middle_size") -> list[Row]:
    rows = [parse_message(encoded(number, size), number, NOW) for number in range(count)]
    assert all(isinstance(row, Row) for row in rows)
    return rows


@pytest.fixture(scope="module")
def rows_1000() -> list[Row]:
    return batch(1000)


def test_encode_rows_1000(benchmark, rows_1000):
    data = benchmark(encode_rows, rows_1000)
    benchmark.extra_info["copy_bytes"] = len(data)
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    assert all(row.report in data for row in rows_1000[:10])  # as they are: the binary format escapes nothing


def test_unique_by_key_1000(benchmark, rows_1000):
    with_repeats = rows_1000[:900] + rows_1000[:100]  # 100 replays at the end
    unique, repeats = benchmark(unique_by_key, with_repeats)
    assert unique == rows_1000[:900]
    assert repeats == rows_1000[:100]
