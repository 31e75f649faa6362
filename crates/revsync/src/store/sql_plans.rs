//! The query plans of the statements on hot paths, as SQLite makes them for a fresh database
//! (no statistics) with full-size batches of bound values. Each must look its rows up by an
//! index: a plan that walks a table, or every pending row, makes a lease, a poll or a commit
//! cost in proportion to the backlog (`revsync bench backlog` finds it too, minutes later).

use sqlx::Row;

use super::sql::MAX_BINDS;
use super::sql_engine::{complete_events_sql, ledger_records_sql, pending_intents_sql};
use super::sql_outbox::{
    blocked_partitions_sql, in_flight_sql, lease_partitions_sql, written_sql, LEASE_PAGE_SQL,
    OUTBOX_PENDING_SQL,
};

/// SQLite's plan for `sql`, one line per step. `binds` spells the placeholders' types, `t`
/// for text and `i` for an integer, as the store binds them (affinity changes plans).
async fn plan(store: &super::SqlStore, sql: &str, binds: &str) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query(&explain);
    for kind in binds.chars() {
        query = match kind {
            't' => query.bind("k"),
            _ => query.bind(0_i64),
        };
    }
    query
        .fetch_all(&store.pool)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN failed for {sql}: {e}"))
        .iter()
        .map(|r| r.try_get::<String, _>("detail").expect("detail column"))
        .collect()
}

#[tokio::test]
async fn hot_statements_look_their_rows_up_by_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = super::open(&url, &Default::default()).await.expect("store");
    let n = MAX_BINDS - 2;
    let keys = |first: &str, each: &str| format!("{first}{}", each.repeat(n));
    // (statement, its SQL, its placeholders' types, a step its plan must contain)
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "pending intents of records (enqueue)",
            pending_intents_sql(n),
            keys("t", "t"),
            "outbox_one_pending_per_record (sobject=? AND record_key=?)",
        ),
        (
            "ledger records of a run",
            ledger_records_sql(n),
            keys("t", "t"),
            "sqlite_autoindex_ledger_records_1 (kind=? AND key=?)",
        ),
        (
            "events completed by a run",
            complete_events_sql(n),
            keys("ti", "i"),
            "id=?",
        ),
        (
            "a page of the lease walk",
            LEASE_PAGE_SQL.to_owned(),
            "iiii".into(),
            "outbox_by_status (status=? AND priority",
        ),
        (
            "blocked partitions of a page",
            blocked_partitions_sql(n),
            keys("i", "t"),
            "outbox_by_partition (partition_key=?",
        ),
        (
            "leasing the chosen partitions",
            lease_partitions_sql(n),
            keys("ti", "t"),
            "outbox_by_partition (partition_key=? AND status=?)",
        ),
        (
            "written intents settled",
            written_sql(n),
            keys("i", "i"),
            "INTEGER PRIMARY KEY (rowid=?)",
        ),
        (
            "in-flight intents being settled",
            in_flight_sql(n),
            keys("", "i"),
            "INTEGER PRIMARY KEY (rowid=?)",
        ),
        (
            "the sink's poll",
            OUTBOX_PENDING_SQL.to_owned(),
            "ii".into(),
            "COVERING INDEX outbox_by_due (status=?)",
        ),
    ];
    for (name, sql, binds, wanted) in cases {
        let steps = plan(&store, &sql, &binds).await;
        let shown = steps.join(" | ");
        assert!(
            steps.iter().any(|s| s.contains(wanted)),
            "{name}: expected a step with `{wanted}`, got: {shown}"
        );
        for table in [
            "outbox",
            "events",
            "ledger_records",
            "deliveries",
            "identities",
        ] {
            assert!(
                !steps.iter().any(|s| s == &format!("SCAN {table}")
                    || s.starts_with(&format!("SCAN {table} "))
                    || s.contains("AUTOMATIC")),
                "{name}: walks {table}: {shown}"
            );
        }
        // A lookup by key must not be answered by walking the rows of one status.
        if name != "the sink's poll" && name != "a page of the lease walk" {
            assert!(
                !steps.iter().any(|s| s.ends_with("(status=?)")),
                "{name}: walks every row of a status: {shown}"
            );
        }
    }
}
