//! `sf-emulator` binary: serves the Salesforce API emulator over HTTP or HTTPS.

use clap::Parser;
use sf_emulator::{EmulatorConfig, OrgDefinition, TlsConfig};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// A faithful Salesforce API emulator (REST, SOQL, composite, graph, collections, Bulk 2.0, OAuth).
#[derive(Debug, Parser)]
#[command(name = "sf-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", env = "SF_EMULATOR_LISTEN")]
    listen: String,
    /// Org definition (custom fields/objects), TOML or JSON (.json). Default: revsync's custom fields.
    #[arg(long)]
    org: Option<PathBuf>,
    /// JSON snapshot file: loaded at start, written after changes and at shutdown.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Serve HTTPS (certificate generated at start unless --tls-cert/--tls-key are given).
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain for --tls.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Integration user name (username-password, SOAP login, JWT `sub`).
    #[arg(
        long,
        default_value = "integration@revsync.example",
        env = "SF_EMULATOR_USERNAME"
    )]
    username: String,
    /// Password of the integration user.
    #[arg(
        long,
        default_value = "emulator-password",
        env = "SF_EMULATOR_PASSWORD"
    )]
    password: String,
    /// Connected app consumer key (also the expected JWT `iss`).
    #[arg(
        long,
        default_value = "revsync-emulator-client",
        env = "SF_EMULATOR_CLIENT_ID"
    )]
    client_id: String,
    /// Connected app consumer secret.
    #[arg(
        long,
        default_value = "emulator-secret",
        env = "SF_EMULATOR_CLIENT_SECRET"
    )]
    client_secret: String,
    /// PEM public key verifying JWT bearer assertions.
    #[arg(long)]
    jwt_public_key: Option<PathBuf>,
    /// Enable multi-currency (CurrencyIsoCode fields, CurrencyType).
    #[arg(long)]
    multi_currency: bool,
    /// Active currencies besides the corporate one (comma separated).
    #[arg(long, default_value = "EUR,GBP", value_delimiter = ',')]
    currencies: Vec<String>,
    /// Corporate currency.
    #[arg(long, default_value = "USD")]
    corporate_currency: String,
    /// Daily API request allocation.
    #[arg(long, default_value_t = 100_000)]
    daily_api_limit: u64,
    /// Query page size (200–2000).
    #[arg(long, default_value_t = 2000)]
    query_page_size: usize,
    /// Instance URL handed out by the token endpoints (default: scheme + Host header).
    #[arg(long)]
    public_url: Option<String>,
}

fn read(path: &PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let org = match &args.org {
        Some(p) => OrgDefinition::load(p)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?,
        None => OrgDefinition::default(),
    };
    let config = EmulatorConfig {
        org,
        multi_currency: args.multi_currency,
        active_currencies: args.currencies.clone(),
        corporate_currency: args.corporate_currency.clone(),
        daily_api_limit: args.daily_api_limit,
        query_page_size: args.query_page_size.clamp(1, 2000),
        username: args.username.clone(),
        password: args.password.clone(),
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        jwt_public_key_pem: args.jwt_public_key.as_ref().map(read).transpose()?,
        state_file: args.state.clone(),
        public_url: args.public_url.clone(),
        ..EmulatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        c2.cancel();
    });
    if args.tls {
        let tls = TlsConfig {
            cert_pem: args.tls_cert.as_ref().map(read).transpose()?,
            key_pem: args.tls_key.as_ref().map(read).transpose()?,
            hostnames: Vec::new(),
        };
        tracing::info!(%addr, "sf-emulator listening (HTTPS); token endpoint https://{addr}/services/oauth2/token");
        sf_emulator::serve_tls(listener, config, tls, cancel).await
    } else {
        tracing::info!(%addr, "sf-emulator listening (HTTP); token endpoint http://{addr}/services/oauth2/token");
        sf_emulator::serve(listener, config, cancel).await
    }
}
