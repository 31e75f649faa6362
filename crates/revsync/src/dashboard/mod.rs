//! The operator's dashboard, served by the revsync binary itself: one self-contained HTML page
//! at `/dashboard` (inline CSS and script, no external assets) and the JSON API it polls under
//! `/api/v1/`.
//!
//! | Route | What |
//! |---|---|
//! | `GET /dashboard` | the page; `?token=` once sets the session cookie and redirects |
//! | `GET /api/v1/events?limit&before` | newest events, with the Salesforce records each touched |
//! | `GET /api/v1/events/{id}` | one event, its deliveries (metadata, no bodies) and sync log |
//! | `GET /api/v1/search?q=` | events by order/subscription reference, customer key or e-mail |
//! | `GET /api/v1/dead-letters?status=open\|replayed\|all&limit` | dead letters |
//! | `POST /api/v1/dead-letters/{id}/replay` | puts a dead letter back into the outbox |
//! | `GET /api/v1/budget` | Salesforce API budget |
//! | `GET /api/v1/stats` | event log, outbox and throughput |
//!
//! Protection ([`auth`]): with a token configured every request needs
//! `Authorization: Bearer <token>` or the `revsync_token` cookie; without one, the dashboard
//! answers only to loopback/IP-literal `Host` headers (a DNS-rebinding guard). State-changing
//! requests from a browser must come from the dashboard's own origin.
//!
//! This module reads the store through [`Store`] and never writes SQL; it knows nothing of
//! 2Checkout's wire format or of how the sink talks to Salesforce.

mod api;
mod auth;
mod page;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};

use crate::store::Store;

pub use auth::COOKIE_NAME;

/// Why the dashboard could not be set up. Fix the configuration named in the message.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// An empty token would protect nothing: set a real one or none at all.
    #[error("the dashboard token is empty: set a non-empty token or leave it unset")]
    EmptyToken,
    /// The Salesforce instance URL is not an absolute http(s) URL.
    #[error("the Salesforce instance URL `{url}` is not an absolute http(s) URL: {reason}")]
    InstanceUrl { url: String, reason: String },
}

/// Everything the dashboard's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct DashboardState {
    pub(crate) store: Arc<dyn Store>,
    /// SHA-256 of the configured token; the token itself is not kept.
    pub(crate) token_digest: Option<[u8; 32]>,
    /// Base for links to Salesforce records, only for a real org (https, named host).
    pub(crate) record_link_base: Option<String>,
}

impl DashboardState {
    /// `token`: when set, every request must present it. `salesforce_instance_url`: the org's
    /// instance URL; record ids link to `{instance_url}/{id}` when it is https on a named
    /// host (an emulator on a loopback or IP address gets no links: it has no record pages).
    pub fn new(
        store: Arc<dyn Store>,
        token: Option<SecretString>,
        salesforce_instance_url: Option<String>,
    ) -> Result<DashboardState, DashboardError> {
        let token_digest = match token {
            Some(t) if t.expose_secret().is_empty() => return Err(DashboardError::EmptyToken),
            Some(t) => Some(auth::digest(t.expose_secret().as_bytes())),
            None => None,
        };
        let record_link_base = match salesforce_instance_url {
            Some(url) => link_base(&url)?,
            None => None,
        };
        Ok(DashboardState {
            store,
            token_digest,
            record_link_base,
        })
    }

    /// Whether requests must present a token.
    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }
}

fn link_base(url: &str) -> Result<Option<String>, DashboardError> {
    let parsed = url::Url::parse(url).map_err(|e| DashboardError::InstanceUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" => return Ok(None),
        other => {
            return Err(DashboardError::InstanceUrl {
                url: url.to_owned(),
                reason: format!("scheme `{other}`"),
            })
        }
    }
    match parsed.host() {
        Some(url::Host::Domain(d)) if d != "localhost" && !d.ends_with(".localhost") => {
            Ok(Some(parsed.as_str().trim_end_matches('/').to_owned()))
        }
        _ => Ok(None),
    }
}

/// The dashboard's routes: `/dashboard` and `/api/v1/…`, with authentication applied.
/// Merge it into the main router: `server_router.merge(dashboard::router(state))`.
pub fn router(state: DashboardState) -> Router {
    let api = Router::new()
        .route("/events", get(api::events))
        .route("/events/{id}", get(api::event))
        .route("/search", get(api::search))
        .route("/dead-letters", get(api::dead_letters))
        .route("/dead-letters/{id}/replay", post(api::replay))
        .route("/budget", get(api::budget))
        .route("/stats", get(api::stats))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api,
        ));
    let page = Router::new()
        .route("/dashboard", get(page::dashboard))
        .route("/dashboard/", get(page::dashboard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_page,
        ));
    Router::new()
        .nest("/api/v1", api)
        .merge(page)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_https_orgs_get_links() {
        assert_eq!(
            link_base("https://acme.my.salesforce.com/")
                .unwrap()
                .as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert_eq!(link_base("https://127.0.0.1:8443").unwrap(), None);
        assert_eq!(link_base("https://localhost:8443").unwrap(), None);
        assert_eq!(link_base("http://acme.example").unwrap(), None);
        assert!(link_base("javascript:alert(1)").is_err());
        assert!(link_base("not a url").is_err());
    }
}
