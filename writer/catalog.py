"""What the database catalog says about this service's tables."""

from __future__ import annotations

import psycopg


def table_exists(connection: psycopg.Connection, table: str) -> bool:
    """True when ``table`` resolves on the connection's search_path (to_regclass: no error when it does not)."""
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])
