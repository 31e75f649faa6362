//! Alerts: chat-compatible webhook messages (`{"text": "…"}`) when something needs an
//! operator — new dead letters, the API budget over a threshold, Salesforce unreachable, no
//! IPN for a while, the quarantine growing.
//!
//! Each alert is a *condition*: it fires once when the condition starts (a burst of fifty dead
//! letters is one message) and sends one "resolved" message when it clears. [`evaluate`] is
//! pure: it takes what the store shows now ([`Observation`]) and what was true before
//! ([`AlertState`]) and returns the new state and the changes to announce. [`Alerter`] is the
//! I/O loop around it: read the store every `interval_secs`, evaluate, POST.
//!
//! Signals, all read from the store (no extra Salesforce call):
//! - dead letters: open dead letters > 0 (resolved when all are replayed);
//! - budget: the org's API usage as Salesforce last reported it, in percent of its daily
//!   allocation, at or above `budget_percent`;
//! - Salesforce unreachable: work is waiting in the outbox and Salesforce has not answered
//!   (no usage report) for `salesforce_down_minutes`;
//! - silence: the number of deliveries has not changed for `silence_minutes`;
//! - quarantine growing: at least `quarantine_growth` more held entries than when the
//!   condition was last clear (resolved when the operator has admitted or discarded them).
//!
//! What this module must not know: SQL (it calls the store), Salesforce's API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::store::{Micros, Store, StoreError};

/// `[alerts]`: where to post and when. No `webhook_url`: alerts are off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Webhook receiving `{"text": "…"}` (Slack, Mattermost, Google Chat, Teams workflows…).
    pub webhook_url: Option<String>,
    /// How often conditions are evaluated.
    pub interval_secs: u64,
    /// Alert when the org's API usage is at or above this percent of its daily allocation.
    pub budget_percent: f64,
    /// Alert when Salesforce has been unreachable for this many minutes.
    pub salesforce_down_minutes: u64,
    /// Alert when no IPN arrived for this many minutes (0: off).
    pub silence_minutes: u64,
    /// Alert when the quarantine holds at least this many more entries than when it was
    /// last clear.
    pub quarantine_growth: i64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            interval_secs: 5,
            budget_percent: 80.0,
            salesforce_down_minutes: 5,
            silence_minutes: 60,
            quarantine_growth: 1,
        }
    }
}

/// The alert conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DeadLetters,
    Budget,
    SalesforceUnreachable,
    Silence,
    QuarantineGrowing,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::DeadLetters,
        AlertKind::Budget,
        AlertKind::SalesforceUnreachable,
        AlertKind::Silence,
        AlertKind::QuarantineGrowing,
    ];
}

/// What the store shows at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub now: Micros,
    pub dead_letters_open: i64,
    /// Org usage and allocation as Salesforce last reported them.
    pub org_used: Option<i64>,
    pub org_max: Option<i64>,
    /// When Salesforce last answered (its last usage report).
    pub salesforce_seen_at: Option<Micros>,
    /// Intents waiting (pending or in flight).
    pub outbox_waiting: i64,
    pub deliveries: i64,
    pub quarantine_held: i64,
}

/// What the evaluator remembers between rounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertState {
    /// Active conditions and when each started.
    pub active: BTreeMap<AlertKind, Micros>,
    /// Delivery count last seen and since when it has not changed.
    pub deliveries: Option<(i64, Micros)>,
    /// When work started waiting with no answer from Salesforce.
    pub waiting_since: Option<Micros>,
    /// Held quarantine entries when the condition was last clear.
    pub quarantine_baseline: Option<i64>,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertChange {
    pub kind: AlertKind,
    /// True when the condition started, false when it cleared.
    pub firing: bool,
    pub text: String,
}

const MINUTE_US: i64 = 60_000_000;

fn minutes(us: i64) -> i64 {
    us / MINUTE_US
}

/// Evaluates every condition (pure). Returns the new state and the changes to announce:
/// a condition that stays true or stays false announces nothing.
pub fn evaluate(
    cfg: &AlertsConfig,
    obs: &Observation,
    previous: &AlertState,
) -> (AlertState, Vec<AlertChange>) {
    let mut next = previous.clone();
    let now = obs.now;

    // Silence: track when the delivery count last changed.
    next.deliveries = match previous.deliveries {
        Some((n, since)) if n == obs.deliveries => Some((n, since)),
        _ => Some((obs.deliveries, now)),
    };
    let quiet_for = next.deliveries.map_or(0, |(_, since)| now.0 - since.0);

    // Salesforce: work waiting, and no answer since the later of "work started waiting" and
    // "Salesforce last answered".
    next.waiting_since = if obs.outbox_waiting == 0 {
        None
    } else {
        Some(previous.waiting_since.unwrap_or(now))
    };
    let unanswered_for = next.waiting_since.map_or(0, |w| {
        let last = obs.salesforce_seen_at.map_or(w, |s| s.max(w));
        now.0 - last.0
    });

    let baseline = previous.quarantine_baseline.unwrap_or(obs.quarantine_held);
    let budget_share = match (obs.org_used, obs.org_max) {
        (Some(u), Some(m)) if m > 0 => Some(u as f64 * 100.0 / m as f64),
        _ => None,
    };

    let mut changes = Vec::new();
    for kind in AlertKind::ALL {
        let (on, fire_text, clear_text) = match kind {
            AlertKind::DeadLetters => (
                obs.dead_letters_open > 0,
                format!(
                    ":rotating_light: revsync: {} dead letter(s) need attention — Salesforce refused writes; see the dashboard's dead letters, fix the cause and replay",
                    obs.dead_letters_open
                ),
                "revsync: resolved — no open dead letters".to_owned(),
            ),
            AlertKind::Budget => (
                budget_share.is_some_and(|s| s >= cfg.budget_percent),
                format!(
                    ":warning: revsync: the Salesforce org has used {:.1}% of its daily API allocation ({} of {}; threshold {}%)",
                    budget_share.unwrap_or(0.0),
                    obs.org_used.unwrap_or(0),
                    obs.org_max.unwrap_or(0),
                    cfg.budget_percent
                ),
                format!(
                    "revsync: resolved — org API usage back to {:.1}%",
                    budget_share.unwrap_or(0.0)
                ),
            ),
            AlertKind::SalesforceUnreachable => (
                unanswered_for >= cfg.salesforce_down_minutes as i64 * MINUTE_US,
                format!(
                    ":rotating_light: revsync: Salesforce has not answered for {} minutes while {} write(s) wait; they are kept and will be sent when it is back",
                    minutes(unanswered_for),
                    obs.outbox_waiting
                ),
                "revsync: resolved — Salesforce is answering again".to_owned(),
            ),
            AlertKind::Silence => (
                cfg.silence_minutes > 0 && quiet_for >= cfg.silence_minutes as i64 * MINUTE_US,
                format!(
                    ":zzz: revsync: no 2Checkout notification received for {} minutes — check the IPN/LCN URLs in the 2Checkout control panel and that revsync is reachable",
                    minutes(quiet_for)
                ),
                "revsync: resolved — 2Checkout notifications are arriving again".to_owned(),
            ),
            AlertKind::QuarantineGrowing => (
                obs.quarantine_held - baseline >= cfg.quarantine_growth.max(1),
                format!(
                    ":warning: revsync: {} new notification(s) quarantined ({} held) — usually a wrong or rotated Secret Key; see `revsync quarantine list`",
                    obs.quarantine_held - baseline,
                    obs.quarantine_held
                ),
                "revsync: resolved — quarantine back to its earlier size".to_owned(),
            ),
        };
        let was = previous.active.contains_key(&kind);
        // The quarantine condition clears only when entries were dealt with.
        let on = if kind == AlertKind::QuarantineGrowing && was {
            obs.quarantine_held > baseline
        } else {
            on
        };
        match (was, on) {
            (false, true) => {
                next.active.insert(kind, now);
                changes.push(AlertChange {
                    kind,
                    firing: true,
                    text: fire_text,
                });
            }
            (true, false) => {
                next.active.remove(&kind);
                changes.push(AlertChange {
                    kind,
                    firing: false,
                    text: clear_text,
                });
            }
            _ => {}
        }
    }
    // The baseline only moves down while the condition is clear (growth below the threshold
    // accumulates), and is kept while it is active.
    if !next.active.contains_key(&AlertKind::QuarantineGrowing) {
        next.quarantine_baseline = Some(baseline.min(obs.quarantine_held));
    }
    (next, changes)
}

/// Why a webhook post failed (logged; the alert is retried next round).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("webhook {url} failed: {message}")]
    Webhook { url: String, message: String },
}

/// The alert loop.
pub struct Alerter {
    cfg: AlertsConfig,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    state: AlertState,
    /// Changes that could not be posted yet (retried next round, in order).
    unsent: Vec<AlertChange>,
}

impl Alerter {
    /// `None` when no webhook is configured.
    pub fn new(cfg: &AlertsConfig, store: Arc<dyn Store>) -> Option<Alerter> {
        cfg.webhook_url.as_ref()?;
        Some(Alerter {
            cfg: cfg.clone(),
            store,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            state: AlertState::default(),
            unsent: Vec::new(),
        })
    }

    /// Reads what the store shows at `now`.
    pub async fn observe(&self, now: Micros) -> Result<Observation, StoreError> {
        let counts = self.store.counts().await?;
        let outbox = self.store.outbox_stats().await?;
        let budget = self.store.api_budget(now).await?;
        Ok(Observation {
            now,
            dead_letters_open: outbox.dead_letters_open,
            org_used: budget.org_used,
            org_max: budget.org_max,
            salesforce_seen_at: budget.observed_at,
            outbox_waiting: outbox.pending + outbox.in_flight,
            deliveries: counts.deliveries,
            quarantine_held: counts.quarantined_held,
        })
    }

    /// One round at `now`: observe, evaluate, post. Returns the changes posted.
    pub async fn tick(&mut self, now: Micros) -> Result<Vec<AlertChange>, AlertError> {
        let obs = self.observe(now).await?;
        let (next, changes) = evaluate(&self.cfg, &obs, &self.state);
        self.state = next;
        self.unsent.extend(changes);
        let mut sent = Vec::new();
        while let Some(change) = self.unsent.first().cloned() {
            self.post(&change).await?;
            tracing::info!(alert = ?change.kind, firing = change.firing, "alert posted");
            self.unsent.remove(0);
            sent.push(change);
        }
        Ok(sent)
    }

    async fn post(&self, change: &AlertChange) -> Result<(), AlertError> {
        let url = self.cfg.webhook_url.clone().unwrap_or_default();
        let err = |message: String| AlertError::Webhook {
            url: redact(&url),
            message,
        };
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({"text": change.text}))
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        Ok(())
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let interval = Duration::from_secs(self.cfg.interval_secs.max(1));
        loop {
            if let Err(e) = self.tick(Micros::now()).await {
                tracing::warn!(error = %e, "alert round failed; retrying next round");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Webhook URLs carry their secret in the path: log only the host.
fn redact(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}/…", u.scheme())))
        .unwrap_or_else(|| "(webhook)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Micros {
        Micros(1_700_000_000_000_000 + min * MINUTE_US)
    }

    fn obs(min: i64) -> Observation {
        Observation {
            now: at(min),
            dead_letters_open: 0,
            org_used: None,
            org_max: None,
            salesforce_seen_at: Some(at(min)),
            outbox_waiting: 0,
            deliveries: 0,
            quarantine_held: 0,
        }
    }

    fn run(cfg: &AlertsConfig, seq: &[Observation]) -> Vec<(i64, AlertKind, bool)> {
        let mut state = AlertState::default();
        let mut out = Vec::new();
        for o in seq {
            let (next, changes) = evaluate(cfg, o, &state);
            state = next;
            out.extend(
                changes
                    .into_iter()
                    .map(|c| (minutes(o.now.0 - at(0).0), c.kind, c.firing)),
            );
        }
        out
    }

    #[test]
    fn dead_letters_fire_once_per_burst_and_clear() {
        let cfg = AlertsConfig::default();
        let seq: Vec<Observation> = [0, 3, 50, 50, 0, 0]
            .iter()
            .enumerate()
            .map(|(i, n)| Observation {
                dead_letters_open: *n,
                deliveries: i as i64,
                ..obs(i as i64)
            })
            .collect();
        assert_eq!(
            run(&cfg, &seq),
            vec![
                (1, AlertKind::DeadLetters, true),
                (4, AlertKind::DeadLetters, false)
            ]
        );
    }

    #[test]
    fn silence_and_salesforce_down_use_the_configured_minutes() {
        let cfg = AlertsConfig {
            silence_minutes: 10,
            salesforce_down_minutes: 5,
            ..AlertsConfig::default()
        };
        let mut seq = Vec::new();
        for m in 0..=20 {
            let mut o = obs(m);
            o.deliveries = if (2..=15).contains(&m) { 2 } else { m };
            // Salesforce stops answering at minute 3 with work waiting, back at 12.
            if (3..12).contains(&m) {
                o.salesforce_seen_at = Some(at(3));
                o.outbox_waiting = 4;
            }
            seq.push(o);
        }
        assert_eq!(
            run(&cfg, &seq),
            vec![
                (8, AlertKind::SalesforceUnreachable, true),
                (12, AlertKind::SalesforceUnreachable, false),
                (12, AlertKind::Silence, true),
                (16, AlertKind::Silence, false),
            ]
        );
    }

    #[test]
    fn budget_and_quarantine() {
        let cfg = AlertsConfig {
            budget_percent: 80.0,
            quarantine_growth: 2,
            ..AlertsConfig::default()
        };
        let seq: Vec<Observation> = [(10, 1), (85, 1), (90, 2), (95, 3), (70, 5), (70, 1)]
            .iter()
            .enumerate()
            .map(|(i, (used, held))| Observation {
                org_used: Some(*used),
                org_max: Some(100),
                quarantine_held: *held,
                deliveries: i as i64,
                ..obs(i as i64)
            })
            .collect();
        assert_eq!(
            run(&cfg, &seq),
            vec![
                (1, AlertKind::Budget, true),
                (3, AlertKind::QuarantineGrowing, true),
                (4, AlertKind::Budget, false),
                (5, AlertKind::QuarantineGrowing, false),
            ]
        );
    }

    #[test]
    fn webhook_urls_are_redacted() {
        assert_eq!(
            redact("https://hooks.example.com/services/T000/B000/secret"),
            "https://hooks.example.com/…"
        );
    }
}
