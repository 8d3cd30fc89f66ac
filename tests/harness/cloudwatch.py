"""CloudWatch Logs in tests: the service's settings for it, and where boto3 finds the local endpoint."""

from __future__ import annotations

from tests.harness.service import PREFIX
from writer.testing.environment import without_writer_settings

REGION = "us-east-1"


def aws_env(endpoint: str) -> dict[str, str]:
    """Where boto3 finds the endpoint (its standard variable); nothing else about AWS (nor any setting of the
    service) from outside."""
    env = {k: v for k, v in without_writer_settings().items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint, "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def cloudwatch_settings(group: str, stream: str, enabled: str = "true") -> dict[str, str]:
    return {
        PREFIX + "LOGGING__LOGGING_TO_CLOUD_WATCH_ENABLED": enabled,
        PREFIX + "CLOUDWATCH__AWS_REGION": REGION,
        PREFIX + "CLOUDWATCH__LOG_GROUP": group,
        PREFIX + "CLOUDWATCH__STREAM_NAME": stream,
        PREFIX + "CLOUDWATCH__AWS_ACCESS_ID": "AKIAcwTEST0001",
        PREFIX + "CLOUDWATCH__AWS_SECRET_KEY": "cwSECRETkey0002",
    }
