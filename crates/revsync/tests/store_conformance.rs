//! One conformance suite, every store backend: each test below runs against SQLite and
//! against PostgreSQL (when `REVSYNC_TEST_POSTGRES_URL` is set; `.ci/run` sets it).

mod support;

use std::sync::Arc;

use revsync::intent::{Priority, RecordIntent, RecordKey};
use revsync::store::{
    Backend, Effects, EventLog, EventStatus, Micros, NewDelivery, NewQuarantine, QuarantineStatus,
    RecordWrite, Store, StoreError,
};

fn delivery(fingerprint: &str, reference: &str, body: &[u8]) -> NewDelivery {
    NewDelivery {
        kind: "ipn".into(),
        received_at: Micros::now(),
        content_type: "application/x-www-form-urlencoded".into(),
        remote_addr: Some("127.0.0.1".into()),
        signature_algorithm: "sha3-256".into(),
        body: body.to_vec(),
        fingerprint: fingerprint.into(),
        reference: reference.into(),
        customer_key: Some("cust-1".into()),
    }
}

fn quarantined(reason: &str) -> NewQuarantine {
    NewQuarantine {
        received_at: Micros::now(),
        path_kind: "ipn".into(),
        content_type: "application/x-www-form-urlencoded".into(),
        remote_addr: None,
        reason: reason.into(),
        body: b"REFNO=1&HASH=bad".to_vec(),
        truncated: false,
    }
}

async fn resend_is_one_event_with_every_delivery_kept(store: Arc<dyn Store>) {
    // Bytes that are not valid UTF-8 must survive byte for byte.
    let first = store
        .append_deliveries(&[delivery("fp-a", "100", b"REFNO=100&X=\xff")])
        .await
        .unwrap();
    assert!(first[0].new_event);
    let again = store
        .append_deliveries(&[delivery("fp-a", "100", b"REFNO=100&MESSAGE_ID=2")])
        .await
        .unwrap();
    assert!(!again[0].new_event);
    assert_eq!(first[0].event_id, again[0].event_id);
    assert_ne!(first[0].delivery_id, again[0].delivery_id);

    let event = store.event(first[0].event_id).await.unwrap().unwrap();
    assert_eq!(event.delivery_count, 2);
    assert_eq!(event.status, EventStatus::Pending);
    assert_eq!(event.reference, "100");
    assert_eq!(event.customer_key.as_deref(), Some("cust-1"));
    let deliveries = store.deliveries_of(event.id).await.unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].body, b"REFNO=100&X=\xff");
    assert_eq!(deliveries[1].body, b"REFNO=100&MESSAGE_ID=2");

    // The first delivery of each event, in one read; unknown ids are simply absent.
    let other = store
        .append_deliveries(&[delivery("fp-b", "101", b"REFNO=101")])
        .await
        .unwrap();
    let firsts = store
        .first_deliveries(&[other[0].event_id, event.id, 999_999])
        .await
        .unwrap();
    let got: Vec<(i64, &[u8])> = firsts
        .iter()
        .map(|d| (d.event_id, d.body.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (event.id, &b"REFNO=100&X=\xff"[..]),
            (other[0].event_id, &b"REFNO=101"[..])
        ]
    );
}

async fn batch_with_repeats_inside_it(store: Arc<dyn Store>) {
    let batch = vec![
        delivery("fp-1", "1", b"a"),
        delivery("fp-2", "2", b"b"),
        delivery("fp-1", "1", b"c"),
    ];
    let out = store.append_deliveries(&batch).await.unwrap();
    assert_eq!(
        out.iter().map(|a| a.new_event).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(out[0].event_id, out[2].event_id);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.events, counts.deliveries, counts.pending),
        (2, 3, 2)
    );
    assert!(store.append_deliveries(&[]).await.unwrap().is_empty());
}

async fn concurrent_resends_make_one_event(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_deliveries(&[delivery("fp-race", "7", format!("{i}").as_bytes())])
                .await
                .unwrap()[0]
        }));
    }
    let mut new_events = 0;
    let mut event_ids = std::collections::BTreeSet::new();
    for t in tasks {
        let a = t.await.unwrap();
        new_events += usize::from(a.new_event);
        event_ids.insert(a.event_id);
    }
    assert_eq!(new_events, 1);
    assert_eq!(event_ids.len(), 1);
    let event = store
        .event(*event_ids.first().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.delivery_count, 16);
}

async fn quarantine_admit_once(store: Arc<dyn Store>) {
    let held = store
        .quarantine(&quarantined("signature rejected"))
        .await
        .unwrap();
    let other = store.quarantine(&quarantined("malformed")).await.unwrap();
    let entry = store.quarantined(held).await.unwrap().unwrap();
    assert_eq!(entry.status, QuarantineStatus::Held);
    assert_eq!(entry.reason, "signature rejected");
    assert_eq!(entry.body, b"REFNO=1&HASH=bad");
    assert!(store.quarantined(held + 1000).await.unwrap().is_none());

    let appended = store
        .admit_quarantined(held, &delivery("fp-q", "1", b"REFNO=1"))
        .await
        .unwrap();
    assert!(appended.new_event);
    let entry = store.quarantined(held).await.unwrap().unwrap();
    assert_eq!(entry.status, QuarantineStatus::Admitted);
    assert_eq!(entry.event_id, Some(appended.event_id));
    assert!(entry.resolved_at.is_some());

    // A second admit changes nothing.
    let err = store
        .admit_quarantined(held, &delivery("fp-q2", "1", b"REFNO=1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.counts().await.unwrap().events, 1);

    let listed = store
        .list_quarantine(Some(QuarantineStatus::Held), 10)
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [other]);
    assert_eq!(store.list_quarantine(None, 10).await.unwrap().len(), 2);
    assert_eq!(store.counts().await.unwrap().quarantined_held, 1);
}

async fn leases_give_each_event_one_owner(store: Arc<dyn Store>) {
    let batch: Vec<_> = (0..5)
        .map(|i| delivery(&format!("fp-l{i}"), &i.to_string(), b"x"))
        .collect();
    store.append_deliveries(&batch).await.unwrap();
    let now = Micros::now();
    let until = Micros(now.0 + 60_000_000);
    let a = store.lease_pending("a", now, until, 3).await.unwrap();
    let b = store.lease_pending("b", now, until, 10).await.unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 2);
    assert!(a.iter().all(|e| !b.iter().any(|f| f.id == e.id)));
    assert!(a.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(store
        .lease_pending("c", now, until, 10)
        .await
        .unwrap()
        .is_empty());

    // Only the owner completes.
    let nothing = Effects::default();
    assert!(!store
        .commit_event(a[0].id, "b", &nothing, now)
        .await
        .unwrap());
    assert!(store
        .commit_event(a[0].id, "a", &nothing, now)
        .await
        .unwrap());
    assert!(!store
        .commit_event(a[0].id, "a", &nothing, now)
        .await
        .unwrap());
    // Permanent failure; transient failure goes back to pending after the lease.
    assert!(store
        .fail_event(a[1].id, "a", "bad data", true)
        .await
        .unwrap());
    assert!(store
        .fail_event(a[2].id, "a", "timeout", false)
        .await
        .unwrap());
    let failed = store.event(a[1].id).await.unwrap().unwrap();
    assert_eq!(failed.status, EventStatus::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("bad data"));
    let retry = store.event(a[2].id).await.unwrap().unwrap();
    assert_eq!(retry.status, EventStatus::Pending);
    assert!(store
        .lease_pending("c", now, until, 10)
        .await
        .unwrap()
        .is_empty());

    // After the leases run out, what is still pending is leased again (its owner died).
    let later = Micros(until.0 + 1);
    let again = store
        .lease_pending("c", later, Micros(later.0 + 1), 10)
        .await
        .unwrap();
    let mut ids: Vec<_> = again.iter().map(|e| e.id).collect();
    ids.sort();
    let mut expected = vec![a[2].id, b[0].id, b[1].id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(again.iter().all(|e| e.attempts == 2));

    let counts = store.counts().await.unwrap();
    assert_eq!((counts.processed, counts.failed, counts.pending), (1, 1, 3));
}

async fn ping_and_backend(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(matches!(
        store.backend(),
        Backend::Sqlite | Backend::Postgres
    ));
}

fn write(key: &str, body: &str, expected_version: Option<i64>) -> RecordWrite {
    RecordWrite {
        kind: "order".into(),
        key: key.into(),
        customer_key: Some("cust-1".into()),
        body: body.into(),
        expected_version,
    }
}

fn account_intent(fields: serde_json::Value) -> RecordIntent {
    RecordIntent {
        sobject: "Account".into(),
        key: RecordKey::external("TwoCheckout_Customer_Ref__c", "cust-1"),
        fields: serde_json::from_value(fields).unwrap(),
        partition: "cust-1".into(),
        priority: Priority::Payment,
    }
}

/// Leases the only pending event for `owner`.
async fn lease_one(store: &Arc<dyn Store>, fingerprint: &str) -> i64 {
    store
        .append_deliveries(&[delivery(fingerprint, "1", b"x")])
        .await
        .unwrap();
    let now = Micros::now();
    let leased = store
        .lease_pending("p", now, Micros(now.0 + 60_000_000), 1)
        .await
        .unwrap();
    leased[0].id
}

async fn commit_event_is_all_or_nothing_with_versions(store: Arc<dyn Store>) {
    let e1 = lease_one(&store, "fp-c1").await;
    let effects = Effects {
        records: vec![write("o1", r#"{"status":"COMPLETE"}"#, None)],
        intents: vec![account_intent(serde_json::json!({"Name": "Acme"}))],
    };
    assert!(store
        .commit_event(e1, "p", &effects, Micros::now())
        .await
        .unwrap());
    let keys = [("order".to_string(), "o1".to_string())];
    let records = store.ledger_records(&keys).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, 1);
    assert_eq!(
        store.event(e1).await.unwrap().unwrap().status,
        EventStatus::Processed
    );

    // A write against a stale version fails and leaves nothing behind: not the other
    // record, not the intent, not the event's completion.
    let e2 = lease_one(&store, "fp-c2").await;
    let stale = Effects {
        records: vec![
            write("o2", "{}", None),
            write("o1", r#"{"status":"REFUND"}"#, Some(0)),
        ],
        intents: vec![account_intent(serde_json::json!({"Phone": "1"}))],
    };
    let err = store
        .commit_event(e2, "p", &stale, Micros::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let all = store.ledger_records_of_kind("order").await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].body, r#"{"status":"COMPLETE"}"#);
    assert_eq!(
        store.event(e2).await.unwrap().unwrap().status,
        EventStatus::Pending
    );
    // Creating a record that exists is a conflict too.
    let dup = Effects {
        records: vec![write("o1", "{}", None)],
        intents: vec![],
    };
    assert!(matches!(
        store.commit_event(e2, "p", &dup, Micros::now()).await,
        Err(StoreError::Conflict(_))
    ));
    // With the right version it goes through, and the version moves on.
    let fresh = Effects {
        records: vec![write("o1", r#"{"status":"REFUND"}"#, Some(1))],
        intents: vec![],
    };
    assert!(store
        .commit_event(e2, "p", &fresh, Micros::now())
        .await
        .unwrap());
    let records = store.ledger_records(&keys).await.unwrap();
    assert_eq!(
        (records[0].version, records[0].body.as_str()),
        (2, r#"{"status":"REFUND"}"#)
    );
    assert!(store
        .ledger_records(&[("order".into(), "missing".into())])
        .await
        .unwrap()
        .is_empty());
}

async fn lost_lease_commits_nothing(store: Arc<dyn Store>) {
    let e = lease_one(&store, "fp-lost").await;
    let effects = Effects {
        records: vec![write("o9", "{}", None)],
        intents: vec![account_intent(serde_json::json!({"Name": "X"}))],
    };
    assert!(!store
        .commit_event(e, "someone-else", &effects, Micros::now())
        .await
        .unwrap());
    assert!(store
        .ledger_records_of_kind("order")
        .await
        .unwrap()
        .is_empty());
}

async fn commit_events_is_one_transaction_with_per_event_leases(store: Arc<dyn Store>) {
    let batch: Vec<_> = (0..3)
        .map(|i| delivery(&format!("fp-b{i}"), &format!("b{i}"), b"x"))
        .collect();
    store.append_deliveries(&batch).await.unwrap();
    let now = Micros::now();
    let until = Micros(now.0 + 60_000_000);
    let ev = store.lease_pending("p", now, until, 3).await.unwrap();
    let ids: Vec<i64> = ev.iter().map(|e| e.id).collect();
    let effects = |key: &str, expected: Option<i64>| Effects {
        records: vec![write(key, r#"{"n":1}"#, expected)],
        intents: vec![account_intent(serde_json::json!({ "Name": key }))],
    };

    // One stale record anywhere: nothing of the batch is written, every event stays pending.
    let stale = vec![
        (ids[0], effects("ob0", None)),
        (ids[1], effects("ob1", Some(4))),
    ];
    let err = store.commit_events("p", &stale, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(store
        .ledger_records_of_kind("order")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
    for id in &ids {
        assert_eq!(
            store.event(*id).await.unwrap().unwrap().status,
            EventStatus::Pending
        );
    }

    // An event whose lease went elsewhere is skipped; the others commit together.
    store
        .fail_event(ids[1], "p", "given back", false)
        .await
        .unwrap();
    let good = vec![
        (ids[0], effects("ob0", None)),
        (ids[1], effects("ob1", None)),
        (ids[2], effects("ob2", None)),
    ];
    assert_eq!(
        store.commit_events("p", &good, now).await.unwrap(),
        vec![true, false, true]
    );
    let keys: Vec<String> = store
        .ledger_records_of_kind("order")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["ob0", "ob2"]);
    assert_eq!(
        store.event(ids[1]).await.unwrap().unwrap().status,
        EventStatus::Pending
    );
    assert_eq!(
        store.event(ids[2]).await.unwrap().unwrap().status,
        EventStatus::Processed
    );
    // An empty batch is a no-op.
    assert!(store.commit_events("p", &[], now).await.unwrap().is_empty());
}

async fn an_intent_returned_from_flight_folds_under_a_newer_one(store: Arc<dyn Store>) {
    use revsync::store::Settlement;
    let now = Micros::now();
    let until = Micros(now.0 + 60_000_000);
    for (settle, expire) in [(true, false), (false, false), (false, true)] {
        store
            .enqueue(
                &[account_intent(
                    serde_json::json!({"Name": "Acme", "Phone": "1"}),
                )],
                now,
            )
            .await
            .unwrap();
        let leased = store
            .lease_outbox("s", now, until, 10, Priority::Backfill)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        // While it is in flight a newer intent for the same record arrives.
        store
            .enqueue(&[account_intent(serde_json::json!({"Phone": "2"}))], now)
            .await
            .unwrap();
        if expire {
            // The sink died: its lease runs out and the next lease folds it back.
            let later = Micros(until.0 + 1);
            let again = store
                .lease_outbox(
                    "t",
                    later,
                    Micros(later.0 + 60_000_000),
                    10,
                    Priority::Backfill,
                )
                .await
                .unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(
                serde_json::to_value(&again[0].intent.fields).unwrap(),
                serde_json::json!({"Name": "Acme", "Phone": "2"})
            );
            store
                .settle_outbox(
                    &[Settlement::Written {
                        id: again[0].id,
                        sf_id: None,
                        created: None,
                    }],
                    later,
                )
                .await
                .unwrap();
            continue;
        }
        let s = if settle {
            Settlement::Retry {
                id: leased[0].id,
                not_before: now,
                error: "UNABLE_TO_LOCK_ROW".into(),
            }
        } else {
            Settlement::Release { id: leased[0].id }
        };
        store.settle_outbox(&[s], now).await.unwrap();
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.pending, stats.in_flight), (1, 0));
        assert_eq!(
            store.outbox_pending(10, now).await.unwrap(),
            (stats.pending, stats.oldest_due),
            "the sink's poll agrees with the full stats"
        );
        let next = store
            .lease_outbox("s", now, until, 10, Priority::Backfill)
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(
            serde_json::to_value(&next[0].intent.fields).unwrap(),
            serde_json::json!({"Name": "Acme", "Phone": "2"}),
            "newer values win, older-only fields are kept"
        );
        store
            .settle_outbox(
                &[Settlement::Written {
                    id: next[0].id,
                    sf_id: None,
                    created: None,
                }],
                now,
            )
            .await
            .unwrap();
    }
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.written), (0, 0, 3));
    assert_eq!(store.outbox_pending(10, now).await.unwrap(), (0, None));
}

fn intent_in(partition: &str, record: &str, priority: Priority) -> RecordIntent {
    RecordIntent {
        sobject: "Account".into(),
        key: RecordKey::external("TwoCheckout_Customer_Ref__c", record),
        fields: serde_json::from_value(serde_json::json!({"Name": record})).unwrap(),
        partition: partition.into(),
        priority,
    }
}

/// The sink leases whole partitions, most urgent first, and only when every pending intent
/// of a partition is due and none of it is in flight — however far down the queue the
/// leasable ones sit.
async fn outbox_leases_whole_due_partitions_most_urgent_first(store: Arc<dyn Store>) {
    use revsync::store::Settlement;
    let now = Micros::now();
    let until = Micros(now.0 + 60_000_000);
    // 300 partitions blocked by a retry that is not due yet, each with a due intent too.
    let blocked: Vec<RecordIntent> = (0..300)
        .map(|i| {
            intent_in(
                &format!("blocked-{i}"),
                &format!("retry-{i}"),
                Priority::Backfill,
            )
        })
        .collect();
    store.enqueue(&blocked, now).await.unwrap();
    let leased = store
        .lease_outbox("s", now, until, 1000, Priority::Backfill)
        .await
        .unwrap();
    assert_eq!(leased.len(), 300);
    let retries: Vec<Settlement> = leased
        .iter()
        .map(|item| Settlement::Retry {
            id: item.id,
            not_before: Micros(now.0 + 3_600_000_000),
            error: "UNABLE_TO_LOCK_ROW".into(),
        })
        .collect();
    store.settle_outbox(&retries, now).await.unwrap();
    let due_too: Vec<RecordIntent> = (0..300)
        .map(|i| {
            intent_in(
                &format!("blocked-{i}"),
                &format!("due-{i}"),
                Priority::Backfill,
            )
        })
        .collect();
    store.enqueue(&due_too, now).await.unwrap();
    // One partition with an intent in flight and a newer one waiting.
    store
        .enqueue(&[intent_in("flying", "flying-1", Priority::Backfill)], now)
        .await
        .unwrap();
    let flying = store
        .lease_outbox("s", now, until, 1, Priority::Backfill)
        .await
        .unwrap();
    assert_eq!(flying.len(), 1);
    assert_eq!(flying[0].intent.partition, "flying");
    store
        .enqueue(&[intent_in("flying", "flying-2", Priority::Payment)], now)
        .await
        .unwrap();
    // Leasable: two backfill partitions queued behind all of that, then a payment.
    for (partition, record, priority) in [
        ("late-a", "late-a-1", Priority::Backfill),
        ("late-a", "late-a-2", Priority::Backfill),
        ("late-b", "late-b-1", Priority::Backfill),
        ("urgent", "urgent-1", Priority::Payment),
    ] {
        store
            .enqueue(&[intent_in(partition, record, priority)], now)
            .await
            .unwrap();
    }
    let only_payments = store
        .lease_outbox("s", now, until, 10, Priority::Payment)
        .await
        .unwrap();
    let partitions: Vec<&str> = only_payments
        .iter()
        .map(|i| i.intent.partition.as_str())
        .collect();
    assert_eq!(
        partitions,
        ["urgent"],
        "priority cap and a partition in flight respected"
    );
    let two = store
        .lease_outbox("s", now, until, 2, Priority::Backfill)
        .await
        .unwrap();
    let mut records: Vec<String> = two
        .iter()
        .map(|i| i.intent.key.value().to_string())
        .collect();
    records.sort();
    assert_eq!(
        records,
        ["late-a-1", "late-a-2", "late-b-1"],
        "whole partitions, oldest first"
    );
    let none = store
        .lease_outbox("s", now, until, 10, Priority::Backfill)
        .await
        .unwrap();
    assert!(none.is_empty(), "nothing else is leasable: {none:?}");
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (601, 5));
    assert_eq!(
        store.outbox_pending(100, now).await.unwrap(),
        (100, stats.oldest_due),
        "the poll counts up to its cap"
    );
}

/// A sink that leased intents and died (or whose round failed before it settled them) leaves
/// them in flight. When nothing else waits, the poll must still report them once the lease
/// has run out, or no sink would ever lease again and they would stay unwritten.
async fn an_expired_lease_is_waiting_work(store: Arc<dyn Store>) {
    let now = Micros::now();
    let until = Micros(now.0 + 5_000_000);
    store
        .enqueue(&[intent_in("solo", "solo-1", Priority::Payment)], now)
        .await
        .unwrap();
    let leased = store
        .lease_outbox("dead-sink", now, until, 10, Priority::Backfill)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(store.outbox_pending(10, now).await.unwrap(), (0, None));
    let later = Micros(until.0 + 1);
    assert_eq!(
        store.outbox_pending(10, later).await.unwrap(),
        (1, Some(until)),
        "the expired lease is work, due since the lease ran out"
    );
    let again = store
        .lease_outbox(
            "s",
            later,
            Micros(later.0 + 5_000_000),
            10,
            Priority::Backfill,
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the next lease takes it back");
    assert_eq!(again[0].intent.key.value(), "solo-1");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let s = crate::support::store::sqlite().await;
                    super::$name(std::sync::Arc::new(s.store.clone())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(s) = crate::support::store::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(std::sync::Arc::new(s.store.clone())).await;
                }
            )*
        }
    };
}

conformance!(
    resend_is_one_event_with_every_delivery_kept,
    batch_with_repeats_inside_it,
    concurrent_resends_make_one_event,
    quarantine_admit_once,
    leases_give_each_event_one_owner,
    ping_and_backend,
    commit_event_is_all_or_nothing_with_versions,
    lost_lease_commits_nothing,
    commit_events_is_one_transaction_with_per_event_leases,
    an_intent_returned_from_flight_folds_under_a_newer_one,
    outbox_leases_whole_due_partitions_most_urgent_first,
    an_expired_lease_is_waiting_work,
);

#[tokio::test]
async fn sqlite_reopen_keeps_the_log_and_migrations_are_idempotent() {
    let s = support::store::sqlite().await;
    s.store
        .append_deliveries(&[delivery("fp-r", "9", b"body")])
        .await
        .unwrap();
    s.store.close().await;
    let reopened = revsync::store::open(&s.url, &Default::default())
        .await
        .unwrap();
    assert_eq!(reopened.counts().await.unwrap().deliveries, 1);
}

#[tokio::test]
async fn bad_store_urls_are_config_errors() {
    let err = revsync::store::open("mysql://x", &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    let quick = revsync::store::OpenOptions {
        acquire_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let err = revsync::store::open("postgres://revsync:hunter2@127.0.0.1:1/none", &quick)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Two processes on one SQLite file (`revsync serve` and an operator command, say): every
/// read sees what the other has committed. A pooled connection must not keep an old
/// snapshot alive after a single-row read.
#[tokio::test]
async fn sqlite_reads_see_other_processes_commits_at_once() {
    use revsync::store::Engine;
    let s = support::store::sqlite().await;
    let other = revsync::store::open(&s.url, &Default::default())
        .await
        .unwrap();
    for round in 1..=20u32 {
        other
            .append_deliveries(&[delivery(&format!("fp-{round}"), &round.to_string(), b"b")])
            .await
            .unwrap();
        // Single-row reads of every kind, on whichever pooled connection comes up.
        let counts = s.store.counts().await.unwrap();
        assert_eq!(counts.events, i64::from(round), "round {round}");
        s.store.outbox_stats().await.unwrap();
        s.store.outbox_pending(10, Micros::now()).await.unwrap();
        s.store.event(1).await.unwrap();
    }
}
