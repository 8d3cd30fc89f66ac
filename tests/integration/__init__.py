"""Integration tier: the real PostgreSQL, the Kafka mock (or KAFKA_BOOTSTRAP_SERVERS) and the console script."""
