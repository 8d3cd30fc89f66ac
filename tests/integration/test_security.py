"""Security and hygiene against the running service (README "Security and hygiene"): secrets never shown in any
output, log, error or metric; the HTTP server answers GET /metrics, /health and /ready only."""

from __future__ import annotations

import http.client
import time
import uuid

from tests.harness.database import row_count
from tests.harness.scenario import produce_numbers, shutdown_bound
from tests.harness.service import Service, free_port, service_env, wait_until


def test_secrets_never_shown(migrated_database, kafka_bootstrap, topic, group, workdir, cli):
    """Distinctive secrets in every secret setting: none appears in any output, log, error or metric."""
    tag = uuid.uuid4().hex[:12]
    secrets = {
        "STORAGE__PG_PASSWORD": f"pgPW{tag}",
        "BROKER__SASL_PASSWORD": f"saslPW{tag}",
        "SENTRY__DSN": f"http://dsnKEY{tag}@127.0.0.1:9/42",
        "CLOUDWATCH__AWS_ACCESS_ID": f"AKIA{tag}",
        "CLOUDWATCH__AWS_SECRET_KEY": f"awsSECRET{tag}",
        "CLOUDWATCH__AWS_SESSION_TOKEN": f"awsTOKEN{tag}",
    }
    needles = [f"pgPW{tag}", f"saslPW{tag}", f"dsnKEY{tag}", f"AKIA{tag}", f"awsSECRET{tag}", f"awsTOKEN{tag}",
               "password="]
    produce_numbers(kafka_bootstrap, topic, range(50))
    base = service_env(migrated_database.env(), kafka_bootstrap, topic, group, LOGGING__DEBUG="true",
                       LOGGING__LOG_LEVEL="DEBUG", **secrets)
    sasl = {"CCX_NOTIFICATION_WRITER__BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CCX_NOTIFICATION_WRITER__BROKER__SASL_MECHANISM": "PLAIN",
            "CCX_NOTIFICATION_WRITER__BROKER__SASL_USERNAME": "user"}
    no_database = {"CCX_NOTIFICATION_WRITER__STORAGE__PG_HOST": "127.0.0.1",
                   "CCX_NOTIFICATION_WRITER__STORAGE__PG_PORT": str(free_port()),
                   "CCX_NOTIFICATION_WRITER__STORAGE__CONNECT_TIMEOUT": "2"}
    captured = []

    def run(*args, env):
        result = cli(*args, env=env, timeout=60)
        captured.append((args, result.stdout + result.stderr))
        return result

    shown = run("--show-configuration", env=base)
    assert shown.returncode == 0 and "<set, not shown>" in shown.stdout
    run("--check-kafka", env={**base, **sasl})
    assert run("--db-init", env={**base, **no_database}).returncode == 5
    assert run("--migration-info", env={**base, "CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": f"missing{tag}"}
               ).returncode != 0
    run("--replay", env={**base, **no_database})
    # The service with SASL against a broker without it, and the service storing rows, each for a few seconds.
    for name, env in (("sasl", {**base, **sasl}), ("plain", base)):
        env = {**env, "CCX_NOTIFICATION_WRITER__METRICS__ADDRESS": f"127.0.0.1:{free_port()}"}
        service = Service(env, workdir=workdir, name=name)
        try:
            deadline = time.monotonic() + (8 if name == "sasl" else 90)
            while time.monotonic() < deadline and (name == "sasl" or row_count(migrated_database) < 50):
                time.sleep(0.5)
            assert service.process.poll() is None, f"the {name} run exited: {service.stderr()[-2000:]}"
            for path in ("/metrics", "/health", "/ready"):
                status, body = service.request(path)
                captured.append((f"{name} {path}", body.decode()))
            service.stop(shutdown_bound(env) + 30)
        finally:
            service.close()
        captured.append((name + " logs", service.stdout() + service.stderr()))
    assert row_count(migrated_database) == 50, "the plain run should have stored the messages"
    assert {what for what, _ in captured} >= {f"{run} {path}" for run in ("sasl", "plain")
                                              for path in ("/metrics", "/health", "/ready")}
    for what, text in captured:
        for needle in needles:
            assert needle not in text, f"{needle!r} appears in the output of {what}"


def test_metrics_server_serves_only_metrics_health_and_ready(migrated_database, kafka_bootstrap, topic, group, workdir):
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, group)
    service = Service(env, workdir=workdir)
    try:
        service.wait_http()
        host, port = service.address.rsplit(":", 1)

        def status(method: str, path: str) -> int:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                connection.request(method, path)
                return connection.getresponse().status
            finally:
                connection.close()

        assert status("GET", "/metrics") == 200
        wait_until(lambda: status("GET", "/ready") == 200, 60, message="/ready 200")
        assert status("GET", "/health") == 200
        for path in ("/", "/metrics/", "/metrics.txt", "/healthz", "/readyz", "/admin", "/../../etc/passwd",
                     "/%2e%2e/etc/passwd", "/health/../metrics", "http://example.com/metrics", "/Metrics",
                     "/favicon.ico"):
            assert status("GET", path) == 404, path
        for path in ("/metrics", "/health", "/ready", "/"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"):
                assert status(method, path) == 405, (method, path)
        assert status("BREW", "/metrics") in (405, 501)  # not a method: http.server answers 501
        assert service.process.poll() is None
    finally:
        service.stop()
        service.close()
