"""encode_rows: the bytes PostgreSQL reads back exactly, checked against a real new_reports table (the
encoding alone: tests/unit/test_copy_encoding.py)."""

from __future__ import annotations

import datetime
import json

import orjson
import pytest

from tests.harness.storage import make_row, row_with
from writer.copy_rows import COLUMNS, COPY_OPTIONS, encode_rows, unique_by_key
from writer.message import Row, parse_message
from writer.migrations import init_schema
from writer.sample_messages import SIZES, cluster_id, encoded

NOW = datetime.datetime(2030, 1, 1)
CLUSTER = "5d5892d4-1f74-4ccf-91af-548dfc9767aa"

NASTY_VALUES = [
    "back\\slash",
    "\\",
    "\\\\",
    "ends with backslash \\",
    "\\N",  # the text-format NULL marker, as content
    "\\.",  # the end-of-data marker, as content
    'double "quotes" inside',
    "single 'quotes'",
    "tab\there",
    "newline\nhere",
    "crlf\r\nhere",
    "literal backslash-n: \\n and backslash-t: \\t",
    "form\x0cfeed, bell\x07, escape\x1b, vertical\x0btab, backspace\x08",
    "nul\x00inside",
    "\x00",
    "žluťoučký kůň úpěl ďábelské ódy",
    "日本語のテキスト",
    "emoji \U0001F600\U0001F680 and flags \U0001F1E8\U0001F1FF",
    "line separator \u2028 paragraph \u2029",
    "bom \ufeff and replacement \ufffd",
    "\x7f delete",
    "",
]


@pytest.fixture
def connection(database):
    with database.connect() as connection:
        init_schema(connection)
        yield connection


def copy_and_read(connection, rows: list[Row]) -> list[tuple]:
    connection.execute("DELETE FROM new_reports")
    statement = f"COPY new_reports ({', '.join(COLUMNS)}) FROM STDIN {COPY_OPTIONS}"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(encode_rows(rows))
    return connection.execute(
        f"SELECT {', '.join(COLUMNS)} FROM new_reports ORDER BY kafka_offset"
    ).fetchall()


def expected(row: Row) -> tuple:
    return (row.org_id, row.account_number, row.cluster, row.report.decode("utf-8"), row.updated_at, row.kafka_offset)


def assert_round_trip(connection, rows: list[Row]) -> None:
    stored = copy_and_read(connection, rows)
    assert len(stored) == len(rows)
    for row, back in zip(sorted(rows, key=lambda r: r.kafka_offset), stored, strict=True):
        assert back == expected(row)
        # The column holds the JSON text byte for byte, and it is still the same JSON.
        assert back[3].encode("utf-8") == row.report
        assert json.loads(back[3]) == json.loads(row.report)


@pytest.mark.parametrize("text", NASTY_VALUES)
def test_nasty_string_in_report_reads_back_exactly(connection, text):
    report = orjson.dumps({"reports": [{"details": {"text": text, text: 1}}]})
    assert_round_trip(connection, [make_row(1, report)])


def test_all_nasty_strings_in_one_batch(connection):
    rows = [make_row(i, orjson.dumps({"reports": [text, {"k": text}]})) for i, text in enumerate(NASTY_VALUES)]
    assert_round_trip(connection, rows)


def test_standard_library_json_output_reads_back_exactly(connection):
    # The writer falls back to json.dumps(ensure_ascii=False) for very wide integers and deep nesting.
    report = {"reports": [{"n": 2**80, "text": text} for text in NASTY_VALUES]}
    data = json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert_round_trip(connection, [make_row(1, data)])
    assert json.loads(copy_and_read(connection, [make_row(1, data)])[0][3]) == report


def test_rows_from_parse_message_read_back_exactly(connection):
    rows = []
    for number, text in enumerate(NASTY_VALUES):
        body = {
            "OrgID": number,
            "AccountNumber": number * 3,
            "ClusterName": cluster_id(number),
            "Report": {"fingerprints": [], "system": {}, "reports": [{"details": {"text": text}}], "wide": 2**70},
            "LastChecked": f"2021-06-0{1 + number % 9}T12:34:56.{number:03d}456789+02:00",
        }
        row = parse_message(json.dumps(body).encode(), number, NOW)
        assert isinstance(row, Row), row
        rows.append(row)
    for number, size in enumerate(SIZES, start=100):
        row = parse_message(encoded(number, size), number, NOW)
        assert isinstance(row, Row)
        rows.append(row)
    assert_round_trip(connection, rows)


def test_escaped_json_sequences_stay_escaped(connection):
    # JSON text holding escapes, not the characters: \n \t \" \\ \u0000 \/ \ud83d\ude00 as written.
    report = b'{"reports":["a\\nb","c\\td","q\\"q","s\\\\s","z\\u0000z","slash\\/","\\ud83d\\ude00"]}'
    assert_round_trip(connection, [make_row(1, report)])
    stored = copy_and_read(connection, [make_row(1, report)])[0][3]
    assert stored == report.decode()
    assert "\n" not in stored and "\t" not in stored and "\x00" not in stored
    assert json.loads(stored)["reports"] == ["a\nb", "c\td", 'q"q', "s\\s", "z\x00z", "slash/", "\U0001F600"]


@pytest.mark.parametrize(
    "when",
    [
        datetime.datetime(2020, 1, 23, 16, 15, 59),  # no fraction: isoformat omits it
        datetime.datetime(2020, 1, 23, 16, 15, 59, 1),
        datetime.datetime(2020, 1, 23, 16, 15, 59, 999999),
        datetime.datetime(1, 1, 1, 0, 0, 0),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
        datetime.datetime(2024, 2, 29, 0, 0, 0, 500000),
    ],
)
def test_timestamps_read_back_exactly(connection, when):
    assert_round_trip(connection, [make_row(1, b'{"reports":[]}', updated_at=when)])


def test_extreme_numbers_read_back_exactly(connection):
    rows = [
        make_row(1, b'{"reports":[]}', org_id=0, account_number=0, kafka_offset=0),
        make_row(2, b'{"reports":[]}', org_id=2**31 - 1, account_number=2**31 - 1, kafka_offset=2**63 - 1),
        make_row(3, b'{"reports":[]}', cluster=CLUSTER.upper(), kafka_offset=12345678901),
    ]
    assert_round_trip(connection, rows)


def test_large_batch_reads_back_exactly(connection):
    rows = [make_row(i, orjson.dumps({"reports": [NASTY_VALUES[i % len(NASTY_VALUES)]] * (i % 5)}))
            for i in range(1000)]
    assert_round_trip(connection, rows)


def test_unique_rows_copy_without_key_conflicts(connection):
    rows = [row_with(i % 7, i % 3, i % 5, offset=i) for i in range(200)]
    unique, repeats = unique_by_key(rows)
    assert len(unique) + len(repeats) == 200
    stored = copy_and_read(connection, unique)  # a duplicate key would fail the COPY
    assert len(stored) == len(unique) == len({r.key for r in rows})


