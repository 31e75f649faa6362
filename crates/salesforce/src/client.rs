//! The HTTP client: bearer token, single-flight re-auth on 401, `Sforce-Limit-Info`
//! tracking, in-flight cap, timeouts.

use crate::auth::{transport_error, Credentials, TokenSource};
use crate::error::{error_from_response, ApiError, SalesforceError, TransportKind};
use crate::limits::{parse_limit_info, ApiUsage};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// Default REST API version (≥ v46 for the upsert `created` flag, ≥ v52 for the duplicate
/// rule header, ≥ v61 for `updateOnly`).
pub const DEFAULT_API_VERSION: &str = "v62.0";
/// Oldest API version this client accepts.
pub const MIN_API_VERSION: f32 = 46.0;

/// Callback invoked with the latest API usage after every response that carries it.
pub type UsageCallback = Arc<dyn Fn(ApiUsage) + Send + Sync>;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// REST API version, `vNN.N` (default [`DEFAULT_API_VERSION`]).
    pub api_version: String,
    /// Whole-request timeout (default 120 s, well under Salesforce's 10-minute limit). A write
    /// that times out is reported with `outcome_unknown`.
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Maximum requests in flight at once (default 8; the org allows 25 long-running).
    pub max_in_flight: usize,
    /// `Sforce-Auto-Assign` header on writes; `Some(false)` disables assignment rules.
    pub auto_assign: Option<bool>,
    /// `Sforce-Duplicate-Rule-Header` value on writes, e.g.
    /// `allowSave=true; includeRecordDetails=false; runAsCurrentUser=false`.
    pub duplicate_rule_header: Option<String>,
    /// `Sforce-Query-Options: batchSize=N` on queries (200..=2000).
    pub query_batch_size: Option<u32>,
    /// User-Agent header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_version: DEFAULT_API_VERSION.to_owned(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_in_flight: 8,
            auto_assign: None,
            duplicate_rule_header: None,
            query_batch_size: None,
            user_agent: concat!("revsync-salesforce/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ClientConfig {
    fn validate(&self) -> Result<(), SalesforceError> {
        let v = self
            .api_version
            .strip_prefix('v')
            .and_then(|n| {
                let (major, minor) = n.split_once('.')?;
                if major.is_empty()
                    || minor.is_empty()
                    || !major
                        .chars()
                        .chain(minor.chars())
                        .all(|c| c.is_ascii_digit())
                {
                    return None;
                }
                n.parse::<f32>().ok()
            })
            .ok_or_else(|| {
                SalesforceError::Config(format!(
                    "api_version {:?} must look like \"v62.0\"",
                    self.api_version
                ))
            })?;
        if v < MIN_API_VERSION {
            return Err(SalesforceError::Config(format!(
                "api_version {} is too old: upsert needs v46.0 or later",
                self.api_version
            )));
        }
        if self.max_in_flight == 0 {
            return Err(SalesforceError::Config(
                "max_in_flight must be at least 1".to_owned(),
            ));
        }
        if let Some(n) = self.query_batch_size {
            if !(200..=2000).contains(&n) {
                return Err(SalesforceError::Config(format!(
                    "query_batch_size {n} must be within 200..=2000"
                )));
            }
        }
        if let Some(v) = &self.duplicate_rule_header {
            HeaderValue::from_str(v).map_err(|_| {
                SalesforceError::Config("duplicate_rule_header is not a valid header value".into())
            })?;
        }
        Ok(())
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    credentials: Credentials,
    config: ClientConfig,
    http: Option<reqwest::Client>,
    on_usage: Option<UsageCallback>,
}

impl ClientBuilder {
    /// Replace the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }
    /// REST API version, e.g. `"v62.0"`.
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.config.api_version = v.into();
        self
    }
    /// Whole-request timeout.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.config.request_timeout = t;
        self
    }
    /// Maximum requests in flight.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }
    /// Use this HTTP client (its own timeouts apply in addition to the configured ones).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }
    /// Call `f` with the latest [`ApiUsage`] after every response carrying `Sforce-Limit-Info`.
    pub fn on_api_usage(mut self, f: impl Fn(ApiUsage) + Send + Sync + 'static) -> Self {
        self.on_usage = Some(Arc::new(f));
        self
    }

    /// Validate and build. Does not call Salesforce (the first request authenticates; call
    /// [`Client::authenticate`] to fail fast at start-up).
    pub fn build(self) -> Result<Client, SalesforceError> {
        self.config.validate()?;
        self.credentials.validate()?;
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .connect_timeout(self.config.connect_timeout)
                .user_agent(self.config.user_agent.clone())
                .build()
                .map_err(|e| SalesforceError::Config(format!("cannot build HTTP client: {e}")))?,
        };
        let (usage_tx, _) = watch::channel(None);
        Ok(Client {
            inner: Arc::new(Inner {
                tokens: TokenSource::new(http.clone(), self.credentials),
                http,
                permits: Semaphore::new(self.config.max_in_flight),
                config: self.config,
                usage_tx,
                on_usage: self.on_usage,
            }),
        })
    }
}

/// Salesforce REST client. Cheap to clone (an `Arc` inside); share one per org.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    tokens: TokenSource,
    config: ClientConfig,
    permits: Semaphore,
    usage_tx: watch::Sender<Option<ApiUsage>>,
    on_usage: Option<UsageCallback>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_version", &self.inner.config.api_version)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// Body of a request, kept as bytes so the request can be replayed after a re-auth.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Vec<u8>),
    Csv(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    /// Absolute path on the instance (starting with `/`), query string allowed.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub accept: &'static str,
}

impl Request {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
            headers: Vec::new(),
            accept: "application/json",
        }
    }

    pub(crate) fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, SalesforceError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| SalesforceError::InvalidRequest(format!("body is not JSON: {e}")))?;
        self.body = Body::Json(bytes);
        Ok(self)
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD)
    }
}

/// A raw response (any status other than a session failure that re-auth fixed).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Response {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Map a non-2xx response to an error.
    pub(crate) fn error_for_status(self) -> Result<Response, SalesforceError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(error_from_response(self.status, &self.body))
        }
    }

    pub(crate) fn json<T: DeserializeOwned>(
        &self,
        context: &'static str,
    ) -> Result<T, SalesforceError> {
        serde_json::from_slice(&self.body).map_err(|e| SalesforceError::decode(context, e))
    }
}

impl Client {
    /// Start building a client.
    pub fn builder(credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            credentials,
            config: ClientConfig::default(),
            http: None,
            on_usage: None,
        }
    }

    /// A client with the given configuration.
    pub fn new(credentials: Credentials, config: ClientConfig) -> Result<Client, SalesforceError> {
        Client::builder(credentials).config(config).build()
    }

    /// Configured API version, e.g. `"v62.0"`.
    pub fn api_version(&self) -> &str {
        &self.inner.config.api_version
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The token cache (for metrics: `authentications()`).
    pub fn tokens(&self) -> &TokenSource {
        &self.inner.tokens
    }

    /// Authenticate now (if no token is cached) and return the instance URL.
    pub async fn authenticate(&self) -> Result<String, SalesforceError> {
        let (_, token) = self.inner.tokens.token().await?;
        Ok(token.instance_url.clone())
    }

    /// Successful token requests after the first one, i.e. re-authentications after a 401
    /// `INVALID_SESSION_ID` (a refresh shared by concurrent callers counts once).
    pub fn reauthentications(&self) -> u64 {
        self.inner.tokens.authentications().saturating_sub(1)
    }

    /// Latest `api-usage` seen in a `Sforce-Limit-Info` header.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.inner.usage_tx.borrow()
    }

    /// Watch the latest `api-usage` (for the budget governor).
    pub fn subscribe_api_usage(&self) -> watch::Receiver<Option<ApiUsage>> {
        self.inner.usage_tx.subscribe()
    }

    /// `/services/data/{version}/{suffix}`
    pub(crate) fn data_path(&self, suffix: &str) -> String {
        format!(
            "/services/data/{}/{}",
            self.inner.config.api_version,
            suffix.trim_start_matches('/')
        )
    }

    /// Send any JSON request to a path on the instance (e.g. `/services/data/v62.0/...`) and
    /// return the decoded JSON body (`Null` for an empty 2xx body). Escape hatch for
    /// resources this crate does not model; gets the same auth, retry and limit handling.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, SalesforceError> {
        if !path.starts_with('/') {
            return Err(SalesforceError::InvalidRequest(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let mut req = Request::new(method, path);
        if let Some(b) = body {
            req = req.json(b)?;
        }
        let resp = self.execute(req).await?.error_for_status()?;
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        resp.json("request_json")
    }

    /// Send a request: bearer token, limit header tracking, one single-flight re-auth and
    /// replay on 401 `INVALID_SESSION_ID`. Returns the response whatever its status.
    ///
    /// Never loops: a request is replayed at most once. If the org keeps rejecting fresh
    /// tokens (revoked app, deactivated user), each request costs one token call and ends in
    /// `ErrorClass::SessionExpired`; the caller should pause and alert rather than retry hot.
    pub(crate) async fn execute(&self, req: Request) -> Result<Response, SalesforceError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| SalesforceError::Config("client semaphore closed".to_owned()))?;
        let (generation, token) = self.inner.tokens.token().await?;
        let resp = self.send_once(&req, &token).await?;
        if resp.status != 401 || !is_session_failure(&resp.body) {
            return Ok(resp);
        }
        tracing::info!(
            method = %req.method,
            path = %path_only(&req.path),
            generation,
            "Salesforce session expired; re-authenticating"
        );
        let (_, new_token) = self.inner.tokens.invalidate_and_refresh(generation).await?;
        let replay = self.send_once(&req, &new_token).await?;
        if replay.status == 401 {
            tracing::error!(
                method = %req.method,
                path = %path_only(&req.path),
                "Salesforce rejected a freshly issued token"
            );
        }
        Ok(replay)
    }

    async fn send_once(
        &self,
        req: &Request,
        token: &crate::auth::AccessToken,
    ) -> Result<Response, SalesforceError> {
        let url = format!("{}{}", token.instance_url, req.path);
        let mut url = url::Url::parse(&url).map_err(|e| {
            SalesforceError::InvalidRequest(format!("bad URL for {}: {e}", req.path))
        })?;
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                pairs.append_pair(k, v);
            }
        }
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .timeout(self.inner.config.request_timeout)
            .bearer_auth(token.access_token.expose())
            .header(reqwest::header::ACCEPT, req.accept);
        match &req.body {
            Body::None => {}
            Body::Json(b) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            Body::Csv(b) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "text/csv")
                    .body(b.clone());
            }
        }
        if req.is_write() {
            if let Some(a) = self.inner.config.auto_assign {
                builder = builder.header("Sforce-Auto-Assign", if a { "TRUE" } else { "FALSE" });
            }
            if let Some(d) = &self.inner.config.duplicate_rule_header {
                builder = builder.header("Sforce-Duplicate-Rule-Header", d.as_str());
            }
        }
        for (k, v) in &req.headers {
            builder = builder.header(k.clone(), v.clone());
        }
        let started = Instant::now();
        let write = req.is_write();
        let resp = builder
            .send()
            .await
            .map_err(|e| self.log_transport(req, transport_error(e, write)))?;
        let status = resp.status().as_u16();
        self.record_usage(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.log_transport(req, transport_error(e, write)))?;
        tracing::debug!(
            method = %req.method,
            path = %path_only(&req.path),
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Salesforce call"
        );
        Ok(Response { status, body })
    }

    fn log_transport(&self, req: &Request, err: SalesforceError) -> SalesforceError {
        if let SalesforceError::Transport {
            kind,
            outcome_unknown,
            ..
        } = &err
        {
            tracing::warn!(
                method = %req.method,
                path = %path_only(&req.path),
                timeout = *kind == TransportKind::Timeout,
                outcome_unknown,
                error = %err,
                "Salesforce call failed in transport"
            );
        }
        err
    }

    fn record_usage(&self, headers: &HeaderMap) {
        let Some(info) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .map(parse_limit_info)
        else {
            return;
        };
        if let Some(usage) = info.api_usage {
            self.inner.usage_tx.send_replace(Some(usage));
            if let Some(cb) = &self.inner.on_usage {
                cb(usage);
            }
        }
    }
}

/// A 401 whose body is `INVALID_SESSION_ID` (or carries no recognisable error at all).
fn is_session_failure(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let errors = crate::error::parse_error_items(&v);
            errors.is_empty()
                || errors
                    .iter()
                    .any(|e: &ApiError| e.code == "INVALID_SESSION_ID")
        }
        Err(_) => true,
    }
}

/// The path without a query string (SOQL in queries may hold customer data: never log it).
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}
