"""The write step of a dry run: what a batch would store, checked with one read-only query, writing nothing.

``DryRunWriter`` has ``storage.BatchWriter``'s interface (``write``,
``close``) and the same error contract: a transient failure raises
``TransientDatabaseError`` (the worker retries the batch), any other
``FatalDatabaseError``. The result counts as ``stored`` the rows whose
primary key is not in ``new_reports`` yet (they would be stored) and as
``duplicates`` those already there. It cannot foresee rows the database
would refuse (a constraint or trigger): only a real write finds those.

The session is read-only (``default_transaction_read_only``), so the
database itself refuses any write made through it.
"""

from __future__ import annotations

import psycopg

from writer.database import safe_error_text
from writer.message import Row
from writer.storage import FatalDatabaseError, TransientDatabaseError, WriteResult, is_transient

# One query per batch: which of these primary keys are stored already.
_STORED_KEYS = (
    "SELECT n.org_id, n.cluster, n.updated_at FROM new_reports n"
    " JOIN unnest(%s::integer[], %s::character(36)[], %s::timestamp[]) AS k(org_id, cluster, updated_at)"
    " USING (org_id, cluster, updated_at)"
)


class DryRunWriter:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection: psycopg.Connection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed or self._connection.broken:
            self.close()
            self._connection = psycopg.connect(
                self._conninfo, autocommit=True, options="-c default_transaction_read_only=on")
        return self._connection

    def write(self, rows: list[Row]) -> WriteResult:
        """Count ``rows`` (unique primary keys) as would-be stored or already stored; writes nothing."""
        result = WriteResult()
        if not rows:
            return result
        try:
            stored = {
                (org_id, cluster.rstrip(), updated_at)
                for org_id, cluster, updated_at in self._connect().execute(
                    _STORED_KEYS,
                    ([r.org_id for r in rows], [r.cluster for r in rows], [r.updated_at for r in rows]),
                )
            }
        except psycopg.Error as error:
            if self._connection is not None and self._connection.broken:
                self.close()
            if is_transient(error):
                raise TransientDatabaseError(safe_error_text(error)) from error
            raise FatalDatabaseError(safe_error_text(error)) from error
        for row in rows:
            if (row.org_id, row.cluster, row.updated_at) in stored:
                result.duplicates += 1
            else:
                result.stored += 1
                result.stored_bytes += len(row.report)
        return result
