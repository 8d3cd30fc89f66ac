def test_version_and_authors(cli):
    assert cli("--version").stdout.startswith("ccx-notification-writer version ")
    assert "ccx-notification-writer" in cli("-authors").stdout


def test_migrated_database_reaches_latest(migrated_database, cli):
    result = cli("--migration-info", env=migrated_database.env())
    assert result.returncode == 0
    assert "current version: 8" in result.stdout
