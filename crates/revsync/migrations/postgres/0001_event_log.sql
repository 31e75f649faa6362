-- Event log: one row per semantic event, one row per delivery, and the quarantine.
-- Timestamps are microseconds since the Unix epoch (portable across both stores).
CREATE TABLE events (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              TEXT    NOT NULL,
    fingerprint       TEXT    NOT NULL UNIQUE,
    reference         TEXT    NOT NULL,
    customer_key      TEXT,
    status            TEXT    NOT NULL DEFAULT 'pending',
    delivery_count    BIGINT NOT NULL DEFAULT 1,
    first_received_us BIGINT NOT NULL,
    last_received_us  BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_until_us    BIGINT,
    processed_us      BIGINT,
    last_error        TEXT
);
CREATE INDEX events_by_status ON events (status, id);
CREATE INDEX events_by_reference ON events (reference);

CREATE TABLE deliveries (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id            BIGINT NOT NULL REFERENCES events (id),
    kind                TEXT    NOT NULL,
    received_us         BIGINT NOT NULL,
    content_type        TEXT    NOT NULL,
    remote_addr         TEXT,
    signature_algorithm TEXT    NOT NULL,
    body                BYTEA   NOT NULL
);
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE quarantine (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_us  BIGINT NOT NULL,
    path_kind    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    remote_addr  TEXT,
    reason       TEXT    NOT NULL,
    body         BYTEA   NOT NULL,
    truncated    BIGINT NOT NULL DEFAULT 0,
    status       TEXT    NOT NULL DEFAULT 'held',
    resolved_us  BIGINT,
    event_id     BIGINT REFERENCES events (id)
);
CREATE INDEX quarantine_by_status ON quarantine (status, id);
