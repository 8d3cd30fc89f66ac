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
- a batch whose new rows are ALL refused (none stored; some may be
  duplicates), whatever its size, is told apart from
  bad data by a canary: a row the database accepted before (the last one
  this writer stored, under the nil cluster id; a fixed synthetic row when
  there is none yet) is written as the batch was (the same COPY) under a
  savepoint that is always rolled back. If the database
  refuses the canary too, it refuses everything (a broken trigger, a schema
  change): ``FatalDatabaseError``, nothing committed, at 1 message a minute
  as at 10k a second. If it accepts the canary, the batch's rows are bad data
  and are returned as refused (a lone bad row is still isolated);
- a write never waits for ever: ``statement_timeout`` bounds each statement
  on the server, and a client-side watchdog (``writer.watchdog``) shuts the
  socket down when a round trip outlives ``write_timeout`` + 5 s (a half-open
  connection). Both raise ``WriteTimedOut``, a transient error; the caller
  splits a batch that keeps timing out.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from writer.copy_rows import COLUMNS, COPY_OPTIONS, encode_rows
from writer.database import safe_error_text
from writer.message import Row
from writer.watchdog import Watchdog

log = logging.getLogger(__name__)

STAGING_TABLE = "new_reports_incoming"
# After a batch with key conflicts, this many batches go straight to the
# staging path before the direct COPY is tried again.
STAGING_STREAK = 20
# The client-side watchdog acts this long after statement_timeout should
# have ended a statement: the server's own timeout, when it can answer,
# gives the clearer error.
WATCHDOG_MARGIN_S = 5
# The canary's cluster: the nil UUID (a real cluster id is random).
CANARY_CLUSTER = "00000000-0000-0000-0000-000000000000"
# Moments tried when the canary's key is taken (by a stored report under the nil cluster id).
_CANARY_ATTEMPTS = 5

_COPY_DIRECT = sql.SQL("COPY new_reports ({}) FROM STDIN " + COPY_OPTIONS).format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
_COPY_STAGING = sql.SQL("COPY {} ({}) FROM STDIN " + COPY_OPTIONS).format(
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
# libpq's connect_timeout 0 (or none) means no limit: a connection attempt waits at most this long then.
DEFAULT_CONNECT_TIMEOUT_S = 30


class TransientDatabaseError(Exception):
    """The batch was not written but may be on a later attempt."""


class WriteTimedOut(TransientDatabaseError):
    """The write outlived its deadline (statement_timeout, or the watchdog on a silent connection)."""


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
    # 08: connection exception, 53: insufficient resources, 57P: shutdown/restart, 40: rollback;
    # 57014: statement canceled (timeout); 25006: read-only transaction, i.e. connected to a former
    # primary after a failover: transient, but only on a fresh connection (the caller reconnects).
    return state.startswith(("08", "53", "57P", "40")) or state in ("57014", "25006")


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

    def __init__(self, conninfo: str, log_sql: bool = False, write_timeout: float = 0) -> None:
        self._conninfo = session_conninfo(conninfo, self._session_settings(write_timeout))
        self._connection: psycopg.Connection | None = None
        self._staging_batches_left = 0
        self._log_sql = log_sql
        self._write_timeout = write_timeout  # seconds; 0: no limit
        self.watchdog = Watchdog()
        self._last_accepted: Row | None = None  # the canary of a batch refused entirely

    def close(self) -> None:
        self.watchdog.stop()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed or self._connection.broken:
            self.close()
            self._connection = self._open()
        return self._connection

    def _session_settings(self, write_timeout: float) -> dict[str, str]:
        """Server settings sent at connection start, so they bind from the first statement on."""
        if not write_timeout:
            return {}
        milliseconds = int(write_timeout * 1000)
        # A session this writer gave up on (watchdog) must not keep its locks on the server.
        return {"statement_timeout": str(milliseconds), "idle_in_transaction_session_timeout": str(2 * milliseconds)}

    def _open(self) -> psycopg.Connection:
        connection = psycopg.connect(self._conninfo, autocommit=True)
        try:
            # Can wait behind a lock on new_reports: statement_timeout and the watchdog bound it.
            self._watch(connection)
            try:
                connection.execute(_CREATE_STAGING)
            finally:
                self.watchdog.disarm()
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
        self.watchdog.reset()  # a deadline of an earlier write says nothing about this one
        try:
            connection = self._connect()
            self._watch(connection)
            try:
                with connection.transaction():
                    self._write_isolating(connection, rows, result)
                    # Nothing new accepted: duplicates are skipped before AFTER triggers run, so they prove nothing.
                    if result.refused and not result.stored:
                        self._stop_if_canary_refused(connection, result)
                    self._watch(connection)  # for the COMMIT that ends this block
            finally:
                self.watchdog.disarm()
        except psycopg.Error as error:
            timed_out = self.watchdog.fired or isinstance(error, errors.QueryCanceled)
            # A connection the error broke (e.g. 25P03, the idle-in-transaction timeout) says nothing
            # against the batch: it is retried on a new one.
            broken = self._connection is not None and self._connection.broken
            if timed_out or broken or is_transient(error):
                # A fresh connection for the retry: the old one may be broken, half-open, or read-only.
                self.close()
                raise (WriteTimedOut if timed_out else TransientDatabaseError)(safe_error_text(error)) from error
            raise FatalDatabaseError(safe_error_text(error)) from error
        if result.duplicates:
            self._staging_batches_left = STAGING_STREAK
        elif self._staging_batches_left:
            self._staging_batches_left -= 1
        return result

    def _watch(self, connection: psycopg.Connection) -> None:
        """(Re)start the watchdog for the next statement (statement_timeout, too, is per statement)."""
        limit = self._write_timeout + WATCHDOG_MARGIN_S if self._write_timeout else 0
        self.watchdog.arm(connection.pgconn.socket, limit)

    def _stop_if_canary_refused(self, connection: psycopg.Connection, result: WriteResult) -> None:
        # Under a cluster id no report carries, so the insert goes through to the end (AFTER triggers,
        # constraints) instead of stopping at the primary key of the row it copies.
        canary = dataclasses.replace(self._last_accepted or _synthetic_canary(), cluster=CANARY_CLUSTER)
        try:
            for attempt in range(_CANARY_ATTEMPTS):
                self._watch(connection)
                try:
                    # Written as the batch was (binary COPY), so a column type its encoding does not fit fails too.
                    with connection.transaction(force_rollback=True):  # never stored
                        self._copy(connection, _COPY_DIRECT, encode_rows([canary]))
                    return
                except errors.UniqueViolation:
                    # A stored row has the canary's key (a report under the nil cluster id): AFTER triggers
                    # and later checks did not run, so try another moment.
                    if attempt == _CANARY_ATTEMPTS - 1:
                        return  # not the primary key (another unique index): the checks before it passed
                    shift = datetime.timedelta(microseconds=secrets.randbelow(3_600_000_000) + 1)
                    canary = dataclasses.replace(canary, updated_at=canary.updated_at - shift)
        except psycopg.Error as error:
            if not is_row_refusal(error):
                raise
            # Refusing rows it accepted before: the database, not the data, is wrong. Rejecting the
            # batch would drop the stream, so stop without committing.
            raise FatalDatabaseError(
                f"the database refused all {len(result.refused)} new rows of a batch and a row it accepted before "
                f"({safe_error_text(error)}); stopping instead of rejecting them all"
            ) from None

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
        self._last_accepted = rows[-1]

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
        self._watch(connection)  # each statement gets the whole bound, not what the COPY left of it
        [(inserted, inserted_bytes)] = connection.execute(_MERGE_STAGING).fetchall()  # an aggregate: one row
        self._watch(connection)
        connection.execute(_CLEAR_STAGING)
        return inserted, int(inserted_bytes)

    def _copy(self, connection: psycopg.Connection, statement: sql.Composed, data: bytes) -> None:
        if self._log_sql:
            log.info("sql: %s (%d bytes)", statement.as_string(connection), len(data))
        self._watch(connection)
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(data)


def session_conninfo(conninfo: str, settings: dict[str, str]) -> str:
    """``conninfo`` with ``settings`` appended to its ``options`` (given ones kept; ours win a clash, as the
    later ``-c``) and a bounded ``connect_timeout``."""
    params = conninfo_to_dict(conninfo)
    ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
    options = f"{params.get('options') or ''} {ours}".strip()
    if options:
        params["options"] = options
    try:
        bounded = int(params.get("connect_timeout") or 0) > 0
    except ValueError:
        bounded = True  # left as given: libpq reports the bad value itself
    if not bounded:
        params["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    return make_conninfo("", **params)


def _synthetic_canary() -> Row:
    """A row any sane new_reports accepts; used only when this writer has stored nothing yet."""
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return Row(1, 1, CANARY_CLUSTER, b'{"reports":[]}', now, 0)
