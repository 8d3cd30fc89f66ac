-- ccx-notification-writer: the latest database schema (migration version 8).
--
-- The same schema as `ccx-notification-writer --db-init-migration`, `--db-init`
-- and `--migrate latest` produce, for setting a database up with psql:
--     psql -v ON_ERROR_STOP=1 -1 -f schema.sql DBNAME
-- tests/test_schema_file.py compares the two catalogs, so they cannot drift.

CREATE TABLE migration_info (
    version INTEGER NOT NULL
);
INSERT INTO migration_info (version) VALUES (8);

CREATE TABLE notification_types (
    id        INTEGER NOT NULL PRIMARY KEY,
    value     VARCHAR NOT NULL,
    frequency VARCHAR NOT NULL,
    comment   VARCHAR
);
INSERT INTO notification_types (id, value, frequency, comment) VALUES
    (1, 'instant', '* * * * * *', 'instant notifications performed ASAP'),
    (2, 'weekly', '@weekly', 'weekly summary');

CREATE TABLE states (
    id      INTEGER NOT NULL PRIMARY KEY,
    value   VARCHAR NOT NULL,
    comment VARCHAR
);
INSERT INTO states (id, value, comment) VALUES
    (1, 'sent', 'notification has been sent to user'),
    (2, 'same', 'skipped, report is the same as previous one'),
    (3, 'lower', 'skipped, all issues has low priority'),
    (4, 'error', 'notification delivery error');

CREATE TABLE event_targets (
    id       INTEGER NOT NULL PRIMARY KEY,
    name     VARCHAR NOT NULL UNIQUE,
    metainfo VARCHAR NOT NULL UNIQUE
);
INSERT INTO event_targets (id, name, metainfo) VALUES
    (1, 'notifications backend', 'the target of the report is the ccx notification service back end'),
    (2, 'service log', 'the target of the report is the ServiceLog');

CREATE TABLE reported (
    org_id            INTEGER NOT NULL,
    account_number    INTEGER NOT NULL,
    cluster           CHARACTER(36) NOT NULL,
    notification_type INTEGER NOT NULL,
    state             INTEGER NOT NULL,
    report            VARCHAR NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    notified_at       TIMESTAMP NOT NULL,
    error_log         VARCHAR,
    event_type_id     INTEGER NOT NULL,
    PRIMARY KEY (org_id, cluster, notified_at),
    CONSTRAINT fk_notification_type FOREIGN KEY (notification_type) REFERENCES notification_types(id),
    CONSTRAINT fk_state FOREIGN KEY (state) REFERENCES states(id),
    CONSTRAINT fk_event_type_id FOREIGN KEY (event_type_id) REFERENCES event_targets(id)
);

CREATE TABLE new_reports (
    org_id         INTEGER NOT NULL,
    account_number INTEGER NOT NULL,
    cluster        CHARACTER(36) NOT NULL,
    report         VARCHAR NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    kafka_offset   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, cluster, updated_at)
);

CREATE TABLE read_errors (
    error_id   SERIAL NOT NULL PRIMARY KEY,
    org_id     INTEGER NOT NULL,
    cluster    CHARACTER(36) NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    error_text VARCHAR(1000) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT read_errors_org_id_cluster_updated_at_fkey
        FOREIGN KEY (org_id, cluster, updated_at)
        REFERENCES new_reports(org_id, cluster, updated_at) ON DELETE CASCADE,
    CONSTRAINT read_errors_error_id_org_id_cluster_updated_at_key
        UNIQUE (error_id, org_id, cluster, updated_at)
);

CREATE INDEX report_kafka_offset_btree_idx ON new_reports (kafka_offset);
CREATE INDEX new_reports_org_id_idx ON new_reports (org_id);
CREATE INDEX new_reports_cluster_idx ON new_reports (cluster);
CREATE INDEX new_reports_updated_at_asc_idx ON new_reports (updated_at ASC);
CREATE INDEX new_reports_updated_at_desc_idx ON new_reports (updated_at DESC);
CREATE INDEX notified_at_desc_idx ON reported (notified_at DESC);
CREATE INDEX updated_at_desc_idx ON reported (updated_at ASC);
CREATE INDEX notification_types_id_idx ON notification_types (id);
CREATE INDEX idx_reported_event_state_org_cluster ON reported (event_type_id, state, org_id, cluster);
CREATE INDEX idx_reported_updated_at ON reported (updated_at);

COMMENT ON TABLE notification_types IS 'specification of all notification types and their frequencies';
COMMENT ON TABLE states IS 'all possible states of a sent or skipped notification';
COMMENT ON TABLE reported IS 'notifications reported to customers, with their state and the report they were built from';
COMMENT ON TABLE new_reports IS 'new reports consumed from Kafka, waiting to be processed by the notification service';
COMMENT ON TABLE migration_info IS 'the version of the database schema (one row)';
COMMENT ON TABLE event_targets IS 'targets the notifications are sent to (notification back end, service log)';
COMMENT ON TABLE read_errors IS 'errors found while reading reports from new_reports';
