"""Writing batches of rows into new_reports.

What a batch write guarantees (``BatchWriter.write``):

- all rows of the batch are written in ONE transaction, with COPY;
- idempotent: a row whose primary key (org_id, cluster, updated_at) is
  already stored is skipped and counted as a duplicate, never an error and
  never a second row;
- a row the database refuses for its data (constraint, trigger, encoding) is
  isolated by splitting the batch under savepoints and returned as refused;
  every other row of the batch is stored in the same transaction;
- a transient failure (connection lost, server restarting, serialization
  failure, ...) raises ``TransientDatabaseError`` with nothing committed; the
  caller retries the same batch;
- any other failure raises ``FatalDatabaseError``: the caller must stop
  without committing offsets, since retrying or rejecting would be wrong;
  so does a batch of ``REFUSE_ALL_THRESHOLD`` or more rows that the database
  refuses entirely (a broken trigger or schema, not bad data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, sql

from writer.copy_rows import COLUMNS, encode_rows
from writer.database import safe_error_text
from writer.message import Row

log = logging.getLogger(__name__)

STAGING_TABLE = "new_reports_incoming"
# After a batch with key conflicts, this many batches go straight to the
# staging path before the direct COPY is tried again.
STAGING_STREAK = 20
# A batch at least this large whose rows are ALL refused means the database,
# not the data, is wrong.
REFUSE_ALL_THRESHOLD = 10

_COPY_DIRECT = sql.SQL("COPY new_reports ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
_COPY_STAGING = sql.SQL("COPY {} ({}) FROM STDIN").format(
    sql.Identifier(STAGING_TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
_CREATE_STAGING = sql.SQL(
    "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE new_reports INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
).format(sql.Identifier(STAGING_TABLE))
_MERGE_STAGING = sql.SQL(
    "WITH inserted AS (INSERT INTO new_reports ({cols}) SELECT {cols} FROM {staging} ON CONFLICT DO NOTHING"
    " RETURNING octet_length(report) AS size) SELECT count(*), coalesce(sum(size), 0) FROM inserted"
).format(
    cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), staging=sql.Identifier(STAGING_TABLE)
)
_CLEAR_STAGING = sql.SQL("TRUNCATE {}").format(sql.Identifier(STAGING_TABLE))


class TransientDatabaseError(Exception):
    """The batch was not written but may be on a later attempt."""


class FatalDatabaseError(Exception):
    """The batch cannot be written and retrying will not help (schema missing, permission, ...)."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)):
        return True
    if isinstance(error, psycopg.InterfaceError):  # the connection is closed or broken
        return True
    state = getattr(error, "sqlstate", None)
    if state is None:
        return isinstance(error, psycopg.OperationalError)  # network-level failure, no server answer
    # 08: connection exception, 53: insufficient resources, 57P: shutdown/restart, 40: rollback
    return state.startswith(("08", "53", "57P", "40")) or state == "57014"  # 57014: statement canceled


def is_row_refusal(error: BaseException) -> bool:
    """The database refused the content of some row(s): data exception, integrity, trigger."""
    if isinstance(error, errors.UniqueViolation):
        return False
    return isinstance(error, (psycopg.DataError, psycopg.IntegrityError, errors.RaiseException))


@dataclass
class WriteResult:
    stored: int = 0
    stored_bytes: int = 0
    duplicates: int = 0
    refused: list[tuple[Row, str]] = field(default_factory=list)


class BatchWriter:
    """Owns one database connection and writes batches through it."""

    def __init__(self, conninfo: str, log_sql: bool = False) -> None:
        self._conninfo = conninfo
        self._connection: psycopg.Connection | None = None
        self._staging_batches_left = 0
        self._log_sql = log_sql

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed or self._connection.broken:
            self.close()
            self._connection = self._open()
        return self._connection

    def _open(self) -> psycopg.Connection:
        connection = psycopg.connect(self._conninfo, autocommit=True)
        try:
            connection.execute(_CREATE_STAGING)
        except BaseException:
            connection.close()  # not kept alive by the traceback the caller may hold
            raise
        connection.autocommit = False
        return connection

    def write(self, rows: list[Row]) -> WriteResult:
        """Write ``rows`` (unique primary keys) in one transaction; see the module docstring."""
        result = WriteResult()
        if not rows:
            return result
        try:
            connection = self._connect()
            with connection.transaction():
                self._write_isolating(connection, rows, result)
        except psycopg.Error as error:
            if self._connection is not None and self._connection.broken:
                self.close()
            if is_transient(error):
                raise TransientDatabaseError(safe_error_text(error)) from error
            raise FatalDatabaseError(safe_error_text(error)) from error
        if len(result.refused) == len(rows) >= REFUSE_ALL_THRESHOLD:
            # Every row of a sizeable batch refused: a broken trigger or schema,
            # not bad data. Rejecting them all would drop the stream, so stop.
            raise FatalDatabaseError(
                f"the database refused all {len(rows)} rows of a batch (first: {result.refused[0][1]}); "
                "stopping instead of rejecting them all"
            )
        if result.duplicates:
            self._staging_batches_left = STAGING_STREAK
        elif self._staging_batches_left:
            self._staging_batches_left -= 1
        return result

    def _write_isolating(self, connection: psycopg.Connection, rows: list[Row], result: WriteResult) -> None:
        try:
            with connection.transaction():  # a savepoint inside the batch transaction
                stored, stored_bytes = self._write_once(connection, rows)
        except psycopg.Error as error:
            if not is_row_refusal(error):
                raise
            if len(rows) == 1:
                result.refused.append((rows[0], safe_error_text(error)))
                return
            middle = len(rows) // 2
            self._write_isolating(connection, rows[:middle], result)
            self._write_isolating(connection, rows[middle:], result)
            return
        result.stored += stored
        result.stored_bytes += stored_bytes
        result.duplicates += len(rows) - stored

    def _write_once(self, connection: psycopg.Connection, rows: list[Row]) -> tuple[int, int]:
        """Store rows, skipping stored keys; returns (rows inserted, report bytes inserted)."""
        data = encode_rows(rows)
        if not self._staging_batches_left:
            try:
                with connection.transaction():
                    self._copy(connection, _COPY_DIRECT, data)
                return len(rows), sum(len(row.report) for row in rows)
            except errors.UniqueViolation:
                self._staging_batches_left = STAGING_STREAK
        self._copy(connection, _COPY_STAGING, data)
        inserted, inserted_bytes = connection.execute(_MERGE_STAGING).fetchone()
        connection.execute(_CLEAR_STAGING)
        return inserted, int(inserted_bytes)

    def _copy(self, connection: psycopg.Connection, statement: sql.Composed, data: bytes) -> None:
        if self._log_sql:
            log.info("sql: %s (%d bytes)", statement.as_string(connection), len(data))
        with connection.cursor() as cursor:
            with cursor.copy(statement) as copy:
                copy.write(data)
