"""deploy/clowdapp.yaml and deploy/clowdapp-db-cleaner.yaml, rendered with their parameter defaults:
every variable they set is a configuration key, every command they run is our command line, and the
init container and cleanup job commands really run against PostgreSQL."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.harness.deploy import (
    PREFIX,
    ROOT,
    launcher_dir,
    run_sh,
    split_shell_commands,
    tls_adjusted_params,
)
from writer import config as config_module
from writer.cli import OPERATIONS, build_parser
from writer.config import SCHEMA

TEMPLATES = ["clowdapp.yaml", "clowdapp-db-cleaner.yaml"]
REQUIRED_VALUES = {"IMAGE_TAG": "test-tag", "ENV_NAME": "test-env"}

# The parameters of the original's templates (RedHatInsights/ccx-notification-writer, deploy/).
ORIGINAL_PARAMETERS = {
    "clowdapp.yaml": {
        "IMAGE", "IMAGE_TAG", "CLOWDER_ENABLED", "ENV_NAME", "MIN_REPLICAS", "MAX_REPLICAS", "CPU_LIMIT",
        "MEMORY_LIMIT", "CPU_REQUEST", "MEMORY_REQUEST", "DATABASE_SERVICE_NAME", "IRDW_API_PREFIX",
        "KAFKA_BOOTSTRAP_HOST", "KAFKA_BOOTSTRAP_PORT", "INCOMING_TOPIC", "GROUP_ID", "METRICS_NAMESPACE",
        "DB_MIGRATION_VERSION", "PG_PARAMS", "LOGGING_TO_CLOUD_WATCH_ENABLED", "CLOUDWATCH_DEBUG",
        "PAYLOAD_TRACKER_TOPIC", "PAYLOAD_TRACKER_SERVICE_NAME", "SENTRY_ENABLED",
    },
    "clowdapp-db-cleaner.yaml": {
        "IMAGE", "IMAGE_TAG", "CLOWDER_ENABLED", "ENV_NAME", "CPU_LIMIT", "MEMORY_LIMIT", "CPU_REQUEST",
        "MEMORY_REQUEST", "DATABASE_SERVICE_NAME", "SUSPEND_JOB", "JOB_DEADLINE", "JOB_SCHEDULE",
        "OLD_REPORTS_MAX_AGE", "NEW_REPORTS_MAX_AGE", "PG_PARAMS", "SENTRY_ENABLED",
    },
}


def render(name: str) -> dict:
    """Substitute ${PARAM} (string) and ${{PARAM}} (typed) with the defaults, as `oc process` does."""
    text = (ROOT / "deploy" / name).read_text()
    template = yaml.safe_load(text)
    values = {}
    for parameter in template["parameters"]:
        if "value" in parameter:
            values[parameter["name"]] = str(parameter["value"])
        else:
            assert parameter.get("required"), parameter
            values[parameter["name"]] = REQUIRED_VALUES[parameter["name"]]
    used = set(re.findall(r"\$\{\{?([A-Z0-9_]+)\}?\}", text))
    assert used <= set(values), f"parameters used but not declared: {used - set(values)}"
    text = re.sub(r"\$\{\{([A-Z0-9_]+)\}\}", lambda m: values[m.group(1)], text)
    text = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: values[m.group(1)], text)
    assert "${" not in text
    rendered = yaml.safe_load(text)
    rendered["_parameters"] = values
    return rendered


def containers(rendered: dict) -> list[tuple[str, dict]]:
    found = []
    for item in rendered["objects"]:
        if item["kind"] != "ClowdApp":
            continue
        for group in ("deployments", "jobs"):
            for entry in item["spec"].get(group, []):
                pod = entry["podSpec"]
                found.append((f"{group}/{entry['name']}", pod))
                for init in pod.get("initContainers", []):
                    found.append((f"{group}/{entry['name']}/init/{init['name']}", init))
    assert found
    return found


def literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("name", TEMPLATES)
def test_same_parameters_as_the_original(name):
    declared = {p["name"] for p in yaml.safe_load((ROOT / "deploy" / name).read_text())["parameters"]}
    assert ORIGINAL_PARAMETERS[name] <= declared, ORIGINAL_PARAMETERS[name] - declared
    if name == "clowdapp.yaml":
        assert {"PROCESSING_WORKERS", "PARTITION_ASSIGNMENT_STRATEGY"} <= declared


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_variable_is_a_configuration_key_and_the_values_are_accepted(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config.toml
    for where, container in containers(render(name)):
        names = [e["name"] for e in container.get("env", [])]
        assert names, where
        for variable in names:
            assert variable.startswith(PREFIX), (where, variable)
            section, _, key = variable[len(PREFIX):].lower().partition("__")
            assert section in SCHEMA and key in SCHEMA[section], (where, variable)
        config = config_module.load(literal_env(container))
        assert config.ignored == []
        # the values the template sets pass every check the service makes
        config.check(config_module.LOGGING, config_module.KAFKA, config_module.DATABASE, config_module.SERVICE)


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_command_is_one_of_our_operations(name):
    parser = build_parser()
    commands = []
    for where, container in containers(render(name)):
        if "command" not in container:
            continue
        assert container["command"][:2] == ["/bin/sh", "-c"], where
        for argv in split_shell_commands(container["command"][2]):
            assert argv[0] == "./ccx-notification-writer", argv
            args = parser.parse_args(argv[1:])  # an unknown flag exits (SystemExit): the test fails
            chosen = [flag for flag, operation in OPERATIONS.items()
                      if getattr(args, operation.dest) not in (None, False)]
            assert len(chosen) == 1, argv
            commands.append(chosen[0])
    expected = {"clowdapp.yaml": ["db-init-migration", "db-init", "migrate"],
                "clowdapp-db-cleaner.yaml": ["old-reports-cleanup", "new-reports-cleanup", "read-errors-cleanup"]}
    assert commands == expected[name]


def test_service_probes_and_metrics_service():
    rendered = render("clowdapp.yaml")
    (_, pod), = [(w, c) for w, c in containers(rendered) if w == "deployments/instance"]
    address = literal_env(pod)[PREFIX + "METRICS__ADDRESS"]
    port = config_module.parse_listen_address(address)[1]
    assert pod["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    assert pod["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert "startupProbe" not in pod  # not a field of Clowder's PodSpec: it would be pruned
    # liveness only for dead or hung processes: it waits for the workers to start
    assert pod["livenessProbe"]["initialDelaySeconds"] >= 10
    services = [o for o in rendered["objects"] if o["kind"] == "Service" and "prometheus.io/scrape" in
                o["metadata"].get("annotations", {})]
    assert len(services) == 1 and services[0]["spec"]["ports"][0]["targetPort"] == port
    clowdapp = [o for o in rendered["objects"] if o["kind"] == "ClowdApp"][0]
    assert clowdapp["spec"]["deployments"][0]["webServices"]["metrics"]["enabled"] is True
    assert literal_env(pod)[PREFIX + "PROCESSING__WORKERS"] == "0"  # from the pod's CPU limit


def test_init_container_and_cleanup_job_run_against_postgresql(database, tmp_path):
    """The rendered scripts, through /bin/sh -c from the image's working directory, with the templates'
    variables plus the test database's address (and, only if the server has no TLS, sslmode=disable)."""
    workdir = launcher_dir(tmp_path)
    (_, init), = [(w, c) for w, c in containers(render("clowdapp.yaml")) if w.endswith("/init/execute-migrations")]
    env = {**literal_env(init), **database.env()}
    env[PREFIX + "STORAGE__PG_PARAMS"] = tls_adjusted_params(database, env[PREFIX + "STORAGE__PG_PARAMS"])
    migrated = run_sh(init["command"][2], env, workdir)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    with database.connect() as connection:
        assert connection.execute("SELECT version FROM migration_info").fetchone()[0] == 8
        connection.execute(
            "INSERT INTO new_reports VALUES (1, 2, '5d5892d3-1f74-4ccf-91af-548dfc9767aa', '{}', "
            "now() - interval '30 days', 7), (1, 2, '5d5892d3-1f74-4ccf-91af-548dfc9767aa', '{}', now(), 8)")
    again = run_sh(init["command"][2], env, workdir)  # every pod start runs it again
    assert again.returncode == 0, again.stderr[-2000:]

    (_, job), = containers(render("clowdapp-db-cleaner.yaml"))
    env = {**literal_env(job), **database.env()}
    env[PREFIX + "STORAGE__PG_PARAMS"] = tls_adjusted_params(database, env[PREFIX + "STORAGE__PG_PARAMS"])
    cleaned = run_sh(job["command"][2], env, workdir)
    assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    with database.connect() as connection:
        assert connection.execute("SELECT kafka_offset FROM new_reports").fetchall() == [(8,)]  # 8 days max age
