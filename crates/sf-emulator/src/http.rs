//! HTTP front: one handler that applies faults, authentication and API accounting, then
//! routes by path to the token endpoint, SOAP login, the REST API, Bulk 2.0 or the admin
//! API; plus the accept loops (plain HTTP and TLS) and the persistence task.

use crate::error::SfError;
use crate::rest::{self, Body as RBody, BodyIn, Ctx, Resp};
use crate::{admin, auth, bulk, composite, persist, Shared};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Largest request body accepted (Bulk uploads: 150 MB per the reference).
pub const MAX_BODY: usize = 160 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Whether a `Sforce-Duplicate-Rule-Header` value asks to save despite alerts.
pub fn allow_save_header(v: &str) -> bool {
    v.split(';').any(|part| {
        let mut kv = part.splitn(2, '=');
        let k = kv.next().unwrap_or("").trim();
        let val = kv.next().unwrap_or("").trim();
        k.eq_ignore_ascii_case("allowSave") && val.eq_ignore_ascii_case("true")
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn instance_url(sh: &Shared, headers: &HeaderMap) -> String {
    if let Some(u) = &sh.config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = header(headers, "host").unwrap_or("127.0.0.1");
    format!("{}://{}", sh.scheme, host)
}

pub(crate) fn to_response(resp: Resp, limit_info: Option<String>) -> Response {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (body, ctype) = match resp.body {
        RBody::Json(v) => (
            Body::from(serde_json::to_vec(&v).unwrap_or_default()),
            Some("application/json;charset=UTF-8"),
        ),
        RBody::Text(t, ct) => (Body::from(t), Some(ct)),
        RBody::Empty => (Body::empty(), None),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Some(ct) = ctype {
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(ct));
    }
    if let Some(li) = limit_info {
        if let Ok(v) = HeaderValue::from_str(&li) {
            r.headers_mut().insert("sforce-limit-info", v);
        }
    }
    for (k, v) in resp.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::try_from(k),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

fn oauth_response(status: u16, body: serde_json::Value) -> Response {
    to_response(Resp::json(status, body), None)
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn version_label(v: u32) -> String {
    let n = v.saturating_sub(20);
    let season = ["Winter", "Spring", "Summer"][(n % 3) as usize];
    format!("{} '{:02}", season, 11 + n / 3)
}

fn versions() -> serde_json::Value {
    let list: Vec<serde_json::Value> = (20..=66u32)
        .map(|v| {
            serde_json::json!({
                "label": version_label(v),
                "url": format!("/services/data/v{v}.0"),
                "version": format!("{v}.0"),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(rest) = path.strip_prefix("/__admin") {
        return admin::handle(&sh, method.as_str(), rest, &query_map(&uri), &body).await;
    }
    sh.usage.lock().http_request();
    // Salesforce refuses a URI plus headers above 16,384 bytes (414 / 431). The JSON error
    // body is ASSUMED (the edge may answer HTML).
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if uri.to_string().len() + header_bytes > 16_384 {
        return to_response(
            Resp::err(SfError::new(
                414,
                "URI_TOO_LONG",
                "The request URI and headers exceed 16,384 bytes",
            )),
            None,
        );
    }
    // Faults that hit every Salesforce request.
    let (latency, in_outage, random_error) = {
        let mut f = sh.faults.lock();
        let query_fails = path.contains("/query") && f.take_query_failure();
        (
            f.latency.sample(),
            f.in_outage(),
            f.random_error().or(query_fails.then_some(503)),
        )
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    if in_outage {
        return to_response(Resp::err(SfError::server_unavailable()), None);
    }
    if let Some(status) = random_error {
        let e = if status == 503 {
            SfError::server_unavailable()
        } else {
            SfError::new(status, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)")
        };
        return to_response(Resp::err(e), None);
    }
    if path == "/services/oauth2/token" {
        return token(&sh, &method, &headers, &body);
    }
    if let Some(v) = path.strip_prefix("/services/Soap/u/") {
        if method != Method::POST {
            return to_response(
                Resp::err(SfError::new(
                    405,
                    "METHOD_NOT_ALLOWED",
                    "HTTP Method not allowed. Allowed are POST",
                )),
                None,
            );
        }
        sh.usage.lock().token_request();
        let version = v.split('/').next().unwrap_or("62.0").to_string();
        let text = String::from_utf8_lossy(&body);
        let (status, xml) = auth::soap_login(&sh, &text, &instance_url(&sh, &headers), &version);
        return to_response(
            Resp {
                status,
                body: RBody::Text(xml, "text/xml;charset=UTF-8"),
                headers: Vec::new(),
            },
            None,
        );
    }
    if path == "/services/data" || path == "/services/data/" {
        return to_response(Resp::json(200, versions()), None);
    }
    if let Some(rest) = path.strip_prefix("/services/data/") {
        return data(&sh, method.as_str(), rest, &uri, &headers, body).await;
    }
    to_response(Resp::err(SfError::not_found()), None)
}

fn token(sh: &Arc<Shared>, method: &Method, headers: &HeaderMap, body: &Bytes) -> Response {
    sh.usage.lock().token_request();
    if method != Method::POST {
        return oauth_response(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "must use HTTP POST"}),
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let basic_auth = header(headers, "authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let url = instance_url(sh, headers);
    match auth::token(
        sh,
        auth::TokenRequest {
            form,
            basic_auth,
            instance_url: &url,
        },
    ) {
        Ok(v) => oauth_response(200, v),
        Err(e) => oauth_response(e.status, e.body()),
    }
}

async fn data(
    sh: &Arc<Shared>,
    method: &str,
    rest: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut parts = rest.split('/');
    let version = parts.next().unwrap_or("");
    let Some(mut ctx) = Ctx::new(version) else {
        return to_response(Resp::err(SfError::not_found()), None);
    };
    let segs: Vec<String> = parts
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if auth::check_bearer(sh, header(headers, "authorization")).is_none() {
        return to_response(Resp::err(SfError::invalid_session()), None);
    }
    let resource = rest::resource_name(&segs);
    let allowed = sh.usage.lock().take(&resource);
    if !allowed {
        let li = sh.usage.lock().header();
        return to_response(Resp::err(SfError::limit_exceeded()), Some(li));
    }
    ctx.allow_save = header(headers, "sforce-duplicate-rule-header").is_some_and(allow_save_header);
    ctx.batch_size = header(headers, "sforce-query-options").and_then(|v| {
        v.split(';')
            .filter_map(|p| p.trim().strip_prefix("batchSize="))
            .next()
            .and_then(|n| n.trim().parse().ok())
    });
    let query = query_map(uri);
    let first = segs.first().map(String::as_str).unwrap_or("");
    let second = segs.get(1).map(String::as_str);
    let resp = match (first, second) {
        ("", _) => Resp::json(200, resources(&ctx)),
        ("limits", None) => {
            let v = sh.usage.lock().limits_json();
            Resp::json(200, v)
        }
        ("limits", Some("recordCount")) => {
            let st = sh.state.lock();
            let wanted: Vec<String> = query
                .get("sObjects")
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_else(|| st.schema.objects().iter().map(|o| o.name.clone()).collect());
            let list: Vec<serde_json::Value> = wanted
                .iter()
                .filter_map(|w| {
                    st.schema.object(w).map(|o| {
                        (
                            o.name.clone(),
                            st.tables.get(&o.name).map_or(0, |t| t.live.len()),
                        )
                    })
                })
                .map(|(n, c)| serde_json::json!({"count": c, "name": n}))
                .collect();
            Resp::json(200, serde_json::json!({"sObjects": list}))
        }
        ("jobs", Some("ingest")) => bulk::handle(
            sh,
            &ctx,
            method,
            &segs[2..],
            &query,
            body,
            header(headers, "content-type"),
        ),
        ("composite", None) | ("composite", Some("graph")) => {
            if method != "POST" {
                Resp::err(SfError::new(
                    405,
                    "METHOD_NOT_ALLOWED",
                    format!("HTTP Method '{method}' not allowed. Allowed are POST"),
                ))
            } else {
                let b = BodyIn::parse(&body);
                let mut st = sh.state.lock();
                if second == Some("graph") {
                    composite::graph(sh, &mut st, &ctx, &b)
                } else {
                    composite::composite(sh, &mut st, &ctx, &b)
                }
            }
        }
        _ => {
            let b = BodyIn::parse(&body);
            let mut st = sh.state.lock();
            rest::dispatch_locked(sh, &mut st, &ctx, method, &segs, &query, &b)
        }
    };
    let write = method != "GET" && method != "HEAD";
    if write {
        sh.changed();
    }
    let li = sh.usage.lock().header();
    let ticket = if write && resp.status < 500 {
        sh.faults.lock().take_commit_timeout()
    } else {
        None
    };
    if let Some(t) = ticket {
        tracing::info!(
            delay_ms = t.delay_ms,
            drop = t.drop_connection,
            "commit-then-timeout fault: write applied, answer delayed"
        );
        tokio::time::sleep(Duration::from_millis(t.delay_ms)).await;
        if t.drop_connection {
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other(
                    "connection dropped by fault injection",
                ))
            });
            let mut r = Response::new(Body::from_stream(stream));
            *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK);
            return r;
        }
    }
    to_response(resp, Some(li))
}

fn resources(ctx: &Ctx) -> serde_json::Value {
    let b = format!("/services/data/{}", ctx.version);
    serde_json::json!({
        "composite": format!("{b}/composite"),
        "jobs": format!("{b}/jobs"),
        "limits": format!("{b}/limits"),
        "query": format!("{b}/query"),
        "queryAll": format!("{b}/queryAll"),
        "sobjects": format!("{b}/sobjects"),
    })
}

/// Serves until `cancel` fires; writes the final snapshot on the way out.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let persist_task = shared
        .config
        .state_file
        .clone()
        .map(|path| tokio::spawn(persist::run(shared.clone(), path, cancel.clone())));
    let app = router(shared.clone());
    let result = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.clone().cancelled_owned())
                .await
        }
        Some(acceptor) => crate::tls::serve(listener, app, acceptor, cancel.clone()).await,
    };
    cancel.cancel();
    if let Some(t) = persist_task {
        let _ = t.await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_header_parsing() {
        assert!(allow_save_header(
            "allowSave=true; includeRecordDetails=false; runAsCurrentUser=false"
        ));
        assert!(allow_save_header("allowSave = TRUE"));
        assert!(!allow_save_header("allowSave=false"));
        assert!(!allow_save_header("includeRecordDetails=true"));
    }

    #[test]
    fn version_labels() {
        assert_eq!(version_label(62), "Winter '25");
        assert_eq!(version_label(61), "Summer '24");
        assert_eq!(version_label(66), "Spring '26");
    }
}
