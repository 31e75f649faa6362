//! OAuth 2.0 flows against `/services/oauth2/token` (reference §1) and the token cache.
//!
//! [`TokenSource`] caches one [`AccessToken`] (access token + `instance_url`). There is no
//! `expires_in` in Salesforce token responses, so a token is used until a REST call answers
//! 401 `INVALID_SESSION_ID`; then [`TokenSource::invalidate_and_refresh`] re-authenticates
//! **once** for every caller that saw the same token (single flight: a tokio mutex plus a
//! generation counter).

use crate::error::{oauth_error, snippet, SalesforceError, TransportKind};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Production login host.
pub const LOGIN_URL: &str = "https://login.salesforce.com";
/// Sandbox login host.
pub const TEST_LOGIN_URL: &str = "https://test.salesforce.com";
/// Path of the token endpoint on any login / My Domain host.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// Lifetime of a JWT bearer assertion. Salesforce requires `exp` within 3 minutes
/// (reference §1.1, UNCONFIRMED); we stay just under it.
pub const JWT_ASSERTION_LIFETIME: Duration = Duration::from_secs(170);

/// A secret string that never appears in `Debug`/`Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// An RS256 signing key parsed from PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
#[derive(Clone)]
pub struct PrivateKey(Arc<jsonwebtoken::EncodingKey>);

impl PrivateKey {
    /// Parse PEM bytes.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SalesforceError> {
        jsonwebtoken::EncodingKey::from_rsa_pem(pem)
            .map(|k| PrivateKey(Arc::new(k)))
            .map_err(|e| SalesforceError::Config(format!("JWT private key is not an RSA PEM: {e}")))
    }

    /// Read and parse a PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, SalesforceError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            SalesforceError::Config(format!(
                "cannot read JWT private key file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_pem(&bytes)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

/// OAuth 2.0 JWT bearer flow (reference §1.1): recommended for a server with a dedicated,
/// pre-authorised integration user. No refresh token; a new assertion is minted each time.
#[derive(Debug, Clone)]
pub struct JwtBearer {
    /// Connected app consumer key (`iss`).
    pub consumer_key: String,
    /// Integration user's username (`sub`).
    pub username: String,
    /// RS256 key whose certificate is uploaded to the connected app.
    pub private_key: PrivateKey,
    /// Host the token request is POSTed to (login, test, or My Domain URL).
    pub login_url: String,
    /// `aud` claim: `https://login.salesforce.com` or `https://test.salesforce.com`
    /// even when posting to My Domain (reference §1.1).
    pub audience: String,
}

impl JwtBearer {
    /// JWT bearer credentials posting to `login_url`; `aud` is `login_url` unless it is a
    /// My Domain host, in which case call [`JwtBearer::audience`].
    pub fn new(
        consumer_key: impl Into<String>,
        username: impl Into<String>,
        private_key: PrivateKey,
        login_url: impl Into<String>,
    ) -> Self {
        let login_url = trim_url(login_url.into());
        JwtBearer {
            consumer_key: consumer_key.into(),
            username: username.into(),
            private_key,
            audience: login_url.clone(),
            login_url,
        }
    }

    /// Override the `aud` claim.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = trim_url(audience.into());
        self
    }

    /// Build and sign the assertion (`exp` in seconds, now + [`JWT_ASSERTION_LIFETIME`]).
    pub fn assertion(&self) -> Result<String, SalesforceError> {
        self.assertion_at(SystemTime::now())
    }

    fn assertion_at(&self, now: SystemTime) -> Result<String, SalesforceError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            exp: u64,
        }
        let exp = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
            + JWT_ASSERTION_LIFETIME.as_secs();
        let claims = Claims {
            iss: &self.consumer_key,
            sub: &self.username,
            aud: &self.audience,
            exp,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &self.private_key.0)
            .map_err(|e| SalesforceError::Config(format!("cannot sign JWT assertion: {e}")))
    }
}

/// How client id/secret are presented to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// `Authorization: Basic base64(id:secret)` (what the reference saw in use, §1.2).
    #[default]
    Basic,
    /// `client_id` / `client_secret` in the form body (UNCONFIRMED for client credentials).
    Form,
}

/// OAuth 2.0 client credentials flow (reference §1.2). Must use the org's My Domain URL.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// Connected app consumer key.
    pub client_id: String,
    /// Connected app consumer secret.
    pub client_secret: Secret,
    /// My Domain URL, e.g. `https://acme.my.salesforce.com`.
    pub my_domain_url: String,
    /// How id/secret are sent.
    pub auth_method: ClientAuthMethod,
}

impl ClientCredentials {
    /// Client credentials against `my_domain_url`, id/secret via HTTP Basic.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        my_domain_url: impl Into<String>,
    ) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            my_domain_url: trim_url(my_domain_url.into()),
            auth_method: ClientAuthMethod::Basic,
        }
    }

    /// Choose how id/secret are sent.
    pub fn auth_method(mut self, method: ClientAuthMethod) -> Self {
        self.auth_method = method;
        self
    }
}

/// Refresh-token flow (reference §1.3). With refresh-token rotation enabled on the app every
/// refresh returns a new refresh token; [`TokenSource`] keeps using the newest one in memory
/// (read it with [`TokenSource::latest_refresh_token`] to persist it). Prefer JWT or client
/// credentials for servers.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// Connected app consumer key.
    pub client_id: String,
    /// Consumer secret, when the app requires it.
    pub client_secret: Option<Secret>,
    /// The refresh token.
    pub refresh_token: Secret,
    /// Login or My Domain URL.
    pub login_url: String,
}

/// Username-password flow (reference §1.4): legacy, for emulators and tests only.
#[derive(Debug, Clone)]
pub struct Password {
    /// Connected app consumer key.
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: Secret,
    /// Username.
    pub username: String,
    /// Password with the security token appended.
    pub password: Secret,
    /// Login or My Domain URL.
    pub login_url: String,
}

/// How to obtain an access token.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// JWT bearer (recommended).
    JwtBearer(JwtBearer),
    /// Client credentials (alternative).
    ClientCredentials(ClientCredentials),
    /// Refresh token.
    RefreshToken(RefreshToken),
    /// Username-password (legacy; emulator and tests).
    Password(Password),
}

impl Credentials {
    /// Check the configuration without calling Salesforce.
    pub fn validate(&self) -> Result<(), SalesforceError> {
        let url = self.token_url();
        let parsed = url::Url::parse(&url)
            .map_err(|e| SalesforceError::Config(format!("token URL {url:?} is invalid: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(SalesforceError::Config(format!(
                "token URL {url:?} must be http(s)"
            )));
        }
        if let Credentials::ClientCredentials(cc) = self {
            let base = cc.my_domain_url.to_ascii_lowercase();
            if base == LOGIN_URL || base == TEST_LOGIN_URL {
                return Err(SalesforceError::Config(
                    "client credentials flow must use the org's My Domain URL, not login/test.salesforce.com"
                        .to_owned(),
                ));
            }
        }
        if let Credentials::JwtBearer(j) = self {
            // Sign once to surface key problems at start-up.
            j.assertion()?;
        }
        Ok(())
    }

    /// Full token endpoint URL.
    pub fn token_url(&self) -> String {
        let base = match self {
            Credentials::JwtBearer(j) => &j.login_url,
            Credentials::ClientCredentials(c) => &c.my_domain_url,
            Credentials::RefreshToken(r) => &r.login_url,
            Credentials::Password(p) => &p.login_url,
        };
        format!("{base}{TOKEN_PATH}")
    }

    fn flow_name(&self) -> &'static str {
        match self {
            Credentials::JwtBearer(_) => "jwt_bearer",
            Credentials::ClientCredentials(_) => "client_credentials",
            Credentials::RefreshToken(_) => "refresh_token",
            Credentials::Password(_) => "password",
        }
    }

    /// Perform the flow once.
    pub async fn authenticate(
        &self,
        http: &reqwest::Client,
    ) -> Result<AccessToken, SalesforceError> {
        self.authenticate_with(http, None).await
    }

    /// Perform the flow once; for the refresh-token flow use `rotated_refresh_token` instead
    /// of the configured one when given.
    async fn authenticate_with(
        &self,
        http: &reqwest::Client,
        rotated_refresh_token: Option<&Secret>,
    ) -> Result<AccessToken, SalesforceError> {
        let mut form: Vec<(&str, String)> = Vec::new();
        let mut basic: Option<(String, String)> = None;
        match self {
            Credentials::JwtBearer(j) => {
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push(("assertion", j.assertion()?));
            }
            Credentials::ClientCredentials(c) => {
                form.push(("grant_type", "client_credentials".into()));
                match c.auth_method {
                    ClientAuthMethod::Basic => {
                        basic = Some((c.client_id.clone(), c.client_secret.expose().to_owned()))
                    }
                    ClientAuthMethod::Form => {
                        form.push(("client_id", c.client_id.clone()));
                        form.push(("client_secret", c.client_secret.expose().to_owned()));
                    }
                }
            }
            Credentials::RefreshToken(r) => {
                form.push(("grant_type", "refresh_token".into()));
                let token = rotated_refresh_token.unwrap_or(&r.refresh_token);
                form.push(("refresh_token", token.expose().to_owned()));
                form.push(("client_id", r.client_id.clone()));
                if let Some(s) = &r.client_secret {
                    form.push(("client_secret", s.expose().to_owned()));
                }
            }
            Credentials::Password(p) => {
                form.push(("grant_type", "password".into()));
                form.push(("client_id", p.client_id.clone()));
                form.push(("client_secret", p.client_secret.expose().to_owned()));
                form.push(("username", p.username.clone()));
                form.push(("password", p.password.expose().to_owned()));
            }
        }
        let url = self.token_url();
        let mut req = http
            .post(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        tracing::debug!(flow = self.flow_name(), token_url = %url, "requesting Salesforce access token");
        let resp = req.send().await.map_err(|e| transport_error(e, false))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| transport_error(e, false))?;
        let value: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            if let Some(err) = value.as_ref().and_then(|v| oauth_error(status, v)) {
                tracing::warn!(flow = self.flow_name(), status, error = %err, "Salesforce authentication refused");
                return Err(err);
            }
            return Err(crate::error::error_from_response(status, &body));
        }
        let value = value.ok_or_else(|| {
            SalesforceError::decode("token response", format!("not JSON: {}", snippet(&body)))
        })?;
        if let Some(err) = oauth_error(status, &value) {
            return Err(err);
        }
        let raw: RawToken = serde_json::from_value(value)
            .map_err(|e| SalesforceError::decode("token response", e))?;
        if raw.access_token.is_empty() || raw.instance_url.is_empty() {
            return Err(SalesforceError::decode(
                "token response",
                "missing access_token or instance_url",
            ));
        }
        if let Some(t) = &raw.token_type {
            if !t.eq_ignore_ascii_case("bearer") {
                return Err(SalesforceError::decode(
                    "token response",
                    format!("unsupported token_type {t:?}"),
                ));
            }
        }
        tracing::info!(flow = self.flow_name(), instance_url = %raw.instance_url, "obtained Salesforce access token");
        Ok(AccessToken {
            access_token: Secret(raw.access_token),
            instance_url: trim_url(raw.instance_url),
            id: raw.id,
            issued_at_ms: raw.issued_at.and_then(|s| s.parse().ok()),
            scope: raw.scope,
            refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret),
        })
    }
}

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    instance_url: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A cached access token and the REST base it belongs to.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// Bearer token (redacted in `Debug`).
    pub access_token: Secret,
    /// REST base URL, without a trailing slash (always use it, never a hard-coded pod).
    pub instance_url: String,
    /// Identity URL (contains org id `00D…` and user id `005…`).
    pub id: Option<String>,
    /// `issued_at`: epoch milliseconds.
    pub issued_at_ms: Option<u64>,
    /// Granted scopes.
    pub scope: Option<String>,
    /// A refresh token, when the flow issued one (refresh-token rotation).
    pub refresh_token: Option<Secret>,
}

pub(crate) fn transport_error(e: reqwest::Error, write: bool) -> SalesforceError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    SalesforceError::Transport {
        kind,
        outcome_unknown: write && kind != TransportKind::Connect,
        message: e.to_string(),
        source: Some(e),
    }
}

fn trim_url(mut s: String) -> String {
    while s.ends_with('/') {
        s.pop();
    }
    s
}

/// The token cache with single-flight re-authentication.
pub struct TokenSource {
    http: reqwest::Client,
    credentials: Credentials,
    /// Fast path: the current token and its generation.
    current: RwLock<Option<(u64, Arc<AccessToken>)>>,
    /// Held while authenticating; concurrent refreshers wait here.
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    authentications: AtomicU64,
    rotated_refresh_token: RwLock<Option<Secret>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("flow", &self.credentials.flow_name())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A token source using `http` for token requests.
    pub fn new(http: reqwest::Client, credentials: Credentials) -> Self {
        TokenSource {
            http,
            credentials,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            authentications: AtomicU64::new(0),
            rotated_refresh_token: RwLock::new(None),
        }
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The cached token, authenticating first if there is none. Returns the token's generation
    /// to pass to [`TokenSource::invalidate_and_refresh`] after a 401.
    pub async fn token(&self) -> Result<(u64, Arc<AccessToken>), SalesforceError> {
        if let Some(cur) = self.cached() {
            return Ok(cur);
        }
        let _guard = self.refresh.lock().await;
        if let Some(cur) = self.cached() {
            return Ok(cur);
        }
        self.authenticate_locked().await
    }

    /// The cached token without authenticating.
    pub fn current(&self) -> Option<Arc<AccessToken>> {
        self.cached().map(|(_, t)| t)
    }

    /// Discard the token of generation `seen_generation` and authenticate again. Callers that
    /// saw the same stale token share ONE authentication: whoever gets the lock first
    /// refreshes; the others find a newer generation and reuse it.
    pub async fn invalidate_and_refresh(
        &self,
        seen_generation: u64,
    ) -> Result<(u64, Arc<AccessToken>), SalesforceError> {
        let _guard = self.refresh.lock().await;
        if let Some((generation, token)) = self.cached() {
            if generation != seen_generation {
                return Ok((generation, token));
            }
        }
        self.authenticate_locked().await
    }

    /// How many token requests succeeded so far (for metrics and tests).
    pub fn authentications(&self) -> u64 {
        self.authentications.load(Ordering::Relaxed)
    }

    /// The newest refresh token issued by a rotation, if any.
    pub fn latest_refresh_token(&self) -> Option<Secret> {
        self.rotated_refresh_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn cached(&self) -> Option<(u64, Arc<AccessToken>)> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn authenticate_locked(&self) -> Result<(u64, Arc<AccessToken>), SalesforceError> {
        let rotated = self.latest_refresh_token();
        let token = self
            .credentials
            .authenticate_with(&self.http, rotated.as_ref())
            .await?;
        if let (Credentials::RefreshToken(_), Some(new)) = (&self.credentials, &token.refresh_token)
        {
            *self
                .rotated_refresh_token
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(new.clone());
        }
        let token = Arc::new(token);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.authentications.fetch_add(1, Ordering::Relaxed);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((generation, token.clone()));
        Ok((generation, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &[u8] = include_bytes!("../tests/fixtures/test_rsa_key.pem");
    const TEST_PUB: &[u8] = include_bytes!("../tests/fixtures/test_rsa_pub.pem");

    #[test]
    fn jwt_assertion_has_expected_claims_and_verifies() {
        let jwt = JwtBearer::new(
            "3MVG9-consumer",
            "integration@acme.example",
            PrivateKey::from_pem(TEST_KEY).unwrap(),
            "https://acme.my.salesforce.com/",
        )
        .audience(LOGIN_URL);
        assert_eq!(jwt.login_url, "https://acme.my.salesforce.com");
        let now = SystemTime::now();
        let token = jwt.assertion_at(now).unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUB).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[LOGIN_URL]);
        validation.set_issuer(&["3MVG9-consumer"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(data.claims["sub"], "integration@acme.example");
        let exp = data.claims["exp"].as_u64().unwrap();
        let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // Seconds, not milliseconds, and at most 3 minutes ahead.
        assert!(exp > now_s && exp <= now_s + 180, "exp={exp} now={now_s}");
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        let err = PrivateKey::from_pem(b"not a key").unwrap_err();
        assert!(matches!(err, SalesforceError::Config(_)));
    }

    #[test]
    fn client_credentials_refuse_login_host() {
        let creds = Credentials::ClientCredentials(ClientCredentials::new(
            "id",
            "secret",
            "https://login.salesforce.com/",
        ));
        assert!(matches!(creds.validate(), Err(SalesforceError::Config(_))));
        let creds = Credentials::ClientCredentials(ClientCredentials::new(
            "id",
            "secret",
            "https://acme.my.salesforce.com",
        ));
        creds.validate().unwrap();
        assert_eq!(
            creds.token_url(),
            "https://acme.my.salesforce.com/services/oauth2/token"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let creds = Credentials::Password(Password {
            client_id: "cid".into(),
            client_secret: "topsecret".into(),
            username: "u".into(),
            password: "hunter2TOKEN".into(),
            login_url: "http://localhost".into(),
        });
        let dbg = format!("{creds:?}");
        assert!(
            !dbg.contains("topsecret") && !dbg.contains("hunter2"),
            "{dbg}"
        );
        let tok = AccessToken {
            access_token: "00Dx!AR8AQ".into(),
            instance_url: "https://na1.salesforce.com".into(),
            id: None,
            issued_at_ms: None,
            scope: None,
            refresh_token: None,
        };
        assert!(!format!("{tok:?}").contains("AR8AQ"));
    }
}
