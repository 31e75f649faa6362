-- Scheduler leases: one row per job; a job runs in the process holding an unexpired lease.
CREATE TABLE scheduler_leases (
    job TEXT PRIMARY KEY,
    owner TEXT,
    lease_until_us BIGINT,
    last_run_us BIGINT,
    last_owner TEXT
);
