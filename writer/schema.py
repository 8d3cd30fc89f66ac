"""The base schema (version 0) and the numbered, reversible migrations (SPEC section 4).

Each migration is a pair of statement lists; ``migrations.py`` runs one step
per transaction. The statements are constant text: nothing here is built from
input.
"""

from __future__ import annotations

from typing import NamedTuple

from psycopg import sql

BASE_SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS notification_types (
        id        INTEGER NOT NULL,
        value     VARCHAR NOT NULL,
        frequency VARCHAR NOT NULL,
        comment   VARCHAR,
        PRIMARY KEY (id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS states (
        id      INTEGER NOT NULL,
        value   VARCHAR NOT NULL,
        comment VARCHAR,
        PRIMARY KEY (id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS reported (
        org_id            INTEGER NOT NULL,
        account_number    INTEGER NOT NULL,
        cluster           CHARACTER(36) NOT NULL,
        notification_type INTEGER NOT NULL,
        state             INTEGER NOT NULL,
        report            VARCHAR NOT NULL,
        updated_at        TIMESTAMP NOT NULL,
        notified_at       TIMESTAMP NOT NULL,
        error_log         VARCHAR,
        PRIMARY KEY (org_id, cluster, notified_at),
        CONSTRAINT fk_notification_type FOREIGN KEY (notification_type) REFERENCES notification_types(id),
        CONSTRAINT fk_state FOREIGN KEY (state) REFERENCES states(id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS new_reports (
        org_id         INTEGER NOT NULL,
        account_number INTEGER NOT NULL,
        cluster        CHARACTER(36) NOT NULL,
        report         VARCHAR NOT NULL,
        updated_at     TIMESTAMP NOT NULL,
        kafka_offset   BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (org_id, cluster, updated_at)
    )
    """,
    "CREATE INDEX IF NOT EXISTS report_kafka_offset_btree_idx ON new_reports (kafka_offset)",
    "CREATE INDEX IF NOT EXISTS new_reports_org_id_idx ON new_reports (org_id)",
    "CREATE INDEX IF NOT EXISTS new_reports_cluster_idx ON new_reports (cluster)",
    "CREATE INDEX IF NOT EXISTS new_reports_updated_at_asc_idx ON new_reports (updated_at ASC)",
    "CREATE INDEX IF NOT EXISTS new_reports_updated_at_desc_idx ON new_reports (updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS notified_at_desc_idx ON reported (notified_at DESC)",
    "CREATE INDEX IF NOT EXISTS updated_at_desc_idx ON reported (updated_at ASC)",
    "CREATE INDEX IF NOT EXISTS notification_types_id_idx ON notification_types (id)",
    """
    INSERT INTO notification_types (id, value, frequency, comment) VALUES
        (1, 'instant', '* * * * * *', 'instant notifications performed ASAP'),
        (2, 'weekly', '@weekly', 'weekly summary')
    ON CONFLICT (id) DO NOTHING
    """,
    """
    INSERT INTO states (id, value, comment) VALUES
        (1, 'sent', 'notification has been sent to user'),
        (2, 'same', 'skipped, report is the same as previous one'),
        (3, 'lower', 'skipped, all issues has low priority'),
        (4, 'error', 'notification delivery error')
    ON CONFLICT (id) DO NOTHING
    """,
]

MIGRATION_INFO_TABLE = "migration_info"

# Every table the service creates, in an order in which they can be dropped
# (referencing tables before referenced ones).
TABLES_IN_DROP_ORDER = [
    "read_errors",
    "new_reports",
    "reported",
    "event_targets",
    "notification_types",
    "states",
    MIGRATION_INFO_TABLE,
]

# Tables holding data the service and its readers produce; lookup tables are
# reference data defined by the schema and migrations, so --db-cleanup keeps them.
DATA_TABLES_IN_DELETE_ORDER = ["read_errors", "new_reports", "reported"]


class Migration(NamedTuple):
    description: str
    up: list[str] | list[sql.Composed]
    down: list[str] | list[sql.Composed]


TABLE_COMMENTS = {
    "notification_types": "specification of all notification types and their frequencies",
    "states": "all possible states of a sent or skipped notification",
    "reported": "notifications reported to customers, with their state and the report they were built from",
    "new_reports": "new reports consumed from Kafka, waiting to be processed by the notification service",
    "migration_info": "the version of the database schema (one row)",
    "event_targets": "targets the notifications are sent to (notification back end, service log)",
    "read_errors": "errors found while reading reports from new_reports",
}

MIGRATIONS: list[Migration] = [
    Migration(
        "create table event_targets",
        [
            """
            CREATE TABLE event_targets (
                id       INTEGER NOT NULL PRIMARY KEY,
                name     VARCHAR NOT NULL UNIQUE,
                metainfo VARCHAR NOT NULL UNIQUE
            )
            """
        ],
        ["DROP TABLE event_targets"],
    ),
    Migration(
        "add reported.event_type_id",
        [
            "ALTER TABLE reported ADD COLUMN event_type_id INTEGER "
            "CONSTRAINT fk_event_type_id REFERENCES event_targets(id)"
        ],
        ["ALTER TABLE reported DROP COLUMN event_type_id"],
    ),
    Migration(
        "insert the event targets",
        [
            """
            INSERT INTO event_targets (id, name, metainfo) VALUES
                (1, 'notifications backend', 'the target of the report is the ccx notification service back end'),
                (2, 'service log', 'the target of the report is the ServiceLog')
            """
        ],
        ["DELETE FROM event_targets"],
    ),
    Migration(
        "make reported.event_type_id not null (default target 1)",
        [
            "UPDATE reported SET event_type_id = 1 WHERE event_type_id IS NULL",
            "ALTER TABLE reported ALTER COLUMN event_type_id SET NOT NULL",
        ],
        [
            "ALTER TABLE reported ALTER COLUMN event_type_id DROP NOT NULL",
            "UPDATE reported SET event_type_id = NULL WHERE event_type_id = 1",
        ],
    ),
    Migration(
        "create table read_errors",
        [
            """
            CREATE TABLE read_errors (
                error_id   SERIAL NOT NULL PRIMARY KEY,
                org_id     INTEGER NOT NULL,
                cluster    CHARACTER(36) NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                error_text VARCHAR(1000) NOT NULL,
                created_at TIMESTAMP NOT NULL,
                CONSTRAINT read_errors_org_id_cluster_updated_at_fkey
                    FOREIGN KEY (org_id, cluster, updated_at)
                    REFERENCES new_reports(org_id, cluster, updated_at),
                CONSTRAINT read_errors_error_id_org_id_cluster_updated_at_key
                    UNIQUE (error_id, org_id, cluster, updated_at)
            )
            """
        ],
        ["DROP TABLE read_errors"],
    ),
    Migration(
        "read_errors foreign key ON DELETE CASCADE",
        [
            "ALTER TABLE read_errors DROP CONSTRAINT read_errors_org_id_cluster_updated_at_fkey",
            "ALTER TABLE read_errors ADD CONSTRAINT read_errors_org_id_cluster_updated_at_fkey "
            "FOREIGN KEY (org_id, cluster, updated_at) "
            "REFERENCES new_reports(org_id, cluster, updated_at) ON DELETE CASCADE",
        ],
        [
            "ALTER TABLE read_errors DROP CONSTRAINT read_errors_org_id_cluster_updated_at_fkey",
            "ALTER TABLE read_errors ADD CONSTRAINT read_errors_org_id_cluster_updated_at_fkey "
            "FOREIGN KEY (org_id, cluster, updated_at) "
            "REFERENCES new_reports(org_id, cluster, updated_at)",
        ],
    ),
    Migration(
        "comments on all tables",
        [sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(text))
         for table, text in TABLE_COMMENTS.items()],
        [sql.SQL("COMMENT ON TABLE {} IS NULL").format(sql.Identifier(table)) for table in TABLE_COMMENTS],
    ),
    Migration(
        "indexes for the notification service's queries on reported",
        [
            "CREATE INDEX IF NOT EXISTS idx_reported_event_state_org_cluster "
            "ON reported (event_type_id, state, org_id, cluster)",
            "CREATE INDEX IF NOT EXISTS idx_reported_updated_at ON reported (updated_at)",
        ],
        [
            "DROP INDEX IF EXISTS idx_reported_event_state_org_cluster",
            "DROP INDEX IF EXISTS idx_reported_updated_at",
        ],
    ),
]

LATEST_VERSION = len(MIGRATIONS)
