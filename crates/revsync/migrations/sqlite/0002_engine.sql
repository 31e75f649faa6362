-- The engine: ledger records, the outbox of record intents, what was written (sync log),
-- what could not be (dead letters), the identity map and the shared API budget.

-- Ledger: revsync's own model of 2Checkout facts, one JSON document per entity, with an
-- optimistic version so that concurrent processors never lose an update.
CREATE TABLE ledger_records (
    kind         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    customer_key TEXT,
    body         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX ledger_by_customer ON ledger_records (kind, customer_key);

-- Outbox: desired state of Salesforce records. At most one pending row per record: a newer
-- intent for a pending record merges into it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sobject         TEXT    NOT NULL,
    record_key      TEXT    NOT NULL,
    partition_key   TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    fields          TEXT    NOT NULL,
    event_ids       TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_us  INTEGER,
    created_us      INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL,
    last_error      TEXT
);
CREATE UNIQUE INDEX outbox_one_pending_per_record ON outbox (sobject, record_key) WHERE status = 'pending';
CREATE INDEX outbox_by_status ON outbox (status, priority, id);
CREATE INDEX outbox_by_partition ON outbox (partition_key, status);

-- Sync log: for every event, which Salesforce records it touched, or why it failed.
CREATE TABLE sync_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   INTEGER NOT NULL,
    outbox_id  INTEGER NOT NULL,
    sobject    TEXT    NOT NULL,
    record_key TEXT    NOT NULL,
    sf_id      TEXT,
    created    INTEGER,
    outcome    TEXT    NOT NULL,
    message    TEXT,
    at_us      INTEGER NOT NULL
);
CREATE INDEX sync_log_by_event ON sync_log (event_id);

-- Dead letters: permanent failures, with Salesforce's message, until replayed.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   INTEGER NOT NULL,
    sobject     TEXT    NOT NULL,
    record_key  TEXT    NOT NULL,
    partition_key TEXT  NOT NULL,
    priority    INTEGER NOT NULL,
    fields      TEXT    NOT NULL,
    event_ids   TEXT    NOT NULL,
    error_code  TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'open',
    created_us  INTEGER NOT NULL,
    resolved_us INTEGER
);
CREATE INDEX dead_letters_by_status ON dead_letters (status, id);

-- Identity map: 2Checkout customer → Salesforce Account / Contact.
CREATE TABLE identities (
    customer_key TEXT PRIMARY KEY,
    account_id   TEXT,
    contact_id   TEXT,
    source       TEXT    NOT NULL,
    updated_us   INTEGER NOT NULL
);

-- API budget shared by every revsync process: the latest usage Salesforce reported.
CREATE TABLE api_budget (
    name        TEXT PRIMARY KEY,
    used        INTEGER NOT NULL,
    max         INTEGER NOT NULL,
    observed_us INTEGER NOT NULL
);
