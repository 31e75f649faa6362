//! Delivery like 2Checkout: POST the signed form, check the read receipt, resend on
//! the failure-recovery schedule (compressed), stop by itself.
//!
//! Per attempt the sender stamps the body and signs it:
//! - IPN: `MESSAGE_ID` = the delivery's id + attempt number (a new id per resend) and
//!   `IPN_DATE` = event time + the attempt's (uncompressed) schedule offset, so the
//!   simulated timeline is the one 2Checkout would produce. Then `HASH` /
//!   `SIGNATURE_SHA2_256` / `SIGNATURE_SHA3_256` for the configured algorithms.
//!   (Reference §6: resent IPNs carry new `MESSAGE_ID`/`IPN_DATE`; whether automatic
//!   retries do is UNCONFIRMED — this emulator assumes they do, the harder case.)
//! - LCN: re-signed, otherwise unchanged.
//! - INS: `md5_hash` with the Secret Word; accepted on any HTTP 200.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use twocheckout::receipt::RECEIPT_DATE_FORMAT;
use twocheckout::{check_receipt, sign, sign_ins, Algorithm, FormBody, Kind, SecretKey};

use crate::generator::{Delivery, ScenarioKind};
use crate::schedule::RetrySchedule;

/// Where each kind is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// IPN URL.
    pub ipn: String,
    /// LCN URL.
    pub lcn: String,
    /// INS URL.
    pub ins: String,
}

impl Endpoints {
    /// The same URL for every kind.
    pub fn single(url: &str) -> Endpoints {
        Endpoints {
            ipn: url.to_owned(),
            lcn: url.to_owned(),
            ins: url.to_owned(),
        }
    }

    fn for_kind(&self, kind: Kind) -> &str {
        match kind {
            Kind::Ipn => &self.ipn,
            Kind::Lcn => &self.lcn,
            Kind::Ins => &self.ins,
        }
    }
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Target URLs.
    pub endpoints: Endpoints,
    /// Account Secret Key (IPN/LCN signatures and receipts).
    pub secret_key: SecretKey,
    /// Legacy INS Secret Word.
    pub secret_word: SecretKey,
    /// Signatures to add (2Checkout currently sends all three).
    pub algorithms: Vec<Algorithm>,
    /// Retry schedule.
    pub schedule: RetrySchedule,
    /// Divide every schedule wait by this (3600 → an hour becomes a second).
    pub time_compression: f64,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Maximum requests in flight.
    pub max_in_flight: usize,
}

impl SenderConfig {
    /// 2Checkout's behaviour: all three signatures, full schedule, no compression.
    pub fn new(endpoints: Endpoints, secret_key: SecretKey) -> SenderConfig {
        SenderConfig {
            endpoints,
            secret_word: secret_key.clone(),
            secret_key,
            algorithms: Algorithm::ALL.to_vec(),
            schedule: RetrySchedule::twocheckout(),
            time_compression: 1.0,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 32,
        }
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptResult {
    /// HTTP 200 with a valid read receipt of this algorithm.
    Accepted {
        /// Receipt algorithm.
        algorithm: String,
    },
    /// HTTP 200 (INS, which has no receipt).
    AcceptedWithoutReceipt,
    /// HTTP 200 but the receipt is missing or invalid.
    BadReceipt {
        /// Why.
        reason: String,
    },
    /// A non-200 status.
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// Connection, timeout or body read error.
    Transport {
        /// The error.
        error: String,
    },
}

impl AttemptResult {
    fn accepted(&self) -> bool {
        matches!(
            self,
            AttemptResult::Accepted { .. } | AttemptResult::AcceptedWithoutReceipt
        )
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: usize,
    /// `MESSAGE_ID` sent (IPN).
    pub message_id: Option<String>,
    /// `IPN_DATE` sent (IPN).
    pub ipn_date: Option<String>,
    /// The outcome.
    #[serde(flatten)]
    pub result: AttemptResult,
}

/// Final state of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged.
    Delivered,
    /// Schedule exhausted without acknowledgement.
    GaveUp,
}

/// Everything about one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// Kind.
    pub kind: String,
    /// Scenario.
    pub scenario: ScenarioKind,
    /// Scenario sequence number.
    pub scenario_index: usize,
    /// Reference (`REFNO`, `LICENSE_CODE`, `sale_id`).
    pub reference: String,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Final outcome.
    pub outcome: Outcome,
    /// True when the accepted attempt carried a valid read receipt (IPN/LCN).
    pub receipt_valid: bool,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Deliveries.
    pub deliveries: usize,
    /// Acknowledged.
    pub delivered: usize,
    /// Given up.
    pub gave_up: usize,
    /// Requests sent.
    pub attempts: usize,
    /// Deliveries that needed more than one attempt.
    pub retried: usize,
}

impl RunSummary {
    /// Summarise reports.
    pub fn of(reports: &[DeliveryReport]) -> RunSummary {
        RunSummary {
            deliveries: reports.len(),
            delivered: reports
                .iter()
                .filter(|r| r.outcome == Outcome::Delivered)
                .count(),
            gave_up: reports
                .iter()
                .filter(|r| r.outcome == Outcome::GaveUp)
                .count(),
            attempts: reports.iter().map(|r| r.attempts.len()).sum(),
            retried: reports.iter().filter(|r| r.attempts.len() > 1).count(),
        }
    }
}

/// Posts deliveries like 2Checkout.
#[derive(Debug, Clone)]
pub struct Sender {
    cfg: Arc<SenderConfig>,
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
}

/// Could not build the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct SenderError(#[from] reqwest::Error);

impl Sender {
    /// A sender with its own HTTP client.
    pub fn new(cfg: SenderConfig) -> Result<Sender, SenderError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .user_agent("tco-emulator (2Checkout notification emulator)")
            .build()?;
        Ok(Sender {
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            cfg: Arc::new(cfg),
            client,
        })
    }

    /// The body of attempt `number` (0-based), stamped and signed.
    pub fn prepare(&self, delivery: &Delivery, attempt: usize) -> FormBody {
        let mut form = delivery.form.clone();
        match delivery.kind {
            Kind::Ipn => {
                let offset = self
                    .cfg
                    .schedule
                    .offsets()
                    .get(attempt)
                    .copied()
                    .unwrap_or_default();
                if let Some(id) = delivery.message_id {
                    form.push_scalar("MESSAGE_ID", &(id + attempt as u64).to_string());
                }
                let at = delivery.event_time
                    + chrono::Duration::from_std(offset)
                        .unwrap_or_else(|_| chrono::Duration::zero());
                form.push_scalar("IPN_DATE", &at.format(RECEIPT_DATE_FORMAT).to_string());
                sign(&mut form, &self.cfg.secret_key, &self.cfg.algorithms);
            }
            Kind::Lcn => sign(&mut form, &self.cfg.secret_key, &self.cfg.algorithms),
            Kind::Ins => sign_ins(&mut form, &self.cfg.secret_word),
        }
        form
    }

    async fn post(&self, kind: Kind, form: &FormBody) -> AttemptResult {
        let _permit = self.in_flight.acquire().await;
        let response = self
            .client
            .post(self.cfg.endpoints.for_kind(kind))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form.to_urlencoded())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return AttemptResult::Transport {
                    error: e.to_string(),
                }
            }
        };
        let status = response.status().as_u16();
        let body = match response.text().await {
            Ok(b) => b,
            Err(e) => {
                return AttemptResult::Transport {
                    error: e.to_string(),
                }
            }
        };
        if status != 200 {
            return AttemptResult::HttpStatus { status };
        }
        if kind == Kind::Ins {
            return AttemptResult::AcceptedWithoutReceipt;
        }
        match check_receipt(kind, &body, form, &self.cfg.secret_key) {
            Ok(algorithm) => AttemptResult::Accepted {
                algorithm: algorithm.to_string(),
            },
            Err(e) => AttemptResult::BadReceipt {
                reason: e.to_string(),
            },
        }
    }

    /// Deliver one notification, retrying on the schedule until acknowledged or the
    /// schedule is exhausted.
    pub async fn deliver(&self, delivery: &Delivery) -> DeliveryReport {
        let mut attempts = Vec::new();
        let mut previous = Duration::ZERO;
        let mut outcome = Outcome::GaveUp;
        let mut receipt_valid = false;
        for (i, offset) in self.cfg.schedule.offsets().iter().enumerate() {
            if i > 0 {
                let wait = offset.saturating_sub(previous);
                tokio::time::sleep(self.compressed(wait)).await;
            }
            previous = *offset;
            let form = self.prepare(delivery, i);
            let result = self.post(delivery.kind, &form).await;
            let accepted = result.accepted();
            tracing::debug!(
                kind = %delivery.kind,
                reference = %delivery.reference,
                attempt = i + 1,
                accepted,
                result = ?result,
                "notification attempt"
            );
            receipt_valid = matches!(result, AttemptResult::Accepted { .. });
            attempts.push(Attempt {
                number: i + 1,
                message_id: form
                    .get("MESSAGE_ID")
                    .map(str::to_owned)
                    .filter(|_| delivery.kind == Kind::Ipn),
                ipn_date: form
                    .get("IPN_DATE")
                    .map(str::to_owned)
                    .filter(|_| delivery.kind == Kind::Ipn),
                result,
            });
            if accepted {
                outcome = Outcome::Delivered;
                break;
            }
        }
        if outcome == Outcome::GaveUp {
            tracing::warn!(
                kind = %delivery.kind,
                reference = %delivery.reference,
                attempts = attempts.len(),
                "notification given up after the retry schedule"
            );
        }
        DeliveryReport {
            kind: delivery.kind.to_string(),
            scenario: delivery.scenario,
            scenario_index: delivery.scenario_index,
            reference: delivery.reference.clone(),
            attempts,
            outcome,
            receipt_valid,
        }
    }

    fn compressed(&self, d: Duration) -> Duration {
        let factor = if self.cfg.time_compression.is_finite() && self.cfg.time_compression > 0.0 {
            self.cfg.time_compression
        } else {
            1.0
        };
        d.div_f64(factor)
    }

    /// Deliver many notifications concurrently. With `rate` (deliveries per second) the
    /// first attempts are spaced `1/rate` apart in order; without it they all start at
    /// once. Reports come back in input order.
    pub async fn run(&self, deliveries: Vec<Delivery>, rate: Option<f64>) -> Vec<DeliveryReport> {
        let spacing = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        let mut handles = Vec::with_capacity(deliveries.len());
        for (i, d) in deliveries.into_iter().enumerate() {
            let sender = self.clone();
            let start = spacing.map(|s| s * i as u32).unwrap_or_default();
            handles.push(tokio::spawn(async move {
                tokio::time::sleep(start).await;
                sender.deliver(&d).await
            }));
        }
        let mut reports = Vec::with_capacity(handles.len());
        for h in handles {
            match h.await {
                Ok(r) => reports.push(r),
                Err(e) => tracing::error!(error = %e, "delivery task failed"),
            }
        }
        reports
    }
}
