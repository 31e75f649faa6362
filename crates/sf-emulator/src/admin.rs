//! Admin HTTP API under `/__admin/` (not part of Salesforce; no authentication, no API
//! accounting): inspection and fault injection for the demo and for non-Rust clients.
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | GET | `/__admin/health` | `{"ok":true}` |
//! | GET | `/__admin/records/{sobject}` | all live records |
//! | POST | `/__admin/records/{sobject}` | seed a record (body = fields) → `{"id"}` |
//! | GET | `/__admin/calls` | call statistics |
//! | POST | `/__admin/reset` | fresh org, counters, faults, sessions |
//! | GET | `/__admin/faults` | current faults |
//! | POST | `/__admin/faults` | set faults (see [`FaultRequest`]) |
//! | POST | `/__admin/refresh_token` | issue a refresh token → `{"refresh_token"}` |
//! | GET | `/__admin/jobs` | Bulk jobs |

use crate::faults::{Faults, Latency};
use crate::http::to_response;
use crate::rest::Resp;
use crate::Shared;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Row-lock fault request.
#[derive(Debug, Deserialize)]
pub struct LockRequest {
    pub key: String,
    #[serde(default = "one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

/// Commit-then-timeout fault request.
#[derive(Debug, Deserialize)]
pub struct CommitTimeoutRequest {
    #[serde(default = "one")]
    pub count: u32,
    pub delay_ms: u64,
    #[serde(default)]
    pub drop_connection: bool,
}

/// Body of `POST /__admin/faults`; every key optional.
#[derive(Debug, Deserialize, Default)]
pub struct FaultRequest {
    pub clear: Option<bool>,
    pub latency: Option<Latency>,
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub outage: Option<bool>,
    pub outage_ms: Option<u64>,
    pub api_usage: Option<u64>,
    pub api_limit: Option<u64>,
    pub expire_sessions: Option<bool>,
    pub lock: Option<LockRequest>,
    pub commit_then_timeout: Option<CommitTimeoutRequest>,
}

fn ok(v: Value) -> axum::response::Response {
    to_response(Resp::json(200, v), None)
}

fn bad(msg: impl Into<String>) -> axum::response::Response {
    to_response(Resp::json(400, json!({"error": msg.into()})), None)
}

fn faults_json(sh: &Shared) -> Value {
    let f = sh.faults.lock().clone();
    let locks: HashMap<String, u32> = sh.state.lock().locks.clone();
    json!({"faults": f, "locks": locks})
}

pub(crate) async fn handle(
    sh: &Arc<Shared>,
    method: &str,
    path: &str,
    _query: &HashMap<String, String>,
    body: &[u8],
) -> axum::response::Response {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", ["health"]) => ok(json!({"ok": true})),
        ("GET", ["records", obj]) => {
            let st = sh.state.lock();
            if st.schema.object(obj).is_none() {
                return to_response(
                    Resp::json(404, json!({"error": format!("unknown sObject {obj}")})),
                    None,
                );
            }
            ok(Value::Array(st.records(obj)))
        }
        ("POST", ["records", obj]) => {
            let fields: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad(format!("body is not JSON: {e}")),
            };
            let Value::Object(map) = fields else {
                return bad("body must be a JSON object");
            };
            let r = sh.state.lock().seed_insert(obj, &map);
            match r {
                Ok(id) => {
                    sh.changed();
                    ok(json!({"id": id}))
                }
                Err(e) => to_response(Resp::json(400, e.rest_body()), None),
            }
        }
        ("GET", ["calls"]) => {
            let s = sh.usage.lock().stats();
            ok(serde_json::to_value(s).unwrap_or(Value::Null))
        }
        ("POST", ["reset"]) => match sh.reset() {
            Ok(()) => {
                sh.changed();
                ok(json!({"ok": true}))
            }
            Err(e) => to_response(Resp::json(500, json!({"error": e.to_string()})), None),
        },
        ("GET", ["faults"]) => ok(faults_json(sh)),
        ("POST", ["faults"]) => {
            let req: FaultRequest = if body.is_empty() {
                FaultRequest::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return bad(format!("invalid fault request: {e}")),
                }
            };
            let f = Faults::new(sh.clone());
            if req.clear == Some(true) {
                f.clear();
            }
            if let Some(l) = req.latency {
                f.set_latency(l);
            }
            if let Some(r) = req.error_rate {
                f.set_error_rate(r);
            }
            if let Some(s) = req.error_status {
                f.set_error_status(s);
            }
            match (req.outage, req.outage_ms) {
                (_, Some(ms)) => f.outage(Duration::from_millis(ms)),
                (Some(on), None) => f.set_outage(on),
                _ => {}
            }
            if let Some(n) = req.api_limit {
                f.set_api_limit(n);
            }
            if let Some(n) = req.api_usage {
                f.set_api_usage(n);
            }
            if req.expire_sessions == Some(true) {
                f.expire_sessions();
            }
            if let Some(l) = req.lock {
                f.lock_record(&l.key, l.attempts);
            }
            if let Some(c) = req.commit_then_timeout {
                f.commit_then_timeout(
                    c.count,
                    Duration::from_millis(c.delay_ms),
                    c.drop_connection,
                );
            }
            ok(faults_json(sh))
        }
        ("POST", ["refresh_token"]) => {
            let t = sh.auth.lock().issue_refresh_token(&sh.config.username);
            ok(json!({"refresh_token": t}))
        }
        ("GET", ["jobs"]) => {
            let jobs: Vec<Value> = sh.jobs.lock().values().map(|j| j.info(true)).collect();
            ok(Value::Array(jobs))
        }
        _ => to_response(
            Resp::json(
                404,
                json!({"error": format!("no admin route {method} /__admin{path}")}),
            ),
            None,
        ),
    }
}
