"""CloudWatch Logs against a real CloudWatch Logs API on loopback (moto in server mode), read back
through boto3: from a command-line operation, from the service (supervisor and workers), from
Clowder's logging.cloudwatch; nothing when the switch is off; the stream named as the original names it."""

from __future__ import annotations

import json
import signal
import socket
import uuid

from tests.harness.cloudwatch import REGION, aws_env, cloudwatch_settings
from tests.harness.service import PREFIX, Service, free_port, service_env
from writer import sample_messages
from writer.cloudwatch import stream_name
from writer.kafka_mock import produce


def shipped(client, group: str) -> dict[str, list[dict]]:
    """stream name -> the JSON lines it holds."""
    streams = client.describe_log_streams(logGroupName=group)["logStreams"]
    return {
        s["logStreamName"]: [json.loads(e["message"]) for e in
                             client.get_log_events(logGroupName=group, logStreamName=s["logStreamName"],
                                                   startFromHead=True)["events"]]
        for s in streams
    }


def groups(client) -> set[str]:
    return {g["logGroupName"] for g in client.describe_log_groups()["logGroups"]}


def test_stream_name_as_the_original_names_it():
    assert stream_name("", "pod-7") == "pod-7"
    assert stream_name("ccx-notification-writer", "pod-7") == "ccx-notification-writer"
    assert stream_name("writer-$HOSTNAME", "pod-7") == "writer-pod-7"


def test_a_command_line_operation_ships_its_lines(cli, cloudwatch_endpoint, logs_client):
    group = f"ccx-cli-{uuid.uuid4().hex[:8]}"
    logs_client.create_log_group(logGroupName=group)  # the deployment's group; the stream does not exist yet
    env = {**aws_env(cloudwatch_endpoint), **cloudwatch_settings(group, "cli-$HOSTNAME"),
           PREFIX + "LOGGING__LOG_LEVEL": "DEBUG", PREFIX + "STORAGE__PG_HOSTNAME": "an unknown key"}
    result = cli("--show-configuration", env=env)
    assert result.returncode == 0, result.stderr
    streams = shipped(logs_client, group)
    assert list(streams) == [f"cli-{socket.gethostname()}"]
    messages = [line["message"] for line in streams[f"cli-{socket.gethostname()}"]]
    assert "started: show-configuration" in messages and "finished: show-configuration" in messages
    assert any(m.startswith("ignoring unknown configuration keys") for m in messages)  # logged once attached
    for secret in ("cwSECRETkey0002", "AKIAcwTEST0001"):
        assert secret not in result.stdout + result.stderr


def test_nothing_is_sent_when_the_switch_is_off(cli, cloudwatch_endpoint, logs_client):
    group = f"ccx-off-{uuid.uuid4().hex[:8]}"
    logs_client.create_log_group(logGroupName=group)
    env = {**aws_env(cloudwatch_endpoint),
           **cloudwatch_settings(group, "off", enabled="false"), PREFIX + "LOGGING__LOG_LEVEL": "DEBUG"}
    result = cli("--show-configuration", env=env)
    assert result.returncode == 0, result.stderr
    assert "finished: show-configuration" in result.stderr  # it logged; the lines stayed local
    assert shipped(logs_client, group) == {}


def test_a_missing_log_group_is_not_created(cli, cloudwatch_endpoint, logs_client):
    """As the original: the group belongs to the deployment; credentials scoped like the original's could
    not create it anyway. The operation still succeeds; its lines are not shipped."""
    group = f"ccx-missing-{uuid.uuid4().hex[:8]}"
    env = {**aws_env(cloudwatch_endpoint), **cloudwatch_settings(group, "s"), PREFIX + "LOGGING__LOG_LEVEL": "DEBUG"}
    result = cli("--show-configuration", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "finished: show-configuration" in result.stderr
    assert group not in groups(logs_client)
    assert "cwSECRETkey0002" not in result.stderr and "AKIAcwTEST0001" not in result.stderr


def test_clowder_logging_cloudwatch_provides_the_settings(cli, cloudwatch_endpoint, logs_client, tmp_path):
    group = f"ccx-clowder-{uuid.uuid4().hex[:8]}"
    logs_client.create_log_group(logGroupName=group)
    document = {"logging": {"type": "cloudwatch", "cloudwatch": {
        "accessKeyId": "AKIAclowder0003", "secretAccessKey": "clowderSECRET0004", "region": REGION,
        "logGroup": group}}}
    (tmp_path / "cdappconfig.json").write_text(json.dumps(document))
    env = {**aws_env(cloudwatch_endpoint), "ACG_CONFIG": str(tmp_path / "cdappconfig.json"),
           PREFIX + "LOGGING__LOGGING_TO_CLOUD_WATCH_ENABLED": "true", PREFIX + "LOGGING__LOG_LEVEL": "DEBUG"}
    result = cli("--show-configuration", env=env)
    assert result.returncode == 0, result.stderr
    streams = shipped(logs_client, group)
    assert list(streams) == [socket.gethostname()]  # no stream_name: the host (pod) name
    assert any(line["message"] == "finished: show-configuration" for line in streams[socket.gethostname()])
    shown = cli("--show-configuration", env=env)
    assert "clowderSECRET0004" not in shown.stdout + shown.stderr and "AKIAclowder0003" not in shown.stdout


def test_the_service_ships_lines_of_the_supervisor_and_its_workers(migrated_database, kafka_bootstrap, topic,
                                                                   workdir, cloudwatch_endpoint, logs_client):
    group = f"ccx-service-{uuid.uuid4().hex[:8]}"
    logs_client.create_log_group(logGroupName=group)
    settings = {k: v for k, v in service_env(migrated_database.env(), kafka_bootstrap, topic).items()
                if k.startswith(PREFIX)}
    env = {**aws_env(cloudwatch_endpoint), **settings, **cloudwatch_settings(group, "")}
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i) for i in range(20)] + [b"not json"])
    service = Service(env, workdir=workdir)
    try:
        service.wait_committed()
        service.process.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, service.stderr()[-3000:]
    finally:
        service.close()
    streams = shipped(logs_client, group)
    assert list(streams) == [socket.gethostname()]  # one stream per pod, as the original
    lines = streams[socket.gethostname()]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("starting 2 workers") for m in messages)  # the supervisor
    assert any(m.startswith("message rejected") for m in messages)  # a worker
    assert len({line["pid"] for line in lines}) >= 3  # the supervisor and both workers
    assert "cwSECRETkey0002" not in service.stderr() + service.stdout()


def test_an_unreachable_cloudwatch_does_not_stop_an_operation(cli):
    env = {**aws_env(f"http://127.0.0.1:{free_port()}"),
           **cloudwatch_settings("ccx-unreachable", "x"), PREFIX + "LOGGING__LOG_LEVEL": "DEBUG"}
    result = cli("--show-configuration", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "finished: show-configuration" in result.stderr
    assert "Failed to deliver logs" in result.stderr  # the shipping library's warning, on the console
    assert "cwSECRETkey0002" not in result.stderr and "AKIAcwTEST0001" not in result.stderr


def test_without_the_switch_the_aws_libraries_are_not_even_imported(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from writer import config, logs; logs.setup(config.load()); "
            "print(sorted(m for m in ('boto3', 'botocore', 'watchtower') if m in sys.modules))")
    env = {**aws_env("http://127.0.0.1:1"), **cloudwatch_settings("g", "s", enabled="false")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_log_group_is_a_configuration_error(cli):
    env = {**aws_env("http://127.0.0.1:1"), **cloudwatch_settings("", "s")}
    result = cli("--show-configuration", env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "log_group" in result.stderr
