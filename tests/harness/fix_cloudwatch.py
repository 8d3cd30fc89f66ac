"""Fixtures: CloudWatch Logs on loopback (moto in server mode) and a boto3 client of it.

boto3 and moto are imported by the fixtures, not here: every test run loads this plugin, few use it."""

from __future__ import annotations

import pytest

from tests.harness.cloudwatch import REGION
from tests.harness.service import free_port


@pytest.fixture(scope="module")
def cloudwatch_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def logs_client(cloudwatch_endpoint):
    import boto3

    return boto3.client("logs", region_name=REGION, endpoint_url=cloudwatch_endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
