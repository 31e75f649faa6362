//! Configuration: one TOML file plus `REVSYNC__SECTION__KEY` environment overrides.
//!
//! Secrets never sit in the parsed config as plain strings: a secret field names where the
//! secret lives (`{ env = "NAME" }` or `{ file = "PATH" }`, or, discouraged, `{ value = "…" }`)
//! and is resolved once at load into a [`secrecy::SecretString`], whose `Debug` prints nothing.
//! Every error names the key and what is wrong with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use twocheckout::signature::{Algorithm, SecretKey};

/// Prefix of environment overrides: `REVSYNC__SERVER__LISTEN=0.0.0.0:8080`.
pub const ENV_PREFIX: &str = "REVSYNC__";

/// What went wrong while loading the configuration. Always names the key; the operator fixes
/// the file or the environment and starts again.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Invalid(String),
    #[error("config key `{key}`: {problem}")]
    Key { key: String, problem: String },
}

impl ConfigError {
    fn key(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Where a secret lives. Exactly one of the three forms.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// Read from an environment variable.
    Env(String),
    /// Read from a file (trailing newline removed), e.g. a mounted Kubernetes secret.
    File(PathBuf),
    /// Inline in the config file. Works, but keeps the secret in a file you may commit.
    Value(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Value(_) => f.write_str("value:***"),
        }
    }
}

impl SecretRef {
    /// Resolves the secret. `key` names the config key for the error message.
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        let raw = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| {
                ConfigError::key(key, format!("environment variable {name} is not set"))
            })?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::key(
                        key,
                        format!("cannot read secret file {}: {e}", path.display()),
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            SecretRef::Value(v) => v.clone(),
        };
        if raw.is_empty() {
            return Err(ConfigError::key(key, "the secret is empty"));
        }
        Ok(SecretString::from(raw))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds. Loopback by default.
    pub listen: SocketAddr,
    /// Largest notification body accepted; larger ones are quarantined with a 413.
    pub max_body_bytes: usize,
    /// Time a request may take before it is answered 408 (no receipt, 2Checkout retries).
    pub request_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 10,
            shutdown_grace_secs: 30,
        }
    }
}

/// SQLite `synchronous` setting. `full` fsyncs the WAL on every commit (the default: nothing
/// acknowledged is lost on power failure).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded default) or `postgres://…`.
    pub url: String,
    pub sqlite_synchronous: SqliteSync,
    pub max_connections: u32,
    /// Most deliveries committed in one transaction by the group committer.
    pub group_commit_max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://revsync.db".into(),
            sqlite_synchronous: SqliteSync::Full,
            max_connections: 8,
            group_commit_max_batch: 512,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoCheckoutConfig {
    /// Merchant code (REST 6.0 authentication, and shown on the dashboard).
    pub merchant_code: Option<String>,
    /// The account's Secret Key: signs IPN and LCN and their read receipts.
    pub secret_key: Option<SecretRef>,
    /// The previous Secret Key, accepted during a key rotation.
    pub previous_secret_key: Option<SecretRef>,
    /// The legacy INS Secret Word (INS `md5_hash`). Without it INS deliveries are quarantined.
    pub ins_secret_word: Option<SecretRef>,
    /// Weakest signature accepted: `md5`, `sha256` or `sha3-256`.
    pub minimum_algorithm: String,
    /// REST API 6.0 base URL (backfill, reconcile); authenticated with `merchant_code` and
    /// `secret_key`.
    pub api_url: String,
}

impl Default for TwoCheckoutConfig {
    fn default() -> Self {
        TwoCheckoutConfig {
            merchant_code: None,
            secret_key: None,
            previous_secret_key: None,
            ins_secret_word: None,
            minimum_algorithm: "sha256".into(),
            api_url: "https://api.2checkout.com/rest/6.0/".into(),
        }
    }
}

/// How revsync logs in to Salesforce.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceAuth {
    /// OAuth 2.0 JWT bearer: `client_id` (consumer key), `username`, `private_key`.
    Jwt,
    /// OAuth 2.0 client credentials: `client_id`, `client_secret`.
    #[default]
    ClientCredentials,
    /// Refresh token: `client_id`, `client_secret`, `refresh_token`.
    RefreshToken,
    /// Username-password (legacy; the emulator and old orgs): `client_id`, `client_secret`,
    /// `username`, `password`.
    Password,
}

/// `[salesforce]`: the org revsync writes to. Without `instance_url` nothing is written
/// (events are still received, kept and applied to the ledger).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceConfig {
    /// The org's My Domain URL, e.g. `https://acme.my.salesforce.com`.
    pub instance_url: Option<String>,
    /// Token endpoint base for JWT (`https://login.salesforce.com`, `https://test.salesforce.com`
    /// or the My Domain URL); defaults to `instance_url`.
    pub login_url: Option<String>,
    pub auth: SalesforceAuth,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretRef>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// PEM private key of the connected app's certificate (JWT).
    pub private_key: Option<SecretRef>,
    pub refresh_token: Option<SecretRef>,
    pub api_version: String,
    pub request_timeout_secs: u64,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            instance_url: None,
            login_url: None,
            auth: SalesforceAuth::default(),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            private_key: None,
            refresh_token: None,
            api_version: "v62.0".into(),
            request_timeout_secs: 60,
        }
    }
}

/// The configuration as written by the operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub twocheckout: TwoCheckoutConfig,
    pub salesforce: SalesforceConfig,
    pub flows: crate::flows::FlowsConfig,
    pub sink: crate::sink::SinkConfig,
    pub alerts: crate::alerts::AlertsConfig,
    pub dashboard: DashboardConfig,
    pub processor: ProcessorConfig,
}

/// `[processor]`: applying verified events to the ledger in this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Off only for a receive-only process (several processes sharing PostgreSQL may split
    /// receiving and processing), or to measure ingest alone.
    pub enabled: bool,
    /// Events leased per round.
    pub batch: i64,
    /// An event whose processor died is retaken after this long.
    pub lease_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            enabled: true,
            batch: 256,
            lease_secs: 60,
        }
    }
}

/// `[dashboard]`: the operator's page at `/dashboard` and the JSON API at `/api/v1`, served
/// on `server.listen` (loopback by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    pub enabled: bool,
    /// Required from every request (`Authorization: Bearer …` or the cookie set by
    /// `/dashboard?token=…`). Without it only localhost requests are answered.
    pub token: Option<SecretRef>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            token: None,
        }
    }
}

/// Secrets and parsed values the service runs with, derived once from [`Config`].
#[derive(Clone)]
pub struct NotificationKeys {
    /// Current key first, then the previous one during a rotation.
    pub secret_keys: Vec<SecretKey>,
    pub ins_secret_word: Option<SecretKey>,
    pub minimum_algorithm: Algorithm,
}

impl std::fmt::Debug for NotificationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationKeys")
            .field("secret_keys", &self.secret_keys.len())
            .field("ins_secret_word", &self.ins_secret_word.is_some())
            .field("minimum_algorithm", &self.minimum_algorithm)
            .finish()
    }
}

impl Config {
    /// Loads the file (if it exists, or fails if `must_exist`) and applies environment overrides.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        if must_exist && !path.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist (write one with `revsync init`)",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::extract(figment)
    }

    /// Parses a TOML string (no environment), for tests and `init`'s self-check.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::extract(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    fn extract(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            // figment names the key path in its own message; keep only the first error line.
            let first = e.into_iter().next().map(|e| {
                let key = e.path.join(".");
                if key.is_empty() {
                    ConfigError::Invalid(e.kind.to_string())
                } else {
                    ConfigError::key(&key, e.kind.to_string())
                }
            });
            first.unwrap_or_else(|| ConfigError::Invalid("unreadable configuration".into()))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::key(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(ConfigError::key(
                "server.request_timeout_secs",
                "must be positive",
            ));
        }
        if self.store.group_commit_max_batch == 0 {
            return Err(ConfigError::key(
                "store.group_commit_max_batch",
                "must be positive",
            ));
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres:")
            || self.store.url.starts_with("postgresql:"))
        {
            return Err(ConfigError::key(
                "store.url",
                format!(
                    "`{}` is neither sqlite://… nor postgres://…",
                    self.store.url
                ),
            ));
        }
        self.minimum_algorithm()?;
        Ok(())
    }

    fn minimum_algorithm(&self) -> Result<Algorithm, ConfigError> {
        self.twocheckout.minimum_algorithm.parse().map_err(|_| {
            ConfigError::key(
                "twocheckout.minimum_algorithm",
                format!(
                    "`{}` is not one of md5, sha256, sha3-256",
                    self.twocheckout.minimum_algorithm
                ),
            )
        })
    }

    /// Resolves the notification secrets. Fails when the Secret Key is not configured.
    pub fn notification_keys(&self) -> Result<NotificationKeys, ConfigError> {
        let current = self.twocheckout.secret_key.as_ref().ok_or_else(|| {
            ConfigError::key(
                "twocheckout.secret_key",
                "missing: set it to { env = \"TWOCHECKOUT_SECRET_KEY\" } or { file = \"…\" }",
            )
        })?;
        let mut secret_keys = vec![to_key(current.resolve("twocheckout.secret_key")?)];
        if let Some(previous) = &self.twocheckout.previous_secret_key {
            secret_keys.push(to_key(previous.resolve("twocheckout.previous_secret_key")?));
        }
        let ins_secret_word = self
            .twocheckout
            .ins_secret_word
            .as_ref()
            .map(|s| s.resolve("twocheckout.ins_secret_word").map(to_key))
            .transpose()?;
        Ok(NotificationKeys {
            secret_keys,
            ins_secret_word,
            minimum_algorithm: self.minimum_algorithm()?,
        })
    }
}

impl Config {
    /// The Salesforce credentials, or `None` when no org is configured.
    pub fn salesforce_credentials(&self) -> Result<Option<salesforce::Credentials>, ConfigError> {
        use salesforce::auth::{
            ClientCredentials, JwtBearer, Password, PrivateKey, RefreshToken, Secret,
        };
        let sf = &self.salesforce;
        let Some(instance) = sf.instance_url.clone() else {
            return Ok(None);
        };
        let need = |key: &str, v: &Option<String>| {
            v.clone().ok_or_else(|| {
                ConfigError::key(&format!("salesforce.{key}"), "missing for this auth method")
            })
        };
        let secret = |key: &str, v: &Option<SecretRef>| -> Result<SecretString, ConfigError> {
            let full = format!("salesforce.{key}");
            v.as_ref()
                .ok_or_else(|| ConfigError::key(&full, "missing for this auth method"))?
                .resolve(&full)
        };
        let client_id = need("client_id", &sf.client_id)?;
        let credentials = match sf.auth {
            SalesforceAuth::ClientCredentials => {
                salesforce::Credentials::ClientCredentials(ClientCredentials::new(
                    client_id,
                    secret("client_secret", &sf.client_secret)?.expose_secret(),
                    instance,
                ))
            }
            SalesforceAuth::Jwt => {
                let pem = secret("private_key", &sf.private_key)?;
                let key = PrivateKey::from_pem(pem.expose_secret().as_bytes())
                    .map_err(|e| ConfigError::key("salesforce.private_key", e.to_string()))?;
                salesforce::Credentials::JwtBearer(JwtBearer::new(
                    client_id,
                    need("username", &sf.username)?,
                    key,
                    sf.login_url.clone().unwrap_or(instance),
                ))
            }
            SalesforceAuth::RefreshToken => salesforce::Credentials::RefreshToken(RefreshToken {
                client_id,
                client_secret: Some(Secret::new(
                    secret("client_secret", &sf.client_secret)?.expose_secret(),
                )),
                refresh_token: Secret::new(
                    secret("refresh_token", &sf.refresh_token)?.expose_secret(),
                ),
                login_url: sf.login_url.clone().unwrap_or(instance),
            }),
            SalesforceAuth::Password => salesforce::Credentials::Password(Password {
                client_id,
                client_secret: Secret::new(
                    secret("client_secret", &sf.client_secret)?.expose_secret(),
                ),
                username: need("username", &sf.username)?,
                password: Secret::new(secret("password", &sf.password)?.expose_secret()),
                login_url: sf.login_url.clone().unwrap_or(instance),
            }),
        };
        credentials
            .validate()
            .map_err(|e| ConfigError::key("salesforce", e.to_string()))?;
        Ok(Some(credentials))
    }
}

fn to_key(secret: SecretString) -> SecretKey {
    SecretKey::new(secret.expose_secret().as_bytes().to_vec())
}

/// The commented example written by `revsync init`.
pub const EXAMPLE: &str = r#"# revsync configuration.
# Every key can be overridden from the environment as REVSYNC__<SECTION>__<KEY>,
# e.g. REVSYNC__SERVER__LISTEN=0.0.0.0:8080.
# Secrets are never written here in clear: give { env = "NAME" } or { file = "PATH" }.

[server]
# Where 2Checkout's webhooks (POST /2checkout/ipn, /2checkout/lcn, /2checkout/ins),
# /healthz, /readyz and /metrics are served. Put a TLS-terminating proxy in front.
listen = "127.0.0.1:8080"
# Larger notification bodies are refused (413) and kept in quarantine.
max_body_bytes = 65536
# A request that takes longer is answered 408 without a receipt; 2Checkout resends it.
request_timeout_secs = 10
# On SIGTERM, in-flight requests get this long to finish.
shutdown_grace_secs = 30

[store]
# sqlite://PATH (embedded, one process) or postgres://USER@HOST/DB (several processes).
url = "sqlite://revsync.db"
# SQLite only: full = fsync on every commit (nothing acknowledged is lost), normal, off.
sqlite_synchronous = "full"
max_connections = 8
# Deliveries that arrive together are committed in one transaction (group commit).
group_commit_max_batch = 512

[twocheckout]
# merchant_code = "YOURCODE123"
# Control Panel -> Integrations -> Webhooks & API -> Secret Key.
secret_key = { env = "TWOCHECKOUT_SECRET_KEY" }
# During a key rotation, the old key is still accepted:
# previous_secret_key = { file = "/run/secrets/2co-previous-key" }
# Legacy INS notifications are signed with the Secret Word instead:
# ins_secret_word = { env = "TWOCHECKOUT_INS_SECRET_WORD" }
# Weakest signature accepted: md5, sha256 or sha3-256.
minimum_algorithm = "sha256"
# REST 6.0 (backfill, reconcile) needs the merchant code above and this key.

[salesforce]
# The org's My Domain URL. Without it nothing is written to Salesforce (events are still
# received, kept and applied to the ledger).
# instance_url = "https://acme.my.salesforce.com"
# jwt (recommended: client_id + username + private_key), client_credentials
# (client_id + client_secret) or refresh_token.
auth = "client_credentials"
# client_id = "3MVG9…"
# client_secret = { env = "SALESFORCE_CLIENT_SECRET" }
# username = "revsync@acme.com"
# private_key = { file = "/run/secrets/revsync-jwt.key" }
api_version = "v62.0"
request_timeout_secs = 60

[flows]
# Multi-currency org (CurrencyIsoCode on Opportunity) or single-currency (converted amount,
# original in Original_Currency__c / Original_Amount__c).
multi_currency = false
base_currency = "USD"
# Rates to the base currency when 2Checkout's own FX fields cannot be used:
# [flows.fx.rates]
# EUR = "1.0850"
# Field mappings: minijinja templates over the event, checked at start-up, e.g.
# [flows.mapping.Opportunity]
# Description = "{{ order.product_names }}"

[sink]
# Longest an intent waits for company before a request goes out.
linger_ms = 1000

[sink.budget]
# Share of the org's daily API allocation revsync may use, and an absolute ceiling.
share = 0.1
# ceiling = 5000

[dashboard]
enabled = true
# Required off localhost: Authorization: Bearer … or /dashboard?token=… once.
# token = { env = "REVSYNC_DASHBOARD_TOKEN" }

[alerts]
# Chat-compatible webhook ({"text": "…"}): dead letters, budget, Salesforce down, silence.
# webhook_url = "https://hooks.slack.com/services/…"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_the_defaults() {
        let parsed = Config::from_toml(EXAMPLE).unwrap();
        let defaults = Config::default();
        assert_eq!(parsed.server.listen, defaults.server.listen);
        assert_eq!(parsed.store.url, defaults.store.url);
        assert_eq!(parsed.sink, defaults.sink);
        assert_eq!(parsed.flows, defaults.flows);
        assert_eq!(
            parsed.salesforce.api_version,
            defaults.salesforce.api_version
        );
        assert_eq!(
            parsed.twocheckout.secret_key,
            Some(SecretRef::Env("TWOCHECKOUT_SECRET_KEY".into()))
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[server]\nlisten_on = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_on"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::from_toml("[server]\nlisten = \"not an address\"\n").unwrap_err();
        assert!(err.to_string().contains("server.listen"), "{err}");
    }

    #[test]
    fn bad_algorithm_and_store_url_are_named() {
        let err = Config::from_toml("[twocheckout]\nminimum_algorithm = \"sha1\"\n").unwrap_err();
        assert!(
            err.to_string().contains("twocheckout.minimum_algorithm"),
            "{err}"
        );
        let err = Config::from_toml("[store]\nurl = \"mysql://x\"\n").unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
    }

    #[test]
    fn missing_secret_is_named_and_secret_values_never_print() {
        let config = Config::from_toml("").unwrap();
        let err = config.notification_keys().unwrap_err();
        assert!(err.to_string().contains("twocheckout.secret_key"), "{err}");

        let config =
            Config::from_toml("[twocheckout]\nsecret_key = { value = \"hunter2-secret\" }\n")
                .unwrap();
        let debug = format!("{config:?} {:?}", config.notification_keys().unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn secret_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "file-key\n").unwrap();
        let s = SecretRef::File(path).resolve("k").unwrap();
        assert_eq!(s.expose_secret(), "file-key");

        let err = SecretRef::Env("REVSYNC_TEST_SURELY_UNSET_VAR".into())
            .resolve("twocheckout.secret_key")
            .unwrap_err();
        assert!(err.to_string().contains("REVSYNC_TEST_SURELY_UNSET_VAR"));
        let err = SecretRef::File("/nonexistent/key".into())
            .resolve("a.b")
            .unwrap_err();
        assert!(err.to_string().starts_with("config key `a.b`"), "{err}");
    }
}
