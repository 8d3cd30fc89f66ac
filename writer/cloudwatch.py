"""Shipping log lines to CloudWatch Logs ([logging] logging_to_cloud_watch_enabled, [cloudwatch]).

watchtower and boto3 are an optional extra (``pip install -c constraints.txt '.[cloudwatch]'``,
installed in the image) imported only when the switch is on: a worker without CloudWatch
does not carry them in memory.

A log call only formats the line and puts it in a bounded in-memory queue; a
background thread sends batches. When CloudWatch does not answer, lines beyond
the bound are dropped (and counted in a warning at exit) rather than slowing
the batch path or growing memory.

The stream is named as the original names it: ``stream_name`` with
``$HOSTNAME`` replaced by the host (pod) name, or the host name when empty;
the supervisor, its workers and the command-line operations of one pod share it.
"""

from __future__ import annotations

import logging
import socket

from writer.config import Config, ConfigError
from writer.logs import JsonLineFormatter

MAX_QUEUED_LINES = 10_000  # per process; ~a few MB of JSON lines at most
SEND_INTERVAL_S = 1  # watchtower takes whole seconds
CLOSE_TIMEOUT_S = 5  # at exit, the one wait for the last lines (keeps stopping bounded)


def stream_name(configured: str, hostname: str) -> str:
    """The original's naming: $HOSTNAME placeholders replaced; empty means the host name."""
    return configured.replace("$HOSTNAME", hostname) if configured else hostname


def exit_wait_s(config: Config) -> float:
    """How long a process may wait at exit for its last lines to reach CloudWatch (0 when off)."""
    return CLOSE_TIMEOUT_S if config.logging.logging_to_cloud_watch_enabled else 0


def attach(config: Config) -> logging.Handler | None:
    """Add a CloudWatch handler to the root logger; ConfigError (one line, no secret) if impossible."""
    handler = build_handler(config)
    if handler is not None:
        logging.getLogger().addHandler(handler)
    return handler


def build_handler(config: Config) -> logging.Handler | None:
    """The CloudWatch handler for [cloudwatch], not yet attached; None (and a warning) when unusable."""
    settings = config.cloudwatch
    if not settings.log_group:
        raise ConfigError("[cloudwatch] log_group must be set when [logging] logging_to_cloud_watch_enabled is true")
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
        import watchtower
    except ImportError:
        raise ConfigError("[logging] logging_to_cloud_watch_enabled is true but the 'cloudwatch' extra "
                          "(watchtower, boto3) is not installed") from None

    class BoundedHandler(watchtower.CloudWatchLogHandler):
        FLUSH_TIMEOUT = CLOSE_TIMEOUT_S
        dropped = 0

        def emit(self, record: logging.LogRecord) -> None:
            # watchtower keys its queues by the formatted stream name (one queue per stream).
            waiting = self.queues.get(self._get_stream_name(record))
            if waiting is not None and waiting.qsize() >= MAX_QUEUED_LINES:
                self.dropped += 1
                return
            super().emit(record)

        def flush(self) -> None:
            """Ask the sender to send what is queued now, without waiting for it.

            logging.shutdown() calls flush() then close(), and watchtower's both wait up to FLUSH_TIMEOUT:
            the exit would wait twice. Only close() waits, so the exit waits at most CLOSE_TIMEOUT_S.
            """
            for waiting in list(self.queues.values()):
                if not self.shutting_down:
                    waiting.put(self.FLUSH)

        def close(self) -> None:
            if self.dropped and not self.shutting_down:
                # Before closing, so this line is still shipped with the last ones.
                logging.getLogger("writer.cloudwatch").warning(
                    "%d log lines not sent to CloudWatch (queue full while it did not answer)", self.dropped)
            super().close()

    # At DEBUG, botocore logs each request's headers (the access key id among them) and urllib3 each
    # connection; these lines would also be shipped, each causing more requests.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    name = stream_name(settings.stream_name, socket.gethostname())
    client_settings = botocore.config.Config(
        connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
    try:
        client = boto3.client(
            "logs",
            region_name=settings.aws_region or None,
            aws_access_key_id=settings.aws_access_id or None,
            aws_secret_access_key=settings.aws_secret_key or None,
            aws_session_token=settings.aws_session_token or None,
            config=client_settings,
        )
    except botocore.exceptions.NoRegionError:
        raise ConfigError("[cloudwatch] aws_region must be set (or AWS_DEFAULT_REGION)") from None
    try:
        handler = BoundedHandler(
            log_group_name=settings.log_group,
            # watchtower formats the name with str.format: braces are literal here.
            log_stream_name=name.replace("{", "{{").replace("}", "}}"),
            boto3_client=client,
            send_interval=SEND_INTERVAL_S,
            # As the original: the group is the deployment's (Clowder/app-interface), never created here;
            # credentials scoped like the original's may not create groups. The stream is created at
            # the first send.
            create_log_group=False,
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        # A CloudWatch outage must not stop the service; botocore's messages name the
        # operation and endpoint, never the credentials.
        logging.getLogger("writer.cloudwatch").warning(
            "CloudWatch Logs not usable, log lines are not shipped: %s", str(error).splitlines()[0])
        return None
    handler.setFormatter(JsonLineFormatter())
    logging.getLogger("watchtower").setLevel(logging.DEBUG if settings.debug else logging.WARNING)
    return handler
