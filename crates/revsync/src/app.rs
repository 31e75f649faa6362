//! Assembles a running revsync: store, group committer, HTTP server. `serve`, `demo`, the
//! benchmarks and the tests all start it through [`App::start`], so they run the same thing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::flows::Flows;
use crate::ingest::GroupCommitter;
use crate::pipeline::LedgerHandler;
use crate::processor::Processor;
use crate::server::{self, AppState};
use crate::sink::Sink;
use crate::store::{self, EventLog, OpenOptions, Store, StoreError};

/// Why revsync could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("flow mapping: {0}")]
    Mapping(#[from] crate::flows::MappingError),
    #[error("salesforce client: {0}")]
    Salesforce(#[from] salesforce::SalesforceError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running revsync instance.
pub struct App {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    /// The Salesforce client, when an org is configured.
    pub salesforce: Option<salesforce::Client>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    writer: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

impl App {
    /// Opens the configured store and starts serving on `listener`.
    pub async fn start(
        config: &Config,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<App, StartError> {
        let store = store::open(&config.store.url, &open_options(config)).await?;
        let store: Arc<dyn Store> = Arc::new(store);
        Self::start_with_store(config, store.clone(), store, listener, shutdown).await
    }

    /// Starts serving with an already opened store. `event_log` is where ingest appends;
    /// normally the store itself (tests put a failing wrapper there).
    pub async fn start_with_store(
        config: &Config,
        store: Arc<dyn Store>,
        event_log: Arc<dyn EventLog>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<App, StartError> {
        let keys = Arc::new(config.notification_keys()?);
        // Install the metrics recorder before anything records.
        crate::telemetry::prometheus();
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.server.listen,
            source,
        })?;
        let (committer, writer) =
            GroupCommitter::spawn(event_log.clone(), config.store.group_commit_max_batch);
        let state = AppState {
            store: event_log,
            keys,
            committer,
            max_body_bytes: config.server.max_body_bytes,
        };
        let mut router = server::router(
            state,
            Duration::from_secs(config.server.request_timeout_secs),
        );
        if config.dashboard.enabled {
            let token = config
                .dashboard
                .token
                .as_ref()
                .map(|t| t.resolve("dashboard.token"))
                .transpose()?;
            let dashboard = crate::dashboard::DashboardState::new(
                store.clone(),
                token,
                config.salesforce.instance_url.clone(),
            )
            .map_err(|e| ConfigError::Key {
                key: "dashboard".into(),
                problem: e.to_string(),
            })?;
            router = router.merge(crate::dashboard::router(dashboard));
        }
        // Processing: verified events → ledger → record intents, in this process.
        let flows = Arc::new(Flows::new(&config.flows)?);
        let mut workers = Vec::new();
        if config.processor.enabled {
            let processor = Processor {
                store: store.clone(),
                handler: Arc::new(LedgerHandler::new(store.clone(), flows)),
                owner: format!("processor-{}-{}", std::process::id(), addr.port()),
                lease: Duration::from_secs(config.processor.lease_secs),
                batch: config.processor.batch,
                idle: Duration::from_millis(20),
            };
            workers.push(tokio::spawn(processor.run(shutdown.clone())));
            // Scheduled jobs (rollups, renewal due), leased so one process runs each.
            let scheduler = crate::scheduler::Scheduler::new(
                store.clone(),
                &config.flows,
                &format!("scheduler-{}-{}", std::process::id(), addr.port()),
            )
            .map_err(|e| ConfigError::Key {
                key: "flows".into(),
                problem: e.to_string(),
            })?;
            workers.push(tokio::spawn(scheduler.run(shutdown.clone())));
        }

        // Writing: the outbox → Salesforce, when an org is configured.
        let salesforce = match config.salesforce_credentials()? {
            Some(credentials) => {
                let client = salesforce::Client::builder(credentials)
                    .api_version(config.salesforce.api_version.clone())
                    .request_timeout(Duration::from_secs(config.salesforce.request_timeout_secs))
                    .build()?;
                let sink = Sink::new(
                    store.clone(),
                    client.clone(),
                    config.sink.clone(),
                    format!("sink-{}-{}", std::process::id(), addr.port()),
                );
                workers.push(tokio::spawn(sink.run(shutdown.clone())));
                Some(client)
            }
            None => {
                tracing::warn!("no [salesforce] instance_url configured: events are kept and applied to the ledger, nothing is written to Salesforce");
                None
            }
        };

        // Alerts to the configured webhook (off without `[alerts] webhook_url`).
        if let Some(alerter) = crate::alerts::Alerter::new(&config.alerts, store.clone()) {
            workers.push(tokio::spawn(alerter.run(shutdown.clone())));
        }
        let server = tokio::spawn(server::serve(listener, router, shutdown.clone()));
        tracing::info!(%addr, backend = ?store.backend(), "revsync listening");
        Ok(App {
            addr,
            store,
            salesforce,
            shutdown,
            server,
            writer,
            workers,
        })
    }

    /// Binds the configured address.
    pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
        TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.server.listen,
                source,
            })
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the server to stop (same as cancelling the token passed to `start`).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server has stopped and every accepted delivery is committed.
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self
            .server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        // The server held the last committer handles; the writer drains and exits.
        let _ = self.writer.await;
        for worker in self.workers {
            let _ = worker.await;
        }
        served
    }
}

/// Store options from the configuration.
pub fn open_options(config: &Config) -> OpenOptions {
    OpenOptions {
        sqlite_synchronous: config.store.sqlite_synchronous,
        max_connections: config.store.max_connections,
        ..OpenOptions::default()
    }
}
