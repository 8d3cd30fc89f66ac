"""Each of the original's own deployment files (../shared/upstream/) works unchanged.

The files are read from <repository>/../shared/upstream (CI puts a copy of shared/ beside the clone);
when they are missing the tests fail, they do not skip. What is replaced, and why, is said where it
happens: the database and broker addresses (the test's own), and PG_PARAMS only if the test server
has no TLS.
"""

from __future__ import annotations

import random
import re
import signal
import time

import pytest

from tests.harness.deploy import (
    PREFIX,
    commented_commands,
    launcher_dir,
    read_env_file,
    run_sh,
    tls_adjusted_params,
    upstream_dir,
)
from tests.harness.service import Service, free_port
from writer import sample_messages
from writer.kafka_mock import produce
from writer.testing.environment import without_writer_settings

UPSTREAM = upstream_dir()
TOML_FILES = ["config.toml", "config-devel.toml", "benchmark.toml"]


def test_the_upstream_directory_has_every_file():
    for name in [*TOML_FILES, "clowdapp-service.env", "clowdapp-db-cleaner.env", "README.md"]:
        assert (UPSTREAM / name).is_file(), name


@pytest.mark.parametrize("name", TOML_FILES)
def test_config_file_loads_unchanged(cli, name, tmp_path):
    """--show-configuration exits 0 (warnings allowed) and shows what the file says."""
    named = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(UPSTREAM / name)})
    assert named.returncode == 0, named.stderr
    assert "db_driver = 'postgres'" in named.stdout
    assert "log_level = 'INFO'" in named.stdout  # log_level = "" (or "info"): the default level
    assert "Traceback" not in named.stderr
    # the same file as config.toml in the working directory (the original's default path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.toml").write_text((UPSTREAM / name).read_text())
    default = cli("--show-configuration", cwd=str(workdir))
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines()[1:] == named.stdout.splitlines()[1:]
    for secret in ("tshhhh it is a secret", "a key id"):
        assert secret not in named.stdout + named.stderr


def test_config_toml_values_reach_the_clients(tmp_path, monkeypatch):
    """sasl_mechanism = "not-used" under PLAINTEXT: no SASL options; db_driver postgres is accepted."""
    from writer import config as config_module
    from writer.kafka_options import consumer_options

    monkeypatch.chdir(tmp_path)
    config = config_module.load({"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(UPSTREAM / "config.toml")})
    config.check(config_module.LOGGING, config_module.KAFKA, config_module.DATABASE, config_module.SERVICE)
    options = consumer_options(config)
    assert options["security.protocol"] == "PLAINTEXT"
    assert not {"sasl.mechanisms", "sasl.username", "sasl.password"} & set(options)
    assert options["bootstrap.servers"] == "localhost:9093,localhost:9092"


def migration_script() -> str:
    """The init container's command, as the upstream README quotes it."""
    readme = (UPSTREAM / "README.md").read_text()
    quoted = re.findall(r"`([^`]*--db-init-migration[^`]*)`", readme, re.DOTALL)
    assert len(quoted) == 1, quoted
    return " ".join(quoted[0].split())


def cleanup_script(max_age: str) -> str:
    commands = commented_commands(UPSTREAM / "clowdapp-db-cleaner.env")
    assert len(commands) == 3, commands
    return " && ".join(c.replace("'<age>'", f"'{max_age}'") for c in commands)


def with_test_database(variables: dict[str, str], database) -> dict[str, str]:
    """The manifest's variables with the test database's storage settings (host, port, user, name).
    PG_PARAMS=sslmode=require is kept when the test server has TLS; on a server without TLS it cannot
    succeed for any client, so only then it becomes sslmode=disable."""
    env = {**variables, **database.env()}
    env[PREFIX + "STORAGE__PG_PARAMS"] = tls_adjusted_params(database, variables[PREFIX + "STORAGE__PG_PARAMS"])
    return env


def test_migration_init_container_commands_under_the_service_manifest(database, tmp_path):
    variables = read_env_file(UPSTREAM / "clowdapp-service.env")
    assert variables.pop(PREFIX + "BROKER__ENABLED") == "true"  # the init container does not set it
    env = with_test_database(variables, database)
    script = migration_script()
    assert script.count("./ccx-notification-writer") == 3
    workdir = launcher_dir(tmp_path)
    for _attempt in range(2):  # every pod start runs it; the second run finds everything in place
        result = run_sh(script, env, workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        with database.connect() as connection:
            assert connection.execute("SELECT version FROM migration_info").fetchone()[0] == 8
            assert connection.execute("SELECT to_regclass('new_reports') IS NOT NULL").fetchone()[0]
    # each command on its own exits 0 too (";" would hide a failing first one)
    for command in script.split(";"):
        if command.strip():
            assert run_sh(command, env, workdir).returncode == 0, command


def test_cleanup_job_commands_under_the_cleaner_manifest(migrated_database, tmp_path):
    env = with_test_database(read_env_file(UPSTREAM / "clowdapp-db-cleaner.env"), migrated_database)
    cluster = "5d5892d3-1f74-4ccf-91af-548dfc9767aa"
    with migrated_database.connect() as connection:
        connection.execute(
            "INSERT INTO new_reports VALUES (1, 2, %s, '{}', now() - interval '9 days', 1), (1, 2, %s, '{}', now(), 2)",
            (cluster, cluster))
        connection.execute(
            "INSERT INTO reported (org_id, account_number, cluster, notification_type, state, report, updated_at, "
            "notified_at, event_type_id) VALUES (1, 2, %s, 1, 1, '{}', now() - interval '9 days', now(), 1), "
            "(1, 2, %s, 1, 1, '{}', now(), now() - interval '1 hour', 1)", (cluster, cluster))
    result = run_sh(cleanup_script("8 days"), env, launcher_dir(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    with migrated_database.connect() as connection:
        assert connection.execute("SELECT kafka_offset FROM new_reports").fetchall() == [(2,)]
        assert connection.execute("SELECT count(*) FROM reported").fetchone()[0] == 1


def test_behavioural_test_runner_variables_work_for_command_line_operations(database, cli):
    """Its runner exports DB_DRIVER=postgres, BROKER__ADDRESS (a key neither service has) and a metric
    namespace with a hyphen, and runs only command-line operations."""
    readme = (UPSTREAM / "README.md").read_text()
    exported = dict(re.findall(r"`(CCX_NOTIFICATION_WRITER__[A-Z_]+)=([^`]*)`", readme))
    assert set(exported) == {PREFIX + "STORAGE__DB_DRIVER", PREFIX + "BROKER__ADDRESS", PREFIX + "METRICS__NAMESPACE"}
    env = {**exported, **database.env(), PREFIX + "BROKER__ADDRESS": "127.0.0.1:9092"}
    for args in (["--show-configuration"], ["--db-init-migration"], ["--db-init"], ["--migrate", "latest"],
                 ["--migration-info"], ["--print-new-reports-for-cleanup"], ["--new-reports-cleanup"],
                 ["--db-cleanup"], ["--db-drop-tables"]):
        result = cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
    warnings = [line for line in result.stderr.splitlines() if "unknown configuration keys" in line]
    assert len(warnings) == 1 and PREFIX + "BROKER__ADDRESS" in warnings[0]
    # the service itself refuses the namespace, in one line
    service = cli(env=env, timeout=60)
    assert service.returncode == 1
    assert len(service.stderr.strip().splitlines()) == 1 + 1  # the unknown-key warning and the error
    assert "METRICS__NAMESPACE" in service.stderr.strip().splitlines()[-1]


def test_service_consumes_and_stores_under_the_service_manifest(migrated_database, kafka_bootstrap, workdir):
    """clowdapp-service.env unchanged but for: the broker and database addresses (the test's own),
    PG_PARAMS (see with_test_database), the metrics port (8080 may be taken on a shared test machine)
    and, added, a 6 s session timeout (librdkafka's mock ends rebalances only on that timer)."""
    variables = read_env_file(UPSTREAM / "clowdapp-service.env")
    env = with_test_database(variables, migrated_database)
    env[PREFIX + "BROKER__ADDRESSES"] = kafka_bootstrap
    env[PREFIX + "METRICS__ADDRESS"] = f"127.0.0.1:{free_port()}"
    env[PREFIX + "BROKER__SESSION_TIMEOUT_MS"] = "6000"
    env = {**without_writer_settings(), **env}
    topic = variables[PREFIX + "BROKER__TOPIC"]
    org_id = random.randrange(10**6, 10**7)  # the topic is the manifest's own: count only our messages
    count = 40
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i, org_id=org_id) for i in range(count)],
            [str(i).encode() for i in range(count)])
    service = Service(env, workdir=workdir)
    try:
        deadline = time.monotonic() + 150
        stored = 0
        while time.monotonic() < deadline and service.process.poll() is None:
            with migrated_database.connect() as connection:
                stored = connection.execute("SELECT count(*) FROM new_reports WHERE org_id = %s",
                                            (org_id,)).fetchone()[0]
            if stored == count:
                break
            time.sleep(0.5)
        assert stored == count, (stored, service.stderr()[-3000:])
        service.process.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, service.stderr()[-3000:]
    finally:
        service.close()
    assert "example-secret-key" not in service.stderr() + service.stdout()
