"""The write step of a dry run: what a batch would store, checked with one read-only query, writing nothing.

``DryRunWriter`` is a ``storage.BatchWriter`` (same connection handling, same
error contract: a transient failure raises ``TransientDatabaseError`` and the
worker retries the batch, any other ``FatalDatabaseError``) whose ``write``
only counts:

- ``stored``: rows whose primary key is neither in ``new_reports`` nor
  counted as would-be stored earlier by this worker (a real replay stores it
  once, then skips it);
- ``duplicates``: the others. Those found in the table are also counted in
  ``replay_dry_run_already_stored``, so the summary can tell "already stored"
  from "repeated within the replay" (in-batch repeats, which the worker counts
  as duplicates itself, and cross-batch ones).

The keys counted as would-be stored are kept for the whole run (about 150
bytes each). A key repeated in partitions read by two workers is counted as
would-be stored by both: a real replay stores it once. A dry run cannot
foresee rows the database would refuse (a constraint or trigger): only a
real write finds those.

The session is read-only (``default_transaction_read_only``), so the
database itself refuses any write made through it.
"""

from __future__ import annotations

import datetime

import psycopg
from prometheus_client import Counter

from writer.database import safe_error_text
from writer.message import Row
from writer.storage import (
    BatchWriter,
    FatalDatabaseError,
    TransientDatabaseError,
    WriteResult,
    WriteTimedOut,
    is_transient,
)

# One query per batch: which of these primary keys are stored already.
_STORED_KEYS = (
    "SELECT n.org_id, n.cluster, n.updated_at FROM new_reports n"
    " JOIN unnest(%s::integer[], %s::character(36)[], %s::timestamp[]) AS k(org_id, cluster, updated_at)"
    " USING (org_id, cluster, updated_at)"
)


def already_stored_counter(namespace: str) -> Counter:
    name = f"{namespace}_replay_dry_run_already_stored" if namespace else "replay_dry_run_already_stored"
    return Counter(name, "Dry run: messages whose primary key is in new_reports already", registry=None)


class DryRunWriter(BatchWriter):
    def __init__(self, conninfo: str, namespace: str = "", write_timeout: float = 0) -> None:
        super().__init__(conninfo, write_timeout=write_timeout)
        self.already_stored = already_stored_counter(namespace)
        self._would_store: set[tuple[int, str, datetime.datetime]] = set()

    def _session_settings(self, write_timeout: float) -> dict[str, str]:
        return {**super()._session_settings(write_timeout), "default_transaction_read_only": "on"}

    def _open(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=True)  # no staging table: nothing is written

    def write(self, rows: list[Row]) -> WriteResult:
        """Count ``rows`` (unique primary keys within the batch); writes nothing. See the module docstring."""
        result = WriteResult()
        if not rows:
            return result
        self.watchdog.reset()
        try:
            connection = self._connect()
            self._watch(connection)
            try:
                in_table = {
                    (org_id, cluster.rstrip(), updated_at)
                    for org_id, cluster, updated_at in connection.execute(
                        _STORED_KEYS,
                        ([r.org_id for r in rows], [r.cluster for r in rows], [r.updated_at for r in rows]),
                    )
                }
            finally:
                self.watchdog.disarm()
        except psycopg.Error as error:
            timed_out = self.watchdog.fired or isinstance(error, psycopg.errors.QueryCanceled)
            if timed_out or is_transient(error) or (self._connection is not None and self._connection.broken):
                self.close()
                raise (WriteTimedOut if timed_out else TransientDatabaseError)(safe_error_text(error)) from error
            raise FatalDatabaseError(safe_error_text(error)) from error
        found = 0
        for row in rows:
            key = row.key
            if key in self._would_store:
                result.duplicates += 1
            elif key in in_table:
                result.duplicates += 1
                found += 1
            else:
                self._would_store.add(key)
                result.stored += 1
                result.stored_bytes += len(row.report)
        if found:
            self.already_stored.inc(found)
        return result
