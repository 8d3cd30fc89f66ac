"""ccx-notification-writer: batch ingest of OpenShift Insights results from Kafka into PostgreSQL."""

__version__ = "1.0.0"
AUTHORS = "The ccx-notification-writer (Python) developers"
