//! The budget governor: keeps revsync's share of the org's daily API allocation.
//!
//! The org's allocation is shared by every user and integration; exhausting it stops the
//! whole company. The governor reads what Salesforce reports (`Sforce-Limit-Info`, kept in
//! the store so every revsync process sees the same figures) and what revsync itself spent
//! in the last 24 hours (counted in the store, across processes), and decides per priority
//! whether the sink may call now. It pauses, never fails: the outbox keeps everything until
//! the budget allows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::intent::Priority;
use crate::store::ApiBudgetState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Share of the org's daily allocation revsync may use (0.10 = 10 %).
    pub share: f64,
    /// Absolute ceiling of calls per 24 hours, whatever the allocation.
    pub ceiling: Option<i64>,
    /// Stop every write when the org as a whole has used this share of its allocation.
    pub org_stop_at: f64,
    /// Share of revsync's budget rollups may use; payments always get the whole budget.
    pub rollup_share: f64,
    /// Share of revsync's budget backfills may use.
    pub backfill_share: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            share: 0.10,
            ceiling: None,
            org_stop_at: 0.95,
            rollup_share: 0.8,
            backfill_share: 0.5,
        }
    }
}

/// The governor's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Intents up to this priority may be written now (`Payment` < `Rollup` < `Backfill`),
    /// in at most `calls_left` calls (`None`: no allocation known yet).
    Go {
        up_to: Priority,
        calls_left: Option<i64>,
    },
    /// Nothing may be written; ask again after `retry_after`.
    Pause {
        retry_after: Duration,
        reason: String,
    },
}

/// Decides from the shared budget state. Pure.
pub fn decide(config: &BudgetConfig, state: &ApiBudgetState) -> Verdict {
    if let (Some(used), Some(max)) = (state.org_used, state.org_max) {
        if max > 0 && used as f64 >= config.org_stop_at * max as f64 {
            return Verdict::Pause {
                retry_after: Duration::from_secs(300),
                reason: format!(
                    "the org has used {used} of {max} API calls (stop at {:.0} %)",
                    config.org_stop_at * 100.0
                ),
            };
        }
    }
    let allowance = match (state.org_max, config.ceiling) {
        (Some(max), Some(ceiling)) => Some(((config.share * max as f64) as i64).min(ceiling)),
        (Some(max), None) => Some((config.share * max as f64) as i64),
        (None, ceiling) => ceiling,
    };
    let Some(allowance) = allowance else {
        // Salesforce has not reported the allocation yet: the first call will.
        return Verdict::Go {
            up_to: Priority::Backfill,
            calls_left: None,
        };
    };
    let spent = state.revsync_calls_24h as f64;
    let allowed = |share: f64| spent < share * allowance as f64;
    let calls_left = Some(allowance - state.revsync_calls_24h);
    if allowed(config.backfill_share) {
        Verdict::Go {
            up_to: Priority::Backfill,
            calls_left,
        }
    } else if allowed(config.rollup_share) {
        Verdict::Go {
            up_to: Priority::Rollup,
            calls_left,
        }
    } else if allowed(1.0) {
        Verdict::Go {
            up_to: Priority::Payment,
            calls_left,
        }
    } else {
        Verdict::Pause {
            // The window slides every hour.
            retry_after: Duration::from_secs(60),
            reason: format!(
                "revsync used {} of its {allowance} API calls in the last 24 hours",
                state.revsync_calls_24h
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(spent: i64, org: Option<(i64, i64)>) -> ApiBudgetState {
        ApiBudgetState {
            revsync_calls_24h: spent,
            org_used: org.map(|o| o.0),
            org_max: org.map(|o| o.1),
            observed_at: None,
        }
    }

    #[test]
    fn priorities_give_way_in_order_as_the_budget_is_spent() {
        let c = BudgetConfig::default(); // 10 % of 100,000 = 10,000 calls
        let org = Some((20_000, 100_000));
        let go = |p, left| Verdict::Go {
            up_to: p,
            calls_left: Some(left),
        };
        assert_eq!(decide(&c, &state(0, org)), go(Priority::Backfill, 10_000));
        assert_eq!(
            decide(&c, &state(4_999, org)),
            go(Priority::Backfill, 5_001)
        );
        assert_eq!(decide(&c, &state(5_000, org)), go(Priority::Rollup, 5_000));
        assert_eq!(decide(&c, &state(8_000, org)), go(Priority::Payment, 2_000));
        assert!(matches!(
            decide(&c, &state(10_000, org)),
            Verdict::Pause { .. }
        ));
    }

    #[test]
    fn the_org_near_its_limit_stops_everything_and_a_ceiling_caps_the_share() {
        let c = BudgetConfig::default();
        assert!(matches!(
            decide(&c, &state(0, Some((95_000, 100_000)))),
            Verdict::Pause { .. }
        ));
        let capped = BudgetConfig {
            ceiling: Some(100),
            ..BudgetConfig::default()
        };
        assert!(matches!(
            decide(&capped, &state(100, Some((0, 100_000)))),
            Verdict::Pause { .. }
        ));
        // Before Salesforce reported anything, only a ceiling applies.
        assert_eq!(
            decide(&c, &state(1_000_000, None)),
            Verdict::Go {
                up_to: Priority::Backfill,
                calls_left: None
            }
        );
        assert!(matches!(
            decide(&capped, &state(100, None)),
            Verdict::Pause { .. }
        ));
    }
}
