//! A faithful Salesforce API emulator: a library (start it in-process on port 0 from tests)
//! and a binary (`sf-emulator --listen HOST:PORT`).
//!
//! It owns everything needed to stand in for a Salesforce org over HTTP: OAuth token
//! endpoints (JWT bearer, client credentials, refresh token, username-password) and the
//! SOAP `login` call; the REST API (sObject CRUD, upsert by external id, describe, SOQL
//! query with pagination, `/limits`); `/composite`, `/composite/graph` and sObject
//! Collections; Bulk API 2.0 ingest; the daily API allocation with `Sforce-Limit-Info`;
//! validation (required fields, lengths, e-mail, restricted picklists, unique external ids,
//! the standard contact duplicate rule, multi-currency) and fault injection (latency, 5xx,
//! row locks, session expiry, outages, commit-then-time-out). Response shapes, status codes
//! and error codes follow `shared/reference/salesforce.md`; where the reference marks a
//! fact UNCONFIRMED, the doc comment at the implementing site says what was assumed.
//!
//! It must not know anything about revsync: no flows, no 2Checkout, no store. It is a
//! stand-in for Salesforce and nothing else.

pub mod admin;
pub mod auth;
pub mod bulk;
pub mod composite;
pub mod error;
pub mod faults;
pub mod http;
pub mod ids;
pub mod limits;
pub mod org;
pub mod persist;
pub mod rest;
pub mod soql;
pub mod store;
pub mod tls;

use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use error::SfError;
pub use faults::{Faults, Latency};
pub use limits::CallStats;
pub use org::{OrgDefinition, OrgDefinitionError};
pub use tls::TlsConfig;

/// API version used where a request carries none.
pub const DEFAULT_API_VERSION: f64 = 62.0;

/// Everything that configures one emulated org.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Custom fields/objects on top of the standard objects.
    pub org: OrgDefinition,
    /// Multi-currency org: `CurrencyIsoCode` fields and the `CurrencyType` object exist.
    pub multi_currency: bool,
    /// Active currencies besides the corporate one (multi-currency orgs only).
    pub active_currencies: Vec<String>,
    pub corporate_currency: String,
    /// Rolling 24-hour API request allocation (`DailyApiRequests.Max`).
    pub daily_api_limit: u64,
    /// Default query page size (Salesforce: 2,000; `Sforce-Query-Options: batchSize` can lower it).
    pub query_page_size: usize,
    pub username: String,
    pub password: String,
    /// Appended to the password in the SOAP login and accepted appended in the password flow.
    pub security_token: String,
    pub client_id: String,
    pub client_secret: String,
    /// PEM public key (SPKI or PKCS#1 RSA) that verifies JWT bearer assertions.
    pub jwt_public_key_pem: Option<String>,
    /// Consumer key expected as the JWT `iss`; defaults to `client_id`.
    pub jwt_consumer_key: Option<String>,
    /// JSON snapshot file: loaded at start, written (debounced) after changes and at shutdown.
    pub state_file: Option<PathBuf>,
    /// Debounce between a change and the snapshot write.
    pub persist_debounce: Duration,
    /// Instance URL handed out by the token endpoints; default: scheme + `Host` header.
    pub public_url: Option<String>,
    /// Records processed per lock acquisition by the Bulk API worker.
    pub bulk_chunk_size: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            org: OrgDefinition::default(),
            multi_currency: false,
            active_currencies: vec!["EUR".into(), "GBP".into()],
            corporate_currency: "USD".into(),
            daily_api_limit: 100_000,
            query_page_size: 2000,
            username: "integration@revsync.example".into(),
            password: "emulator-password".into(),
            security_token: String::new(),
            client_id: "revsync-emulator-client".into(),
            client_secret: "emulator-secret".into(),
            jwt_public_key_pem: None,
            jwt_consumer_key: None,
            state_file: None,
            persist_debounce: Duration::from_millis(500),
            public_url: None,
            bulk_chunk_size: 500,
        }
    }
}

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Org(#[from] OrgDefinitionError),
    #[error("state file {path}: {reason}")]
    State { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<StartError> for std::io::Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// State shared by every request handler.
pub struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) scheme: &'static str,
    pub(crate) state: Mutex<store::OrgState>,
    pub(crate) auth: Mutex<auth::AuthState>,
    pub(crate) usage: Mutex<limits::Usage>,
    pub(crate) faults: Mutex<faults::FaultState>,
    pub(crate) cursors: Mutex<rest::Cursors>,
    pub(crate) jobs: Mutex<HashMap<String, bulk::Job>>,
    pub(crate) persist_wake: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn build(
        config: EmulatorConfig,
        scheme: &'static str,
    ) -> Result<Arc<Shared>, StartError> {
        let st = new_org_state(&config)?;
        let shared = Arc::new(Shared {
            usage: Mutex::new(limits::Usage::new(config.daily_api_limit)),
            auth: Mutex::new(auth::AuthState::default()),
            faults: Mutex::new(faults::FaultState::default()),
            cursors: Mutex::new(rest::Cursors::default()),
            jobs: Mutex::new(HashMap::new()),
            persist_wake: tokio::sync::Notify::new(),
            state: Mutex::new(st),
            scheme,
            config,
        });
        if let Some(path) = &shared.config.state_file {
            if path.exists() {
                persist::load(&shared, path).map_err(|reason| StartError::State {
                    path: path.display().to_string(),
                    reason,
                })?;
            }
        }
        Ok(shared)
    }

    /// Replaces all data with a fresh org (admin reset).
    pub(crate) fn reset(&self) -> Result<(), StartError> {
        let st = new_org_state(&self.config)?;
        *self.state.lock() = st;
        *self.usage.lock() = limits::Usage::new(self.config.daily_api_limit);
        *self.faults.lock() = faults::FaultState::default();
        *self.cursors.lock() = rest::Cursors::default();
        self.jobs.lock().clear();
        self.auth.lock().sessions.clear();
        Ok(())
    }

    /// Tells the persistence task that data changed.
    pub(crate) fn changed(&self) {
        if self.config.state_file.is_some() {
            self.persist_wake.notify_one();
        }
    }
}

fn new_org_state(config: &EmulatorConfig) -> Result<store::OrgState, StartError> {
    let schema = org::Schema::build(
        &config.org,
        config.multi_currency,
        &config.active_currencies,
        &config.corporate_currency,
    )?;
    Ok(store::OrgState::new(
        Arc::new(schema),
        &config.username,
        &config.corporate_currency,
        &config.active_currencies,
    ))
}

/// A running emulator (in-process). Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Binds `127.0.0.1:0` and serves plain HTTP until the handle is dropped or shut down.
pub async fn spawn(config: EmulatorConfig) -> std::io::Result<Emulator> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    spawn_on(listener, config, None).await
}

/// Like [`spawn`] but serves HTTPS with a certificate generated at start (or the given one).
pub async fn spawn_tls(config: EmulatorConfig, tls: TlsConfig) -> std::io::Result<Emulator> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    spawn_on(listener, config, Some(tls)).await
}

async fn spawn_on(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    tls: Option<TlsConfig>,
) -> std::io::Result<Emulator> {
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shared = Shared::build(config, scheme)?;
    let cancel = CancellationToken::new();
    let acceptor = match tls {
        Some(t) => Some(tls::acceptor(&t).map_err(|e| std::io::Error::other(e.to_string()))?),
        None => None,
    };
    let task = tokio::spawn(http::run(
        listener,
        shared.clone(),
        cancel.clone(),
        acceptor,
    ));
    Ok(Emulator {
        addr,
        scheme,
        shared,
        cancel,
        task: Some(task),
    })
}

/// Serves plain HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Shared::build(config, "http")?;
    http::run(listener, shared, shutdown, None).await
}

/// Serves HTTPS on `listener` until `shutdown` is cancelled.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    tls: TlsConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Shared::build(config, "https")?;
    let acceptor = tls::acceptor(&tls).map_err(|e| std::io::Error::other(e.to_string()))?;
    http::run(listener, shared, shutdown, Some(acceptor)).await
}

impl Emulator {
    /// Instance URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Token endpoint URL.
    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.url())
    }

    /// All live records of an sObject type, with `Id` and every set field.
    pub fn records(&self, sobject: &str) -> Vec<Value> {
        self.shared.state.lock().records(sobject)
    }

    /// How many live records of an sObject type there are.
    pub fn count(&self, sobject: &str) -> usize {
        self.shared.state.lock().count(sobject)
    }

    /// API calls counted against the limit, per resource, and HTTP requests.
    pub fn calls(&self) -> CallStats {
        self.shared.usage.lock().stats()
    }

    /// Fault-injection handle (clonable).
    pub fn faults(&self) -> Faults {
        Faults::new(self.shared.clone())
    }

    /// Seeds a record directly (no API accounting, no duplicate rule, read-only fields
    /// allowed). Panics with the Salesforce error when validation fails; see [`Self::try_insert`].
    pub fn insert(&self, sobject: &str, fields: Value) -> String {
        self.try_insert(sobject, fields)
            .unwrap_or_else(|e| panic!("seeding {sobject} failed: {e}"))
    }

    /// Seeds a record directly, returning the Salesforce error on invalid data.
    pub fn try_insert(&self, sobject: &str, fields: Value) -> Result<String, SfError> {
        let Value::Object(map) = fields else {
            return Err(SfError::json_parse("record must be a JSON object"));
        };
        let id = self.shared.state.lock().seed_insert(sobject, &map)?;
        self.shared.changed();
        Ok(id)
    }

    /// Issues a refresh token for the configured user (as if from a web-server flow).
    pub fn issue_refresh_token(&self) -> String {
        self.shared
            .auth
            .lock()
            .issue_refresh_token(&self.shared.config.username)
    }

    /// The id of the seeded integration user (default `OwnerId`).
    pub fn integration_user_id(&self) -> String {
        self.shared.state.lock().integration_user_id.clone()
    }

    /// Stops the server, waits for it and writes the final snapshot.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
