//! A small client for 2Checkout's REST API 6.0 (reference §4): the
//! `X-Avangate-Authentication` header on every request, JSON in and out, paths with a
//! trailing `/`, and capped exponential backoff with jitter on HTTP 429 and 5xx (the
//! reference found no documented rate limit, so the client is careful anyway).

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use twocheckout::rest_auth::{authentication_header, AUTH_HEADER};
use twocheckout::signature::{Algorithm, SecretKey};
use url::Url;

/// Why a REST call failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401: the merchant code or Secret Key is wrong, or this machine's clock is off.
    #[error("2Checkout refused the credentials ({code}): {message} — check twocheckout.merchant_code, twocheckout.secret_key and the clock (NTP)")]
    Unauthorized { code: String, message: String },
    /// 429 / 5xx after every retry: 2Checkout is busy or down; run again later.
    #[error("2Checkout API unavailable after {attempts} attempts: HTTP {status}: {message}")]
    Unavailable {
        status: u16,
        attempts: u32,
        message: String,
    },
    /// Another 4xx: the request is wrong (a bug or an unsupported parameter).
    #[error("2Checkout API rejected the request: HTTP {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// The network failed on every attempt (DNS, TLS, connection refused, timeout).
    #[error("cannot reach the 2Checkout API at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The response is not the JSON the API documents.
    #[error("unexpected 2Checkout API response: {0}")]
    Invalid(String),
    /// The client configuration is unusable (base URL).
    #[error("2Checkout API configuration: {0}")]
    Config(String),
}

impl RestError {
    /// True when running again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RestError::Unavailable { .. } | RestError::Transport { .. }
        )
    }
}

/// Retries of 429 / 5xx / network errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub max_attempts: u32,
    /// First wait; doubles per attempt, with jitter.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub page: usize,
    pub limit: usize,
    /// Matching items over all pages.
    pub count: usize,
}

impl Page {
    /// True when no page follows this one.
    pub fn is_last(&self) -> bool {
        self.items.is_empty() || self.page.saturating_mul(self.limit) >= self.count
    }
}

/// Order search parameters (reference §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSearch {
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub status: Option<String>,
    pub page: usize,
    pub limit: usize,
}

/// The REST 6.0 client.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    merchant_code: String,
    key: SecretKey,
    algorithm: Algorithm,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base.as_str())
            .field("merchant_code", &self.merchant_code)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client for the API at `base` (e.g. `https://api.2checkout.com/rest/6.0/`).
    pub fn new(
        base: &str,
        merchant_code: &str,
        key: SecretKey,
        timeout: Duration,
    ) -> Result<RestClient, RestError> {
        let mut base = Url::parse(base)
            .map_err(|e| RestError::Config(format!("api_url {base:?} is not a URL: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RestError::Config(format!("HTTP client: {e}")))?;
        Ok(RestClient {
            http,
            base,
            merchant_code: merchant_code.to_owned(),
            key,
            algorithm: Algorithm::Sha256,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> RestClient {
        self.retry = retry;
        self
    }

    /// The header algorithm (default SHA-256).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> RestClient {
        self.algorithm = algorithm;
        self
    }

    /// `GET {base}{path}` with `query`, retried on 429 / 5xx / network errors.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, RestError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| RestError::Config(format!("path {path:?}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let header = authentication_header(
                &self.merchant_code,
                &self.key,
                self.algorithm,
                Utc::now().naive_utc(),
            );
            let sent = self
                .http
                .get(url.clone())
                .header(AUTH_HEADER, header)
                .header("Accept", "application/json")
                .send()
                .await;
            let retry_after = match sent {
                Err(source) => {
                    if attempt >= self.retry.max_attempts {
                        return Err(RestError::Transport {
                            url: url.to_string(),
                            source,
                        });
                    }
                    tracing::warn!(attempt, error = %source, "2Checkout API unreachable, retrying");
                    None
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(&body).map_err(|e| {
                            RestError::Invalid(format!("{path}: body is not JSON: {e}"))
                        });
                    }
                    let (code, message) = error_parts(&body);
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(RestError::Unauthorized { code, message });
                    }
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !transient {
                        return Err(RestError::Rejected {
                            status: status.as_u16(),
                            code,
                            message,
                        });
                    }
                    if attempt >= self.retry.max_attempts {
                        return Err(RestError::Unavailable {
                            status: status.as_u16(),
                            attempts: attempt,
                            message,
                        });
                    }
                    tracing::warn!(
                        attempt,
                        status = status.as_u16(),
                        "2Checkout API busy, backing off"
                    );
                    retry_after
                }
            };
            let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
            tokio::time::sleep(wait.min(self.retry.cap)).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.retry.cap);
        // Full jitter between half and all of the capped delay.
        let ms = capped.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms.max(1)))
    }

    /// One page of `GET /orders/`.
    pub async fn search_orders(&self, search: &OrderSearch) -> Result<Page, RestError> {
        let mut query = vec![
            ("StartDate", search.start.format("%Y-%m-%d").to_string()),
            ("Page", search.page.to_string()),
            ("Limit", search.limit.to_string()),
            ("IncludeTestOrders", "YES".to_owned()),
        ];
        if let Some(end) = search.end {
            query.push(("EndDate", end.format("%Y-%m-%d").to_string()));
        }
        if let Some(s) = &search.status {
            query.push(("Status", s.clone()));
        }
        let body = self.get("orders/", &query).await?;
        parse_page(body, "orders/")
    }

    /// `GET /orders/{RefNo}/`; `None` when 2Checkout does not know the order.
    pub async fn order(&self, refno: &str) -> Result<Option<Value>, RestError> {
        let path = format!("orders/{}/", urlencode(refno));
        match self.get(&path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(RestError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of `GET /subscriptions/`.
    pub async fn search_subscriptions(
        &self,
        query: &[(&str, String)],
        page: usize,
        limit: usize,
    ) -> Result<Page, RestError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("Page", page.to_string()));
        q.push(("Limit", limit.to_string()));
        let body = self.get("subscriptions/", &q).await?;
        parse_page(body, "subscriptions/")
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn error_parts(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["error_code"].as_str().unwrap_or("").to_owned();
    let message = v["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect());
    (code, message)
}

fn parse_page(body: Value, what: &str) -> Result<Page, RestError> {
    let items = body["Items"]
        .as_array()
        .cloned()
        .ok_or_else(|| RestError::Invalid(format!("{what}: no Items array")))?;
    let num = |k: &str| {
        body["Pagination"][k]
            .as_u64()
            .or_else(|| body["Pagination"][k].as_str()?.parse().ok())
            .map(|n| n as usize)
            .ok_or_else(|| RestError::Invalid(format!("{what}: no Pagination.{k}")))
    };
    Ok(Page {
        items,
        page: num("Page")?,
        limit: num("Limit")?,
        count: num("Count")?,
    })
}
