//! The HTTP surface: 2Checkout's webhook endpoints, health, readiness and metrics.
//!
//! `serve(listener, app, shutdown)` runs until `shutdown` is cancelled, then stops accepting,
//! lets in-flight requests finish (each is bounded by the request timeout) and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::config::NotificationKeys;
use crate::ingest::{verify_delivery, GroupCommitter, Rejection};
use crate::store::{EventLog, Micros, NewQuarantine};
use crate::telemetry;

/// Everything the request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventLog>,
    pub keys: Arc<NotificationKeys>,
    pub committer: GroupCommitter,
    pub max_body_bytes: usize,
}

/// The router, without the listener: tests and `serve` share it.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/2checkout/{kind}", get(probe).post(notification))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// 2Checkout probes the LCN URL with a GET when it is saved and expects 200.
async fn probe(Path(kind): Path<String>) -> Response {
    match kind.parse::<twocheckout::notification::Kind>() {
        Ok(kind) => text(
            StatusCode::OK,
            format!("revsync accepts {} notifications here\n", kind.as_str()),
        ),
        Err(_) => text(
            StatusCode::NOT_FOUND,
            format!(
                "{}\n",
                Rejection::UnknownKind(kind.chars().take(40).collect())
            ),
        ),
    }
}

/// Reads at most `limit` bytes. Returns the bytes read and whether the body was longer.
async fn read_limited(body: Body, limit: usize) -> Result<(Vec<u8>, bool), axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

async fn notification(
    State(app): State<AppState>,
    Path(kind): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let received_at = Micros::now();
    let kind_label = telemetry::kind_label(&kind);
    metrics::counter!("revsync_deliveries_received_total", "kind" => kind_label).increment(1);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let remote_addr = Some(peer.ip().to_string());

    let (bytes, too_large) = match read_limited(body, app.max_body_bytes).await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(kind = kind_label, error = %e, "could not read request body");
            return text(StatusCode::BAD_REQUEST, format!("cannot read body: {e}\n"));
        }
    };
    let verified = if too_large {
        Err(Rejection::TooLarge {
            limit: app.max_body_bytes,
        })
    } else {
        verify_delivery(&app.keys, &kind, content_type.as_deref(), &bytes)
    };

    let verified = match verified {
        Ok(v) => v,
        Err(rejection) => {
            let entry = NewQuarantine {
                received_at,
                path_kind: kind.chars().take(40).collect(),
                content_type: content_type.unwrap_or_default(),
                remote_addr,
                reason: rejection.to_string(),
                body: bytes,
                truncated: too_large,
            };
            return match app.store.quarantine(&entry).await {
                Ok(id) => {
                    metrics::counter!("revsync_deliveries_quarantined_total", "kind" => kind_label, "reason" => rejection.class()).increment(1);
                    tracing::warn!(kind = kind_label, quarantine_id = id, reason = %rejection, "delivery refused and quarantined");
                    text(rejection.status(), format!("{rejection}\n"))
                }
                Err(e) => {
                    tracing::error!(kind = kind_label, reason = %rejection, error = %e, "delivery refused; quarantine unavailable");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{rejection}; quarantine unavailable, retry later\n"),
                    )
                }
            };
        }
    };

    let content_type = content_type.unwrap_or_default();
    let delivery = verified.to_new_delivery(&bytes, &content_type, remote_addr, received_at);
    let appended = match app.committer.append(delivery).await {
        Ok(appended) => appended,
        Err(e) => {
            metrics::counter!("revsync_deliveries_failed_total", "kind" => kind_label).increment(1);
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not stored, retry later: {e}\n"),
            );
        }
    };
    // Committed: only now may the receipt go out.
    let receipt = match verified.receipt(&app.keys, chrono::Utc::now().naive_utc()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(event_id = appended.event_id, error = %e, "stored but no receipt could be built");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
    };
    metrics::counter!("revsync_deliveries_verified_total", "kind" => kind_label).increment(1);
    if !appended.new_event {
        metrics::counter!("revsync_deliveries_duplicate_total", "kind" => kind_label).increment(1);
    }
    metrics::histogram!("revsync_receipt_seconds", "kind" => kind_label)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(
        kind = kind_label,
        reference = verified.notification.reference(),
        event_id = appended.event_id,
        delivery_id = appended.delivery_id,
        duplicate = !appended.new_event,
        "delivery committed"
    );
    text(StatusCode::OK, receipt)
}

async fn readyz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        Ok(()) => text(StatusCode::OK, "ready\n".into()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    if let Ok(counts) = app.store.counts().await {
        metrics::gauge!("revsync_events_pending").set(counts.pending as f64);
        metrics::gauge!("revsync_events_failed").set(counts.failed as f64);
        metrics::gauge!("revsync_quarantine_held").set(counts.quarantined_held as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::prometheus().render(),
    )
        .into_response()
}
