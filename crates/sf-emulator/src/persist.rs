//! Optional persistence: a JSON snapshot of every table, written (debounced) after changes
//! and at shutdown, loaded at start. Sessions, query cursors and Bulk jobs are not kept
//! (clients re-authenticate after a restart, as after a real session expiry).

use crate::store::Fields;
use crate::Shared;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const FORMAT: u64 = 1;

fn snapshot(sh: &Shared) -> (u64, Value) {
    let st = sh.state.lock();
    let mut tables = serde_json::Map::new();
    for (name, t) in &st.tables {
        if t.live.is_empty() && t.deleted.is_empty() {
            continue;
        }
        let live: Vec<Value> = t.live.values().map(|r| Value::Object(r.clone())).collect();
        let deleted: Vec<Value> = t
            .deleted
            .values()
            .map(|r| Value::Object(r.clone()))
            .collect();
        tables.insert(name.clone(), json!({"live": live, "deleted": deleted}));
    }
    (
        st.change_seq,
        json!({"format": FORMAT, "org_id": st.org_id, "case_number": st.case_number(), "tables": tables}),
    )
}

/// Writes the snapshot atomically (temporary file + rename).
pub fn save(sh: &Shared, path: &Path) -> std::io::Result<u64> {
    let (seq, v) = snapshot(sh);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&v)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(seq)
}

/// Loads a snapshot into the org.
pub fn load(sh: &Shared, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not a snapshot: {e}"))?;
    if v.get("format").and_then(Value::as_u64) != Some(FORMAT) {
        return Err("unknown snapshot format".into());
    }
    let mut tables: HashMap<String, (Vec<Fields>, Vec<Fields>)> = HashMap::new();
    if let Some(Value::Object(ts)) = v.get("tables") {
        for (name, t) in ts {
            let rows = |k: &str| -> Vec<Fields> {
                t.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|r| r.as_object().cloned()).collect())
                    .unwrap_or_default()
            };
            tables.insert(name.clone(), (rows("live"), rows("deleted")));
        }
    }
    let case_number = v.get("case_number").and_then(Value::as_u64).unwrap_or(1000);
    let mut st = sh.state.lock();
    st.restore(tables, case_number);
    if let Some(org) = v.get("org_id").and_then(Value::as_str) {
        st.org_id = org.to_string();
    }
    tracing::info!(path = %path.display(), "loaded state snapshot");
    Ok(())
}

/// Background writer: waits for changes, debounces, writes; final write on cancel.
pub(crate) async fn run(sh: Arc<Shared>, path: PathBuf, cancel: CancellationToken) {
    let mut saved_seq = sh.state.lock().change_seq;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sh.persist_wake.notified() => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(sh.config.persist_debounce) => {}
        }
        if sh.state.lock().change_seq != saved_seq {
            let (sh2, p2) = (sh.clone(), path.clone());
            match tokio::task::spawn_blocking(move || save(&sh2, &p2)).await {
                Ok(Ok(seq)) => saved_seq = seq,
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "state snapshot write failed")
                }
                Err(e) => tracing::warn!(error = %e, "state snapshot task failed"),
            }
        }
    }
    if let Err(e) = save(&sh, &path) {
        tracing::warn!(path = %path.display(), error = %e, "final state snapshot write failed");
    }
}
