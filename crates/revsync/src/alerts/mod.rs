//! Alerts: chat-compatible webhook messages when something needs an operator.

use serde::{Deserialize, Serialize};

/// `[alerts]`: where to post and when. No `webhook_url`: alerts are off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Webhook receiving `{"text": "…"}` (Slack, Mattermost, Google Chat, Teams workflows…).
    pub webhook_url: Option<String>,
    /// How often conditions are evaluated.
    pub interval_secs: u64,
    /// Alert when revsync's share of the org's daily API allocation is above this percent.
    pub budget_percent: f64,
    /// Alert when Salesforce has been unreachable for this many minutes.
    pub salesforce_down_minutes: u64,
    /// Alert when no IPN arrived for this many minutes (0: off).
    pub silence_minutes: u64,
    /// Alert when the quarantine grew by at least this many entries since the last check.
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
