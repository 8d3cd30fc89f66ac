"""Exit statuses, as the original service defines them (SPEC section 5)."""

OK = 0
CONFIGURATION_ERROR = 1
CONSUMER_ERROR = 2
PRODUCER_ERROR = 3
KAFKA_ERROR = 4
STORAGE_ERROR = 5
HTTP_SERVER_ERROR = 6
MIGRATION_ERROR = 7
# Added by this project: a replay stopped (SIGTERM/SIGINT) before it covered its whole range.
REPLAY_INCOMPLETE = 8
