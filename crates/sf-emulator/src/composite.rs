//! `/composite` and `/composite/graph`.
//!
//! Composite: ≤ 25 subrequests, of which ≤ 5 query/collections; `@{ref.path}` references
//! (`@{acct.id}`, `@{q.records[0].Id}`), case-sensitive; `allOrNone` rolls everything back
//! and reports `PROCESSING_HALTED` for every other subrequest; top-level HTTP 200.
//!
//! Graph: ≤ 75 graphs and ≤ 500 nodes per payload, depth ≤ 15, ≤ 15 distinct node types
//! (version + method + object); each graph all-or-nothing; after 14 failed graphs the rest
//! are not run. Nodes may only address `sobjects` resources.
//!
//! UNCONFIRMED (chosen here, not recorded from a real org): the error codes/messages for
//! exceeding these limits (`LIMIT_EXCEEDED` / `INVALID_GRAPH` with descriptive text), the
//! message for an unresolvable reference, and the message of graphs skipped after 14
//! failures.

use crate::error::SfError;
use crate::rest::{self, BodyIn, Ctx, Resp};
use crate::store::OrgState;
use crate::Shared;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

pub const MAX_SUBREQUESTS: usize = 25;
pub const MAX_QUERY_OR_COLLECTION: usize = 5;
pub const MAX_GRAPHS: usize = 75;
pub const MAX_GRAPH_NODES: usize = 500;
pub const MAX_GRAPH_DEPTH: usize = 15;
pub const MAX_NODE_TYPES: usize = 15;
pub const MAX_FAILED_GRAPHS: usize = 14;

#[derive(Debug, Clone)]
struct Sub {
    method: String,
    url: String,
    reference_id: String,
    body: Option<Value>,
    headers: Map<String, Value>,
}

fn parse_subs(list: &Value, what: &str) -> Result<Vec<Sub>, SfError> {
    let Value::Array(items) = list else {
        return Err(SfError::json_parse(format!("{what} must be an array")));
    };
    let mut out = Vec::new();
    for it in items {
        let Value::Object(m) = it else {
            return Err(SfError::json_parse(format!("{what} items must be objects")));
        };
        let get = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let method = get("method").ok_or_else(|| {
            SfError::new(400, "JSON_PARSER_ERROR", "Required field method is missing")
        })?;
        let url = get("url").ok_or_else(|| {
            SfError::new(400, "JSON_PARSER_ERROR", "Required field url is missing")
        })?;
        let reference_id = get("referenceId").ok_or_else(|| {
            SfError::new(
                400,
                "JSON_PARSER_ERROR",
                "Required field referenceId is missing",
            )
        })?;
        out.push(Sub {
            method: method.to_ascii_uppercase(),
            url,
            reference_id,
            body: m.get("body").cloned(),
            headers: m
                .get("httpHeaders")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        });
    }
    let mut seen = HashSet::new();
    for s in &out {
        if !s
            .reference_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || s.reference_id.is_empty()
        {
            return Err(SfError::new(
                400,
                "INVALID_INPUT",
                format!("Invalid reference id: {}. Reference ids may only contain alphanumeric characters and underscores.", s.reference_id),
            ));
        }
        if !seen.insert(s.reference_id.clone()) {
            return Err(SfError::new(
                400,
                "INVALID_INPUT",
                format!(
                    "Duplicate ReferenceId provided in the request: {}",
                    s.reference_id
                ),
            ));
        }
    }
    Ok(out)
}

/// Evaluates `records[0].Id`-style paths into a JSON value.
fn eval_path<'a>(mut v: &'a Value, path: &str) -> Option<&'a Value> {
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            v = v.get(name)?;
        }
        let mut r = rest;
        while let Some(stripped) = r.strip_prefix('[') {
            let end = stripped.find(']')?;
            let idx: usize = stripped[..end].parse().ok()?;
            v = v.get(idx)?;
            r = &stripped[end + 1..];
        }
    }
    Some(v)
}

struct RefError(String);

fn resolve_ref(expr: &str, results: &HashMap<String, (u16, Value)>) -> Result<Value, RefError> {
    let (name, path) = expr.split_once('.').unwrap_or((expr, ""));
    let base = name.split('[').next().unwrap_or(name);
    let halted = || {
        RefError(format!(
            "Invalid reference specified. No value for {expr} found in {base}. Provided referenceId ('{base}') doesn't exist or the subrequest failed."
        ))
    };
    let Some((status, body)) = results.get(base) else {
        return Err(halted());
    };
    if *status >= 300 {
        return Err(halted());
    }
    let full = if name.len() > base.len() {
        format!(
            "{}{}{}",
            &name[base.len()..],
            if path.is_empty() { "" } else { "." },
            path
        )
    } else {
        path.to_string()
    };
    let v = if full.is_empty() {
        Some(body)
    } else {
        eval_path(body, &full)
    };
    v.cloned().filter(|v| !v.is_null()).ok_or_else(halted)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn substitute_str(s: &str, results: &HashMap<String, (u16, Value)>) -> Result<Value, RefError> {
    if !s.contains("@{") {
        return Ok(Value::String(s.to_string()));
    }
    // A string that is exactly one reference takes the referenced value as is.
    if s.starts_with("@{") && s.ends_with('}') && s[2..].find('}') == Some(s.len() - 3) {
        return resolve_ref(&s[2..s.len() - 1], results);
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("@{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        out.push_str(&text(&resolve_ref(&after[..end], results)?));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn substitute(v: &Value, results: &HashMap<String, (u16, Value)>) -> Result<Value, RefError> {
    Ok(match v {
        Value::String(s) => substitute_str(s, results)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                o.insert(k.clone(), substitute(x, results)?);
            }
            Value::Object(o)
        }
        other => other.clone(),
    })
}

/// Splits a subrequest URL into version, path segments and query parameters.
fn split_url(url: &str) -> Option<(String, Vec<String>, HashMap<String, String>)> {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let rest = path.strip_prefix("/services/data/")?;
    let mut parts = rest.split('/');
    let version = parts.next()?.to_string();
    let segs: Vec<String> = parts
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let query = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    Some((version, segs, query))
}

fn sub_ctx(parent: &Ctx, version: &str, headers: &Map<String, Value>) -> Option<Ctx> {
    let mut ctx = Ctx::new(version)?;
    ctx.allow_save = parent.allow_save;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("Sforce-Duplicate-Rule-Header") {
            ctx.allow_save = v.as_str().is_some_and(crate::http::allow_save_header);
        }
    }
    Some(ctx)
}

fn sub_response(
    resp: &Resp,
    reference_id: &str,
    ctx: &Ctx,
    segs: &[String],
    method: &str,
) -> Value {
    let mut headers = Map::new();
    if resp.status == 201 && method != "PATCH" {
        if let (Some(obj), Some(id)) = (
            segs.get(1),
            resp.json_value().get("id").and_then(Value::as_str),
        ) {
            headers.insert(
                "Location".into(),
                json!(format!(
                    "/services/data/{}/sobjects/{}/{}",
                    ctx.version, obj, id
                )),
            );
        }
    }
    json!({
        "body": resp.json_value(),
        "httpHeaders": headers,
        "httpStatusCode": resp.status,
        "referenceId": reference_id,
    })
}

fn halted_entry(reference_id: &str) -> Value {
    json!({
        "body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": reference_id,
    })
}

/// Runs a list of subrequests; returns per-subrequest responses and whether all succeeded.
fn run_subs(
    sh: &Shared,
    st: &mut OrgState,
    ctx: &Ctx,
    subs: &[Sub],
    all_or_none: bool,
    graph: bool,
) -> (Vec<Value>, bool) {
    let mut results: HashMap<String, (u16, Value)> = HashMap::new();
    let mut out: Vec<Value> = Vec::new();
    let mut failed_at: Option<usize> = None;
    for (i, sub) in subs.iter().enumerate() {
        let resolved = substitute_str(&sub.url, &results).and_then(|u| {
            let body = match &sub.body {
                Some(b) => Some(substitute(b, &results)?),
                None => None,
            };
            Ok((text(&u), body))
        });
        let (status, entry) = match resolved {
            Err(RefError(msg)) => {
                let v = json!({
                    "body": [{"errorCode": "PROCESSING_HALTED", "message": msg}],
                    "httpHeaders": {},
                    "httpStatusCode": 400,
                    "referenceId": sub.reference_id,
                });
                (400, v)
            }
            Ok((url, body)) => {
                let resp_and_segs = match split_url(&url) {
                    None => (Resp::err(SfError::not_found()), Vec::new(), None),
                    Some((version, segs, query)) => match sub_ctx(ctx, &version, &sub.headers) {
                        None => (Resp::err(SfError::not_found()), segs, None),
                        Some(sctx) => {
                            let allowed = if graph {
                                segs.first().map(String::as_str) == Some("sobjects")
                                    && segs.len() >= 2
                            } else {
                                matches!(
                                    segs.first().map(String::as_str),
                                    Some("sobjects" | "query" | "queryAll")
                                ) || (segs.first().map(String::as_str) == Some("composite")
                                    && segs.get(1).map(String::as_str) == Some("sobjects"))
                            };
                            if !allowed {
                                let e = SfError::new(
                                    400,
                                    "INVALID_INPUT",
                                    format!(
                                        "The URL {url} is not supported in a {} request",
                                        if graph {
                                            "composite graph"
                                        } else {
                                            "composite"
                                        }
                                    ),
                                );
                                (Resp::err(e), segs, None)
                            } else {
                                let b = match body {
                                    None => BodyIn::None,
                                    Some(v) => BodyIn::Json(v),
                                };
                                let r = rest::dispatch_locked(
                                    sh,
                                    st,
                                    &sctx,
                                    &sub.method,
                                    &segs,
                                    &query,
                                    &b,
                                );
                                (r, segs, Some(sctx))
                            }
                        }
                    },
                };
                let (resp, segs, sctx) = resp_and_segs;
                let entry = sub_response(
                    &resp,
                    &sub.reference_id,
                    sctx.as_ref().unwrap_or(ctx),
                    &segs,
                    &sub.method,
                );
                results.insert(sub.reference_id.clone(), (resp.status, resp.json_value()));
                (resp.status, entry)
            }
        };
        out.push(entry);
        if status >= 300 && failed_at.is_none() {
            failed_at = Some(i);
            if all_or_none {
                break;
            }
        }
    }
    if all_or_none {
        if let Some(f) = failed_at {
            let mut final_out = Vec::with_capacity(subs.len());
            for (i, sub) in subs.iter().enumerate() {
                if i == f {
                    final_out.push(out[f].clone());
                } else {
                    final_out.push(halted_entry(&sub.reference_id));
                }
            }
            return (final_out, false);
        }
    }
    (out, failed_at.is_none())
}

fn is_query_or_collection(s: &Sub) -> bool {
    let p = s.url.split('?').next().unwrap_or("");
    p.contains("/query") || p.contains("/queryAll") || p.contains("/composite/sobjects")
}

/// `POST /composite`.
pub fn composite(sh: &Shared, st: &mut OrgState, ctx: &Ctx, body: &BodyIn) -> Resp {
    let v = match body {
        BodyIn::Json(v) => v,
        BodyIn::None => {
            return Resp::err(SfError::json_parse("No content to map due to end-of-input"))
        }
        BodyIn::Invalid(m) => return Resp::err(SfError::json_parse(m)),
    };
    let all_or_none = v.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let Some(list) = v.get("compositeRequest") else {
        return Resp::err(SfError::new(
            400,
            "JSON_PARSER_ERROR",
            "Required field compositeRequest is missing",
        ));
    };
    let subs = match parse_subs(list, "compositeRequest") {
        Ok(s) => s,
        Err(e) => return Resp::err(e),
    };
    if subs.len() > MAX_SUBREQUESTS {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: a composite request can contain up to {MAX_SUBREQUESTS} subrequests; this one contains {}", subs.len()),
        ));
    }
    if subs.iter().filter(|s| is_query_or_collection(s)).count() > MAX_QUERY_OR_COLLECTION {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: a composite request can contain up to {MAX_QUERY_OR_COLLECTION} query or sObject Collections subrequests"),
        ));
    }
    let sp = st.begin();
    let (out, ok) = run_subs(sh, st, ctx, &subs, all_or_none, false);
    if all_or_none && !ok {
        st.rollback(sp);
    } else {
        st.commit(sp);
    }
    Resp::json(200, json!({"compositeResponse": out}))
}

fn node_object(url: &str) -> String {
    split_url(url)
        .and_then(|(v, segs, _)| {
            segs.get(1)
                .map(|o| format!("{v}/{}", o.to_ascii_lowercase()))
        })
        .unwrap_or_default()
}

fn graph_depth(subs: &[Sub]) -> usize {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let mut max = 0;
    for s in subs {
        let mut text = s.url.clone();
        if let Some(b) = &s.body {
            text.push_str(&b.to_string());
        }
        let mut d = 1;
        let mut rest = text.as_str();
        while let Some(i) = rest.find("@{") {
            let after = &rest[i + 2..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(pd) = depth.get(name.as_str()) {
                d = d.max(pd + 1);
            }
            rest = after;
        }
        depth.insert(&s.reference_id, d);
        max = max.max(d);
    }
    max
}

/// `POST /composite/graph`.
pub fn graph(sh: &Shared, st: &mut OrgState, ctx: &Ctx, body: &BodyIn) -> Resp {
    let v = match body {
        BodyIn::Json(v) => v,
        BodyIn::None => {
            return Resp::err(SfError::json_parse("No content to map due to end-of-input"))
        }
        BodyIn::Invalid(m) => return Resp::err(SfError::json_parse(m)),
    };
    let Some(Value::Array(graphs)) = v.get("graphs") else {
        return Resp::err(SfError::new(
            400,
            "JSON_PARSER_ERROR",
            "Required field graphs is missing",
        ));
    };
    if graphs.len() > MAX_GRAPHS {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: a composite graph request can contain up to {MAX_GRAPHS} graphs; this one contains {}", graphs.len()),
        ));
    }
    let mut parsed: Vec<(String, Vec<Sub>)> = Vec::new();
    let mut ids = HashSet::new();
    for g in graphs {
        let Some(gid) = g.get("graphId").and_then(Value::as_str) else {
            return Resp::err(SfError::new(
                400,
                "INVALID_GRAPH",
                "Every graph needs a graphId",
            ));
        };
        if !ids.insert(gid.to_string()) {
            return Resp::err(SfError::new(
                400,
                "INVALID_GRAPH",
                format!("Duplicate graphId provided in the request: {gid}"),
            ));
        }
        let Some(list) = g.get("compositeRequest") else {
            return Resp::err(SfError::new(
                400,
                "INVALID_GRAPH",
                format!("Graph {gid} has no compositeRequest"),
            ));
        };
        match parse_subs(list, "compositeRequest") {
            Ok(s) => parsed.push((gid.to_string(), s)),
            Err(e) => return Resp::err(e),
        }
    }
    let nodes: usize = parsed.iter().map(|(_, s)| s.len()).sum();
    if nodes > MAX_GRAPH_NODES {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: a composite graph request can contain up to {MAX_GRAPH_NODES} nodes; this one contains {nodes}"),
        ));
    }
    let types: HashSet<String> = parsed
        .iter()
        .flat_map(|(_, s)| {
            s.iter()
                .map(|n| format!("{} {}", n.method, node_object(&n.url)))
        })
        .collect();
    if types.len() > MAX_NODE_TYPES {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: a composite graph request can contain up to {MAX_NODE_TYPES} distinct node types; this one contains {}", types.len()),
        ));
    }
    if let Some((gid, _)) = parsed
        .iter()
        .find(|(_, s)| graph_depth(s) > MAX_GRAPH_DEPTH)
    {
        return Resp::err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Limit Exceeded: graph {gid} is deeper than {MAX_GRAPH_DEPTH} levels"),
        ));
    }
    let mut failed = 0usize;
    let mut out = Vec::new();
    for (gid, subs) in &parsed {
        if failed >= MAX_FAILED_GRAPHS {
            let entries: Vec<Value> = subs
                .iter()
                .map(|s| {
                    json!({
                        "body": [{"errorCode": "PROCESSING_HALTED", "message": "Processing halted because too many graphs in this request failed."}],
                        "httpHeaders": {},
                        "httpStatusCode": 400,
                        "referenceId": s.reference_id,
                    })
                })
                .collect();
            out.push(json!({"graphId": gid, "graphResponse": {"compositeResponse": entries}, "isSuccessful": false}));
            continue;
        }
        let sp = st.begin();
        let (entries, ok) = run_subs(sh, st, ctx, subs, true, true);
        if ok {
            st.commit(sp);
        } else {
            st.rollback(sp);
            failed += 1;
        }
        out.push(json!({"graphId": gid, "graphResponse": {"compositeResponse": entries}, "isSuccessful": ok}));
    }
    Resp::json(200, json!({"graphs": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_nested_paths() {
        let mut r = HashMap::new();
        r.insert(
            "q".to_string(),
            (200, json!({"records": [{"Id": "003A"}, {"Id": "003B"}]})),
        );
        r.insert(
            "acct".to_string(),
            (201, json!({"id": "001X", "success": true})),
        );
        r.insert("bad".to_string(), (400, json!([{"errorCode": "X"}])));
        assert_eq!(
            substitute_str("@{q.records[1].Id}", &r).ok(),
            Some(json!("003B"))
        );
        assert_eq!(
            substitute_str("/x/@{acct.id}/y", &r).ok(),
            Some(json!("/x/001X/y"))
        );
        assert_eq!(
            substitute_str("@{acct.success}", &r).ok(),
            Some(json!(true))
        );
        assert!(
            substitute_str("@{acct.Id}", &r).is_err(),
            "references are case-sensitive"
        );
        assert!(substitute_str("@{bad.id}", &r).is_err());
        assert!(substitute_str("@{nope.id}", &r).is_err());
    }

    #[test]
    fn depth_counts_reference_chains() {
        let mk = |r: &str, url: &str| Sub {
            method: "POST".into(),
            url: url.into(),
            reference_id: r.into(),
            body: None,
            headers: Map::new(),
        };
        let subs = vec![
            mk("a", "/x"),
            mk("b", "/x/@{a.id}"),
            mk("c", "/x/@{b.id}"),
            mk("d", "/x/@{a.id}"),
        ];
        assert_eq!(graph_depth(&subs), 3);
    }
}
