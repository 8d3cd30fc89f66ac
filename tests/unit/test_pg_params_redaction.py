"""pg_params passwords are hidden whole, however libpq lets them be written (escaped or quoted spaces)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from writer.config import HIDDEN, ConfigError, parse_pg_params, redact_pg_params


@pytest.mark.parametrize(
    "params, secret_parts",
    [
        (r"sslmode=require password=Qa1\ Qb2\ Qc3 connect_timeout=3", ["Qa1", "Qb2", "Qc3"]),
        ("sslmode=require password='Qa1 Qb2 Qc3' connect_timeout=3", ["Qa1", "Qb2", "Qc3"]),
        (r"sslpassword='Qa1\'Qb2 Qc3' sslmode=require", ["Qa1", "Qb2 Qc3"]),
        ("password = 'Qa1 Qb2' sslmode=require", ["Qa1", "Qb2"]),
        (r"password=Qa1\\ sslmode=require", ["Qa1"]),
    ],
)
def test_the_whole_password_is_hidden(params, secret_parts):
    # libpq itself reads these values whole: the redaction must cover what libpq reads.
    parsed = conninfo_to_dict(params.replace("&", " "))
    assert any(key.endswith("password") and all(p in parsed[key] for p in secret_parts) for key in parsed)
    shown = redact_pg_params(params)
    for part in secret_parts:
        assert part not in shown, shown
    assert HIDDEN in shown and "sslmode=require" in shown


def test_other_pairs_are_kept():
    assert redact_pg_params("sslmode=disable&connect_timeout=3") == "sslmode=disable&connect_timeout=3"


def test_one_parse_for_validation_and_connection():
    assert parse_pg_params("sslmode=disable&connect_timeout=3") == {"sslmode": "disable", "connect_timeout": "3"}
    assert parse_pg_params("  ") == {}
    with pytest.raises(ConfigError, match="pg_params") as raised:
        parse_pg_params("password=topsecret99 unterminated='x")
    assert "topsecret99" not in str(raised.value)
