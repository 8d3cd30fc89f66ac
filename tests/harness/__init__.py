"""The one test harness.

Plain modules (no pytest; the benchmarks may import them):

- ``database``: a database of a test's own (``Database``), row counts and keys, backends to terminate, a
  row-count monitor;
- ``kafka``: watermarks, end and committed offsets, reading a whole topic, producing records;
- ``service``: the console script as a subprocess (``Service``), its environment (``service_env``), a free
  port, the metrics text parsed, waiting for a condition;
- ``scenario``: the fault scenarios' skeleton (``Scenario``: produce, monitor, service, drain, verify,
  record) and what it needs (expected keys, exact comparison, the reliability records);
- ``config`` (loading the configuration in-process), ``messages``, ``storage``, ``worker``, ``cloudwatch``,
  ``deploy``: builders and helpers of one subject each;
- ``proxy`` (a TCP proxy that goes silent), ``mock_cluster`` (librdkafka's mock with fault injection),
  ``sentry_sink``, ``original_standin`` (a stand-in for the original service).

Fixture plugins (loaded by ``pytest_plugins`` in tests/conftest.py): ``fix_postgres``, ``fix_kafka``,
``fix_service``, ``fix_storage``, ``fix_worker``, ``fix_config``, ``fix_cloudwatch``, ``fix_scenario``.
"""
