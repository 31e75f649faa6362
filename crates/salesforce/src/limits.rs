//! API usage: the `Sforce-Limit-Info` response header and the `/limits` resource
//! (reference §4).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `used/max` of one allocation, e.g. `api-usage=18/5000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApiUsage {
    /// Calls used in the rolling window.
    pub used: u64,
    /// The allocation.
    pub max: u64,
}

impl ApiUsage {
    /// `used / max` in `[0, ∞)`; `1.0` when `max` is 0.
    pub fn fraction(&self) -> f64 {
        if self.max == 0 {
            1.0
        } else {
            self.used as f64 / self.max as f64
        }
    }

    /// Calls left before the allocation is exhausted.
    pub fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}

/// Everything parsed from one `Sforce-Limit-Info` header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitInfo {
    /// `api-usage=N/M`: the org's rolling-24h allocation.
    pub api_usage: Option<ApiUsage>,
    /// `api-bursts=N/M` (semantics UNCONFIRMED, reference §4).
    pub api_bursts: Option<ApiUsage>,
    /// `per-app-api-usage=N/M(appName=x)` entries, keyed by app name (pilot feature).
    pub per_app: Vec<(String, ApiUsage)>,
}

/// Parse a `Sforce-Limit-Info` value: `;`-separated `name=used/max` entries, optional
/// `(k=v)` suffix, unknown names and malformed entries ignored.
///
/// ```
/// let info = salesforce::parse_limit_info("api-usage=10018/100000; api-bursts=1/750");
/// assert_eq!(info.api_usage.unwrap().used, 10018);
/// ```
pub fn parse_limit_info(header: &str) -> LimitInfo {
    let mut info = LimitInfo::default();
    for entry in header.split(';') {
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        let (counts, suffix) = match value.find('(') {
            Some(i) => (&value[..i], Some(&value[i..])),
            None => (value, None),
        };
        let Some(usage) = parse_usage(counts) else {
            continue;
        };
        match name.as_str() {
            "api-usage" => info.api_usage = Some(usage),
            "api-bursts" => info.api_bursts = Some(usage),
            "per-app-api-usage" => {
                let app = suffix
                    .and_then(|s| s.trim().strip_prefix('('))
                    .and_then(|s| s.strip_suffix(')'))
                    .and_then(|s| {
                        s.split(',').find_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            k.trim().eq_ignore_ascii_case("appName").then(|| v.trim())
                        })
                    })
                    .unwrap_or_default();
                info.per_app.push((app.to_owned(), usage));
            }
            _ => {}
        }
    }
    info
}

fn parse_usage(s: &str) -> Option<ApiUsage> {
    let (used, max) = s.trim().split_once('/')?;
    Some(ApiUsage {
        used: used.trim().parse().ok()?,
        max: max.trim().parse().ok()?,
    })
}

/// One entry of `GET /limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitValue {
    /// `Max`
    #[serde(rename = "Max")]
    pub max: i64,
    /// `Remaining`
    #[serde(rename = "Remaining")]
    pub remaining: i64,
}

/// `GET /limits`: every limit by name (`DailyApiRequests`, `DailyBulkApiBatches`, …).
/// Nested per-app breakdowns present in some orgs are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgLimits(pub BTreeMap<String, LimitValue>);

impl OrgLimits {
    /// Look up one limit.
    pub fn get(&self, name: &str) -> Option<LimitValue> {
        self.0.get(name).copied()
    }

    /// `DailyApiRequests` as an [`ApiUsage`].
    pub fn daily_api_requests(&self) -> Option<ApiUsage> {
        self.get("DailyApiRequests").map(|v| ApiUsage {
            used: (v.max - v.remaining).max(0) as u64,
            max: v.max.max(0) as u64,
        })
    }

    /// Parse the JSON body of `/limits` leniently (entries that are not `{Max,Remaining}`
    /// are skipped).
    pub fn from_json(value: &serde_json::Value) -> Option<OrgLimits> {
        let map = value.as_object()?;
        let mut out = BTreeMap::new();
        for (name, v) in map {
            if let Ok(lv) = LimitValue::deserialize(v) {
                out.insert(name.clone(), lv);
            }
        }
        Some(OrgLimits(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_usage() {
        let info = parse_limit_info("api-usage=18/5000");
        assert_eq!(
            info.api_usage,
            Some(ApiUsage {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(info.api_bursts, None);
    }

    #[test]
    fn parses_usage_and_bursts() {
        let info = parse_limit_info("api-usage=10018/100000; api-bursts=1/750");
        assert_eq!(
            info.api_usage,
            Some(ApiUsage {
                used: 10018,
                max: 100000
            })
        );
        assert_eq!(info.api_bursts, Some(ApiUsage { used: 1, max: 750 }));
    }

    #[test]
    fn parses_per_app_with_suffix() {
        let info = parse_limit_info(
            "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)",
        );
        assert_eq!(
            info.api_usage,
            Some(ApiUsage {
                used: 25,
                max: 5000
            })
        );
        assert_eq!(
            info.per_app,
            vec![(
                "sample-connected-app".to_owned(),
                ApiUsage { used: 17, max: 250 }
            )]
        );
    }

    #[test]
    fn ignores_garbage_and_unknown_names() {
        let info = parse_limit_info("foo=1/2;api-usage=abc/10; ;=;api-usage");
        assert_eq!(info, LimitInfo::default());
        let info = parse_limit_info(" API-Usage = 7 / 9 ");
        assert_eq!(info.api_usage, Some(ApiUsage { used: 7, max: 9 }));
    }

    #[test]
    fn usage_fraction_and_remaining() {
        let u = ApiUsage { used: 80, max: 100 };
        assert!((u.fraction() - 0.8).abs() < 1e-9);
        assert_eq!(u.remaining(), 20);
        assert_eq!(ApiUsage { used: 5, max: 0 }.fraction(), 1.0);
        assert_eq!(
            ApiUsage {
                used: 120,
                max: 100
            }
            .remaining(),
            0
        );
    }

    #[test]
    fn parses_limits_resource_fixture() {
        // Camel limits.json (reference §4, developer edition org).
        let body = r#"{"DailyApiRequests":{"Max":15000,"Remaining":14998},"DailyBulkApiRequests":{"Max":5000,"Remaining":5000},
   "DataStorageMB":{"Max":5,"Remaining":5},"StreamingApiConcurrentClients":{"Max":20,"Remaining":20}}"#;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let limits = OrgLimits::from_json(&v).unwrap();
        assert_eq!(limits.0.len(), 4);
        assert_eq!(
            limits.daily_api_requests(),
            Some(ApiUsage {
                used: 2,
                max: 15000
            })
        );
        assert_eq!(
            limits.get("DataStorageMB"),
            Some(LimitValue {
                max: 5,
                remaining: 5
            })
        );
    }
}
