"""encode_rows and the key bookkeeping of a batch (unique_by_key, split_repeats), without a database
(what PostgreSQL reads back from the encoding: tests/integration/test_copy_rows.py)."""

from __future__ import annotations

import datetime
import struct

from tests.harness.storage import make_row, row_with
from writer.copy_rows import encode_rows, unique_by_key


def decode_copy(data: bytes) -> list[tuple]:
    """PostgreSQL's binary COPY format read back, field by field (the layout of its documentation)."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00" and data[11:19] == b"\x00" * 8  # signature, flags, extension
    rows, position = [], 19
    while True:
        (count,) = struct.unpack_from(">h", data, position)
        position += 2
        if count == -1:
            assert position == len(data)  # the trailer ends the data
            return rows
        fields = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", data, position)
            fields.append(data[position + 4:position + 4 + length])
            position += 4 + length
        rows.append(tuple(fields))


def test_encoding_layout():
    when = datetime.datetime(2000, 1, 1, 0, 0, 1, 5)
    rows = [make_row(1, b'{"reports":["a\\\\b\\t\\u0000"]}', org_id=7, account_number=2**31 - 1,
                     updated_at=when, kafka_offset=2**63 - 1)]
    [fields] = decode_copy(encode_rows(rows))
    org_id, account_number, cluster, report, updated_at, offset = fields
    assert struct.unpack(">i", org_id) == (7,) and struct.unpack(">i", account_number) == (2**31 - 1,)
    assert cluster == rows[0].cluster.encode("ascii")
    assert report == rows[0].report  # as it is: no escaping in the binary format
    assert struct.unpack(">q", updated_at) == (1_000_005,)  # microseconds since 2000-01-01
    assert struct.unpack(">q", offset) == (2**63 - 1,)


def test_timestamps_before_2000_are_negative_microseconds():
    [fields] = decode_copy(encode_rows([make_row(1, b"{}", updated_at=datetime.datetime(1, 1, 1))]))
    assert struct.unpack(">q", fields[4]) == (-63_082_281_600_000_000,)


def test_no_rows_is_header_and_trailer():
    assert decode_copy(encode_rows([])) == []


def test_unique_by_key_keeps_the_first_occurrence():
    first = row_with(1, 1, 1, offset=10)
    repeat = row_with(1, 1, 1, offset=11)  # same key, another offset
    other_org = row_with(2, 1, 1, offset=12)
    other_cluster = row_with(1, 2, 1, offset=13)
    other_time = row_with(1, 1, 2, offset=14)
    repeat_again = row_with(1, 1, 1, offset=15)
    repeat_other = row_with(2, 1, 1, offset=16)
    unique, repeats = unique_by_key([first, repeat, other_org, other_cluster, other_time, repeat_again, repeat_other])
    assert [r.kafka_offset for r in unique] == [10, 12, 13, 14]
    assert [r.kafka_offset for r in repeats] == [11, 15, 16]
    assert unique[0] is first


def test_unique_by_key_ignores_other_columns():
    # account_number, report and offset are not part of the key.
    a = make_row(1, b'{"a":1}')
    b = make_row(1, b'{"b":2}', account_number=9, kafka_offset=99)
    unique, repeats = unique_by_key([a, b])
    assert unique == [a] and repeats == [b]


def test_unique_by_key_empty_and_all_distinct():
    assert unique_by_key([]) == ([], [])
    rows = [make_row(i, b"{}") for i in range(1000)]
    unique, repeats = unique_by_key(rows)
    assert unique == rows and repeats == []


def test_split_repeats_retries_only_the_keys_the_database_refused():
    from writer.copy_rows import split_repeats
    from writer.message import Row

    when = datetime.datetime(2024, 1, 1)
    cluster = "00000000-0000-0000-0000-00000000000a"
    first_a, second_a, third_a = (Row(1, 1, cluster, b"{}", when, offset) for offset in (1, 2, 3))
    first_b, second_b = (Row(2, 1, cluster, b"{}", when, offset) for offset in (4, 5))
    unique, repeats = unique_by_key([first_a, first_b, second_a, second_b, third_a])
    assert unique == [first_a, first_b] and repeats == [second_a, second_b, third_a]
    retry, duplicates = split_repeats(repeats, [(first_a, "refused")])
    assert retry == [second_a, third_a]  # the next round writes second_a, keeps third_a as its repeat
    assert duplicates == [second_b]
    assert split_repeats(repeats, []) == ([], repeats)
