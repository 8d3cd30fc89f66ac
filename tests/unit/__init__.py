"""Unit tier: no PostgreSQL, no Kafka (tests/unit/conftest.py refuses their fixtures); the whole tier runs in
seconds: ``.venv/bin/python -m pytest tests/unit``."""
