//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod store;

use std::sync::Arc;

use revsync::app::App;
use revsync::config::{Config, SecretRef};
use revsync::store::{EventLog, Store};
use tokio_util::sync::CancellationToken;
use twocheckout::signature::SecretKey;

/// The Secret Key every test app is configured with.
pub const SECRET: &str = "test-secret-key-Ω";
/// The INS Secret Word every test app is configured with.
pub const SECRET_WORD: &str = "tango";

/// A revsync instance on port 0 with a fresh store, as a test sees it.
pub struct TestApp {
    pub app: App,
    pub url: String,
    pub store: Arc<dyn Store>,
    pub key: SecretKey,
    pub http: reqwest::Client,
    _store: Option<store::TestStore>,
}

/// The configuration test apps run with (keys inline; every algorithm accepted).
pub fn test_config(store_url: &str) -> Config {
    let mut config = Config::default();
    config.store.url = store_url.to_owned();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.max_body_bytes = 16 * 1024;
    config.twocheckout.secret_key = Some(SecretRef::Value(SECRET.into()));
    config.twocheckout.ins_secret_word = Some(SecretRef::Value(SECRET_WORD.into()));
    config.twocheckout.minimum_algorithm = "md5".into();
    config
}

/// Starts revsync on a fresh SQLite store.
pub async fn spawn_app() -> TestApp {
    let s = store::sqlite().await;
    let config = test_config(&s.url);
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    spawn_app_with(config, store.clone(), store, Some(s)).await
}

/// Starts revsync with a given config and store (e.g. one that fails on purpose).
pub async fn spawn_app_with(
    config: Config,
    store: Arc<dyn Store>,
    event_log: Arc<dyn EventLog>,
    keep: Option<store::TestStore>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::start_with_store(
        &config,
        store.clone(),
        event_log,
        listener,
        CancellationToken::new(),
    )
    .await
    .expect("app starts");
    TestApp {
        url: app.url(),
        app,
        store,
        key: SecretKey::new(SECRET.as_bytes().to_vec()),
        http: reqwest::Client::new(),
        _store: keep,
    }
}

impl TestApp {
    /// Posts a form body to `/2checkout/{kind}`.
    pub async fn post(&self, kind: &str, body: impl Into<Vec<u8>>) -> (u16, String) {
        self.post_as(kind, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_as(
        &self,
        kind: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/2checkout/{kind}", self.url))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

use twocheckout::form::FormBody;
use twocheckout::signature::{self, Algorithm};

/// A realistic completed-order IPN (fields in 2Checkout's order), unsigned.
pub fn ipn_form(refno: &str, message_id: &str, ipn_date: &str) -> FormBody {
    let mut f = FormBody::new();
    f.push_scalar("GIFT_ORDER", "0");
    f.push_scalar("SALEDATE", "2026-11-30 10:01:02");
    f.push_scalar("PAYMENTDATE", "2026-11-30 10:01:40");
    f.push_scalar("REFNO", refno);
    f.push_scalar("REFNOEXT", "");
    f.push_scalar("ORDERNO", "4411");
    f.push_scalar("ORDERSTATUS", "COMPLETE");
    f.push_scalar("PAYMETHOD", "Visa/MasterCard");
    f.push_scalar("PAYMETHOD_CODE", "CCVISAMC");
    f.push_scalar("FIRSTNAME", "Álvaro");
    f.push_scalar("LASTNAME", "Coutinho");
    f.push_scalar("COMPANY", "Acme Ltda.");
    f.push_scalar("ADDRESS1", "R. Álvaro Coutinho 14");
    f.push_scalar("CITY", "São Paulo");
    f.push_scalar("COUNTRY", "Brazil");
    f.push_scalar("COUNTRY_CODE", "br");
    f.push_scalar("CUSTOMEREMAIL", "alvaro@acme.example");
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", "77001");
    f.push_scalar("EXTERNAL_CUSTOMER_REFERENCE", "");
    f.push_array("IPN_PID", &["40898000"]);
    f.push_array("IPN_PNAME", &["Software program"]);
    f.push_array("IPN_PCODE", &["SW-PRO"]);
    f.push_array("IPN_QTY", &["1"]);
    f.push_array("IPN_PRICE", &["100.00"]);
    f.push_array("IPN_VAT", &["19.00"]);
    f.push_array("IPN_TOTAL", &["119.00"]);
    f.push_array("IPN_LICENSE_TYPE", &["REGULAR"]);
    f.push_array("IPN_LICENSE_REF", &["XRILXB9ZI3"]);
    f.push_scalar("CURRENCY", "USD");
    f.push_scalar("IPN_TOTALGENERAL", "119.00");
    f.push_scalar("MESSAGE_ID", message_id);
    f.push_scalar("MESSAGE_TYPE", "COMPLETE");
    f.push_scalar("FRAUD_STATUS", "APPROVED");
    f.push_scalar("CHARGEBACK_RESOLUTION", "NONE");
    f.push_scalar("IPN_DATE", ipn_date);
    f
}

/// The same, signed with every algorithm under [`SECRET`].
pub fn signed_ipn(refno: &str, message_id: &str, ipn_date: &str) -> FormBody {
    let mut f = ipn_form(refno, message_id, ipn_date);
    signature::sign(
        &mut f,
        &SecretKey::new(SECRET.as_bytes().to_vec()),
        &[Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha3_256],
    );
    f
}

/// A revsync instance wired to a Salesforce emulator, as the end-to-end tests see it.
pub struct E2e {
    pub t: TestApp,
    pub emu: sf_emulator::Emulator,
}

/// Starts the Salesforce emulator and revsync writing to it (sink linger 50 ms).
pub async fn spawn_e2e(
    emu_config: sf_emulator::EmulatorConfig,
    flows: revsync::flows::FlowsConfig,
) -> E2e {
    spawn_e2e_with(emu_config, |config| config.flows = flows).await
}

/// The same, with any configuration change applied last.
pub async fn spawn_e2e_with(
    emu_config: sf_emulator::EmulatorConfig,
    tweak: impl FnOnce(&mut Config),
) -> E2e {
    revsync::telemetry::init_logging(revsync::telemetry::LogFormat::Text, "warn");
    let emu = sf_emulator::spawn(emu_config.clone()).await.unwrap();
    let s = store::sqlite().await;
    let mut config = test_config(&s.url);
    config.salesforce.instance_url = Some(emu.url());
    config.salesforce.client_id = Some(emu_config.client_id.clone());
    config.salesforce.client_secret = Some(SecretRef::Value(emu_config.client_secret.clone()));
    config.sink.linger_ms = 50;
    config.sink.backoff_base_ms = 10;
    config.sink.backoff_cap_secs = 1;
    tweak(&mut config);
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let t = spawn_app_with(config, store.clone(), store, Some(s)).await;
    E2e { t, emu }
}

impl E2e {
    /// Waits until every event is processed and the outbox is empty (or panics after 30 s).
    pub async fn settled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = self.t.store.counts().await.unwrap();
            let outbox = self.t.store.outbox_stats().await.unwrap();
            if log.pending == 0 && outbox.pending == 0 && outbox.in_flight == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not settled: {log:?} {outbox:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Posts generated deliveries as 2Checkout would (each signed, receipt checked).
    pub async fn send(&self, deliveries: &[tco_emulator::Delivery]) {
        let endpoints = tco_emulator::sender::Endpoints {
            ipn: format!("{}/2checkout/ipn", self.t.url),
            lcn: format!("{}/2checkout/lcn", self.t.url),
            ins: format!("{}/2checkout/ins", self.t.url),
        };
        let mut cfg = tco_emulator::sender::SenderConfig::new(endpoints, self.t.key.clone());
        cfg.secret_word = SecretKey::new(SECRET_WORD.as_bytes().to_vec());
        cfg.schedule = tco_emulator::RetrySchedule::twocheckout().truncated(1);
        let sender = tco_emulator::Sender::new(cfg).unwrap();
        for d in deliveries {
            let report = sender.deliver(d).await;
            assert_eq!(
                report.outcome,
                tco_emulator::sender::Outcome::Delivered,
                "{report:?}"
            );
        }
    }
}
