"""Rows -> the bytes of a PostgreSQL text-format COPY, built in the worker, not the server.

Text format rules: columns separated by a tab, rows ended by a newline, and a
backslash starts an escape. The report is JSON, whose encoder escapes every
control character (tab, newline and CR included), so only the backslash needs
doubling; cluster is a validated UUID and the other columns are numbers and
timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable

from writer.message import Row

COLUMNS = ("org_id", "account_number", "cluster", "report", "updated_at", "kafka_offset")


def encode_rows(rows: Iterable[Row]) -> bytes:
    parts: list[bytes] = []
    append = parts.append
    for row in rows:
        append(
            b"%d\t%d\t%s\t%s\t%s\t%d\n"
            % (
                row.org_id,
                row.account_number,
                row.cluster.encode("ascii"),
                row.report.replace(b"\\", b"\\\\"),
                row.updated_at.isoformat(" ").encode("ascii"),
                row.kafka_offset,
            )
        )
    return b"".join(parts)


def unique_by_key(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Split rows into (first occurrence of each primary key, later repeats) keeping order."""
    seen = set()
    unique, repeats = [], []
    for row in rows:
        key = row.key
        if key in seen:
            repeats.append(row)
        else:
            seen.add(key)
            unique.append(row)
    return unique, repeats


def split_repeats(repeats: list[Row], refused: list[tuple[Row, str]]) -> tuple[list[Row], list[Row]]:
    """Repeats of keys whose written row the database refused (to be tried next), and the others
    (duplicates of a stored row); order kept."""
    refused_keys = {row.key for row, _ in refused}
    retry: list[Row] = []
    duplicates: list[Row] = []
    for row in repeats:
        (retry if row.key in refused_keys else duplicates).append(row)
    return retry, duplicates
