//! The crate's single error type, [`SalesforceError`], and the per-item [`ApiError`] used by
//! every endpoint (single REST calls, Composite, Composite Graph, sObject Collections and
//! Bulk API 2.0 result rows).
//!
//! Every error answers one question for the caller: *what do I do now?* — see
//! [`ErrorClass`]. Classification follows reference §2.5, §2.6 and §8 items 8-11:
//!
//! | Condition | Class |
//! |---|---|
//! | network error, timeout, HTTP 408/500/502/503/504, `SERVER_UNAVAILABLE`, `UNABLE_TO_LOCK_ROW` (also nested in a `CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY` message), `QUERY_TIMEOUT` | `Transient` |
//! | `INVALID_SESSION_ID`, 401 without a body | `SessionExpired` |
//! | `REQUEST_LIMIT_EXCEEDED` (daily vs concurrent via [`LimitKind`]), HTTP 429 | `LimitExceeded` |
//! | `DUPLICATE_VALUE` "duplicate value found: …" (unique/ext-id insert race) | `DuplicateRace` |
//! | `PROCESSING_HALTED`, `ALL_OR_NONE_OPERATION_ROLLED_BACK`, `BATCH_PROCESSING_HALTED` | `Transient` with [`ApiError::collateral`] = true |
//! | `DUPLICATES_DETECTED` (duplicate rule) | `Permanent`, matched ids in [`ApiError::duplicates`] |
//! | everything else (4xx, 300 multiple matches, OAuth errors, decode errors) | `Permanent` |

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// What the caller should do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retry with exponential backoff and jitter (only the failed items).
    Transient,
    /// The session was rejected. The [`crate::Client`] already re-authenticated once and
    /// replayed the request; seeing this class from the client means the fresh token was
    /// rejected too (revoked app, deactivated user) — alert, retry only under a bounded policy.
    SessionExpired,
    /// The org's API allocation (daily) or long-running concurrency is exhausted: slow down
    /// (seconds for [`LimitKind::Concurrent`], pause the queue for [`LimitKind::Daily`]).
    LimitExceeded,
    /// Concurrent insert of the same external id lost the race: retry ONCE (it becomes an
    /// update); if it fails again treat it as permanent.
    DuplicateRace,
    /// Will fail the same way again: dead-letter with the full error.
    Permanent,
}

impl ErrorClass {
    /// Whether a bounded automatic retry can succeed without anyone fixing anything.
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::SessionExpired => "session_expired",
            ErrorClass::LimitExceeded => "limit_exceeded",
            ErrorClass::DuplicateRace => "duplicate_race",
            ErrorClass::Permanent => "permanent",
        })
    }
}

/// Which allocation a `REQUEST_LIMIT_EXCEEDED` refers to (from the message text; the strings
/// are widely reported but UNCONFIRMED against a recording, reference §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `TotalRequests Limit exceeded.` — the rolling-24h org allocation: pause the whole queue.
    Daily,
    /// `ConcurrentPerOrgLongTxn Limit exceeded.` — too many long-running requests: back off seconds.
    Concurrent,
    /// The message did not say which.
    Unknown,
}

/// The parsed `duplicateResult` of a `DUPLICATES_DETECTED` error (reference §5.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DuplicateMatches {
    /// `true`: an alert rule that `Sforce-Duplicate-Rule-Header: allowSave=true` bypasses;
    /// `false`: a block rule. `None` when the body did not say (collections/composite items).
    pub allow_save: Option<bool>,
    /// Developer name of the duplicate rule, when given.
    pub rule: Option<String>,
    /// Record ids of `matchResults[*].matchRecords[*].record.Id`, in the order given
    /// (highest confidence first as Salesforce returns them).
    pub matched_ids: Vec<String>,
}

/// One Salesforce error item: from a REST error array (`errorCode`), a Collections / Composite
/// item (`statusCode`), or a Bulk result row (`sf__Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `errorCode` / `statusCode`, e.g. `REQUIRED_FIELD_MISSING`.
    pub code: String,
    /// Human-readable message, verbatim.
    pub message: String,
    /// Field API names the error refers to (possibly empty).
    pub fields: Vec<String>,
    /// What to do about it.
    pub class: ErrorClass,
    /// This item failed only because another item in the same all-or-none unit failed
    /// (`PROCESSING_HALTED`, `ALL_OR_NONE_OPERATION_ROLLED_BACK`, `BATCH_PROCESSING_HALTED`).
    /// Resubmit it after the root cause is fixed or removed; its `class` is `Transient`.
    pub collateral: bool,
    /// For `REQUEST_LIMIT_EXCEEDED`: which limit.
    pub limit: Option<LimitKind>,
    /// For `DUPLICATES_DETECTED`: the records the duplicate rule matched.
    pub duplicates: Option<DuplicateMatches>,
    /// For `DUPLICATE_VALUE`: the field and record id named in the message
    /// ("duplicate value found: X__c duplicates value on record with id: 001…").
    pub duplicate_value: Option<DuplicateValue>,
}

/// Field and existing record named by a `DUPLICATE_VALUE` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateValue {
    /// The unique field, e.g. `TwoCheckout_Customer_Ref__c`.
    pub field: String,
    /// The record that already holds the value, when the message names one.
    pub existing_id: Option<String>,
}

impl ApiError {
    /// Build an error item from its parts; derives `class`, `collateral`, `limit` and
    /// `duplicate_value` from code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>, fields: Vec<String>) -> Self {
        let code = code.into();
        let message = message.into();
        let collateral = matches!(
            code.as_str(),
            "PROCESSING_HALTED" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "BATCH_PROCESSING_HALTED"
        );
        let limit = (code == "REQUEST_LIMIT_EXCEEDED").then(|| limit_kind_from_message(&message));
        let duplicate_value = if code == "DUPLICATE_VALUE" {
            parse_duplicate_value(&message)
        } else {
            None
        };
        let class = classify_code(&code, &message, duplicate_value.is_some());
        ApiError {
            code,
            message,
            fields,
            class,
            collateral,
            limit,
            duplicates: None,
            duplicate_value,
        }
    }

    /// Narrow the classification for an upsert keyed on `ext_field`: a `DUPLICATE_VALUE` on a
    /// *different* unique field is a data conflict, not an insert race, so it is `Permanent`.
    pub fn refine_for_external_id(&mut self, ext_field: &str) {
        if self.class == ErrorClass::DuplicateRace {
            let on_other_field = match &self.duplicate_value {
                Some(d) => !d.field.eq_ignore_ascii_case(ext_field),
                None => false,
            } || (!self.fields.is_empty()
                && !self
                    .fields
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(ext_field)));
            if on_other_field {
                self.class = ErrorClass::Permanent;
            }
        }
    }

    /// Parse one error object leniently: `errorCode` or `statusCode`, optional/null `fields`,
    /// optional `duplicateResult`, unknown keys ignored. Returns `None` when the object has
    /// neither a code nor a message.
    pub fn from_json(value: &Value) -> Option<ApiError> {
        let raw: RawApiError = serde_json::from_value(value.clone()).ok()?;
        let code = raw.error_code.or(raw.status_code);
        if code.is_none() && raw.message.is_none() {
            return None;
        }
        let mut err = ApiError::new(
            code.unwrap_or_else(|| "UNKNOWN_ERROR".to_owned()),
            raw.message.unwrap_or_default(),
            raw.fields.unwrap_or_default(),
        );
        if err.code == "DUPLICATES_DETECTED" {
            err.duplicates = Some(
                raw.duplicate_result
                    .as_ref()
                    .map(parse_duplicate_result)
                    .unwrap_or_default(),
            );
        }
        Some(err)
    }

    /// Parse a Bulk API 2.0 `sf__Error` cell: `CODE:message:field1,field2--`
    /// (reference §3.6; the format comes from a public runbook, not from the docs).
    pub fn from_bulk_error(cell: &str) -> ApiError {
        let cell = cell.trim();
        let Some((code, rest)) = cell.split_once(':') else {
            return ApiError::new(cell, "", Vec::new());
        };
        let rest = rest.trim_end();
        let rest = rest.strip_suffix("--").unwrap_or(rest);
        let (message, fields) = match rest.rsplit_once(':') {
            Some((m, f)) => (m, f),
            None => (rest, ""),
        };
        let fields = fields
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        ApiError::new(code.trim(), message.trim(), fields)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " [{}]", self.fields.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawApiError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient_fields")]
    fields: Option<Vec<String>>,
    #[serde(default)]
    duplicate_result: Option<Value>,
}

fn lenient_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect(),
        ),
        Some(Value::String(s)) if !s.is_empty() => Some(vec![s]),
        _ => None,
    })
}

fn parse_duplicate_result(v: &Value) -> DuplicateMatches {
    let allow_save = v.get("allowSave").and_then(Value::as_bool);
    let rule = v
        .get("duplicateRule")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut matched_ids = Vec::new();
    for result in v
        .get("matchResults")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for rec in result
            .get("matchRecords")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let record = rec.get("record");
            let id = record
                .and_then(|r| r.get("Id").or_else(|| r.get("id")))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    // Fall back to the last path segment of attributes.url.
                    record
                        .and_then(|r| r.pointer("/attributes/url"))
                        .and_then(Value::as_str)
                        .and_then(|u| u.rsplit('/').next())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                });
            if let Some(id) = id {
                if !matched_ids.contains(&id) {
                    matched_ids.push(id);
                }
            }
        }
    }
    DuplicateMatches {
        allow_save,
        rule,
        matched_ids,
    }
}

fn limit_kind_from_message(message: &str) -> LimitKind {
    let m = message.to_ascii_lowercase();
    if m.contains("concurrent") {
        LimitKind::Concurrent
    } else if m.contains("totalrequests") || m.contains("total requests") || m.contains("daily") {
        LimitKind::Daily
    } else {
        LimitKind::Unknown
    }
}

/// "duplicate value found: X__c duplicates value on record with id: 001…"
fn parse_duplicate_value(message: &str) -> Option<DuplicateValue> {
    const PREFIX: &str = "duplicate value found:";
    let lower = message.to_ascii_lowercase();
    let start = lower.find(PREFIX)? + PREFIX.len();
    let rest = message[start..].trim_start();
    let field: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    if field.is_empty() {
        return None;
    }
    let existing_id = lower.find("record with id:").and_then(|i| {
        let id: String = message[i + "record with id:".len()..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        (!id.is_empty()).then_some(id)
    });
    Some(DuplicateValue { field, existing_id })
}

fn classify_code(code: &str, message: &str, unique_violation: bool) -> ErrorClass {
    match code {
        "INVALID_SESSION_ID" => ErrorClass::SessionExpired,
        "REQUEST_LIMIT_EXCEEDED" => ErrorClass::LimitExceeded,
        "SERVER_UNAVAILABLE" | "UNABLE_TO_LOCK_ROW" | "QUERY_TIMEOUT" => ErrorClass::Transient,
        "PROCESSING_HALTED" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "BATCH_PROCESSING_HALTED" => {
            ErrorClass::Transient
        }
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY" if message.contains("UNABLE_TO_LOCK_ROW") => {
            ErrorClass::Transient
        }
        // "Already a campaign member." is also DUPLICATE_VALUE but not a race.
        "DUPLICATE_VALUE" if unique_violation => ErrorClass::DuplicateRace,
        _ => ErrorClass::Permanent,
    }
}

/// Class of an HTTP status alone (used when a body carries no usable error code).
pub(crate) fn class_for_status(status: u16) -> ErrorClass {
    match status {
        401 => ErrorClass::SessionExpired,
        429 => ErrorClass::LimitExceeded,
        408 | 500 | 502 | 503 | 504 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// How a transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Could not connect: the request was never sent.
    Connect,
    /// The request timed out (connect, send or read).
    Timeout,
    /// Connection reset, broken body, TLS error mid-flight…
    Other,
}

/// The one error type of this crate. Use [`SalesforceError::class`] to decide what to do.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// A REST error array (or a single error object) from Salesforce.
    #[error("Salesforce API error (HTTP {status}): {}", join_errors(.errors))]
    Api {
        /// HTTP status of the response.
        status: u16,
        /// All error items, verbatim, in order (never empty).
        errors: Vec<ApiError>,
    },
    /// HTTP 300 on an upsert or a read by external id: several records share the key.
    /// Permanent: the external id field is not unique in the org.
    #[error("several records match the external id: {}", .urls.join(", "))]
    MultipleMatches {
        /// Record URLs Salesforce listed.
        urls: Vec<String>,
    },
    /// A non-success response whose body is not a Salesforce error (HTML/XML page from the
    /// edge on 502/503, empty body, …). Classified by HTTP status alone.
    #[error("unexpected HTTP {status} response: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Start of the body (at most 512 bytes), for the operator.
        body: String,
    },
    /// The OAuth token endpoint refused the credentials (`error`, `error_description`).
    #[error("Salesforce authentication failed (HTTP {status}): {error}: {description}")]
    Auth {
        /// HTTP status from the token endpoint.
        status: u16,
        /// OAuth `error`, e.g. `invalid_grant`, `invalid_client_id`.
        error: String,
        /// OAuth `error_description`, e.g. `user hasn't approved this consumer`.
        description: String,
    },
    /// The request did not complete at the HTTP level.
    #[error("transport error ({kind:?}) calling Salesforce: {message}")]
    Transport {
        /// What went wrong.
        kind: TransportKind,
        /// `true` when the request may have reached Salesforce and was a write: it may have
        /// committed. Safe to replay an external-id upsert; never blind-replay a create.
        outcome_unknown: bool,
        /// Description (no secrets).
        message: String,
        /// Underlying error.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// A success response that could not be decoded into the expected shape.
    #[error("could not decode Salesforce response for {context}: {message}")]
    Decode {
        /// Which operation.
        context: &'static str,
        /// Decoder message.
        message: String,
    },
    /// A Bulk API 2.0 job ended `Failed` or `Aborted`.
    #[error("bulk job {job_id} ended in state {state}: {}", .error_message.as_deref().unwrap_or("no message"))]
    BulkJob {
        /// Job id (`750…`).
        job_id: String,
        /// Terminal state.
        state: String,
        /// The job's `errorMessage`.
        error_message: Option<String>,
    },
    /// The caller asked for something this client refuses to send (limits exceeded,
    /// empty external id, non-identifier object name…). Fix the call.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Client configuration is unusable (bad private key, bad URL, API version too old).
    #[error("invalid Salesforce client configuration: {0}")]
    Config(String),
}

fn join_errors(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SalesforceError {
    /// What to do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            SalesforceError::Api { status, errors } => {
                if matches!(status, 500 | 502 | 503 | 504) {
                    return ErrorClass::Transient;
                }
                errors
                    .iter()
                    .find(|e| !e.collateral)
                    .or_else(|| errors.first())
                    .map(|e| e.class)
                    .unwrap_or_else(|| class_for_status(*status))
            }
            SalesforceError::Http { status, .. } => class_for_status(*status),
            SalesforceError::Auth { status, .. } if *status >= 500 => ErrorClass::Transient,
            SalesforceError::Transport { .. } => ErrorClass::Transient,
            SalesforceError::Auth { .. }
            | SalesforceError::MultipleMatches { .. }
            | SalesforceError::Decode { .. }
            | SalesforceError::BulkJob { .. }
            | SalesforceError::InvalidRequest(_)
            | SalesforceError::Config(_) => ErrorClass::Permanent,
        }
    }

    /// All error items (empty for non-API errors).
    pub fn errors(&self) -> &[ApiError] {
        match self {
            SalesforceError::Api { errors, .. } => errors,
            _ => &[],
        }
    }

    /// The first Salesforce error code (`errorCode`/`statusCode`), if any.
    pub fn code(&self) -> Option<&str> {
        self.errors().first().map(|e| e.code.as_str())
    }

    /// HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            SalesforceError::Api { status, .. }
            | SalesforceError::Http { status, .. }
            | SalesforceError::Auth { status, .. } => Some(*status),
            SalesforceError::MultipleMatches { .. } => Some(300),
            _ => None,
        }
    }

    /// Every item is collateral damage of another failure (retry after the root cause).
    pub fn is_collateral(&self) -> bool {
        let errors = self.errors();
        !errors.is_empty() && errors.iter().all(|e| e.collateral)
    }

    /// A write that may or may not have committed (timeout / connection lost after sending).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            SalesforceError::Transport {
                outcome_unknown: true,
                ..
            }
        )
    }

    /// For `REQUEST_LIMIT_EXCEEDED`: which limit was hit.
    pub fn limit_kind(&self) -> Option<LimitKind> {
        match self {
            SalesforceError::Http { status: 429, .. } => Some(LimitKind::Unknown),
            _ => self.errors().iter().find_map(|e| e.limit),
        }
    }

    /// For `DUPLICATES_DETECTED`: the duplicate rule's matches.
    pub fn duplicates(&self) -> Option<&DuplicateMatches> {
        self.errors().iter().find_map(|e| e.duplicates.as_ref())
    }

    /// Apply [`ApiError::refine_for_external_id`] to every item.
    pub(crate) fn refine_for_external_id(mut self, ext_field: &str) -> Self {
        if let SalesforceError::Api { errors, .. } = &mut self {
            for e in errors {
                e.refine_for_external_id(ext_field);
            }
        }
        self
    }

    pub(crate) fn decode(context: &'static str, err: impl fmt::Display) -> Self {
        SalesforceError::Decode {
            context,
            message: err.to_string(),
        }
    }
}

/// Parse a list of error objects from a JSON value that is either an array of error objects,
/// a single error object, or an object with an `errors` array. Unusable entries are skipped.
pub fn parse_error_items(value: &Value) -> Vec<ApiError> {
    match value {
        Value::Array(items) => items.iter().filter_map(ApiError::from_json).collect(),
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("errors") {
                let parsed: Vec<ApiError> = items.iter().filter_map(ApiError::from_json).collect();
                if !parsed.is_empty() {
                    return parsed;
                }
            }
            ApiError::from_json(value).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

const SNIPPET_LIMIT: usize = 512;

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.len() <= SNIPPET_LIMIT {
        return trimmed.to_owned();
    }
    let mut end = SNIPPET_LIMIT;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

/// Turn a non-success REST response into a [`SalesforceError`], parsing leniently: JSON array
/// or object (REST or OAuth style), `errorCode` or `statusCode`, any whitespace; XML error
/// bodies (`<errorCode>`/`<message>`); anything else (HTML from the edge, empty) becomes
/// [`SalesforceError::Http`].
pub fn error_from_response(status: u16, body: &[u8]) -> SalesforceError {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if status == 300 {
            if let Some(urls) = value.as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }) {
                return SalesforceError::MultipleMatches { urls };
            }
        }
        if let Some(oauth) = oauth_error(status, &value) {
            return oauth;
        }
        let errors = parse_error_items(&value);
        if !errors.is_empty() {
            return SalesforceError::Api { status, errors };
        }
    } else if let Some(errors) = xml_errors(body) {
        return SalesforceError::Api { status, errors };
    }
    SalesforceError::Http {
        status,
        body: snippet(body),
    }
}

/// `{"error":"invalid_grant","error_description":"…"}`
pub(crate) fn oauth_error(status: u16, value: &Value) -> Option<SalesforceError> {
    let error = value.get("error")?.as_str()?;
    let description = value
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(SalesforceError::Auth {
        status,
        error: error.to_owned(),
        description: description.to_owned(),
    })
}

/// Minimal extraction of `<errorCode>`/`<message>` pairs from an XML error body.
fn xml_errors(body: &[u8]) -> Option<Vec<ApiError>> {
    let text = std::str::from_utf8(body).ok()?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('<') {
        return None;
    }
    let codes = xml_tag_values(text, "errorCode");
    if codes.is_empty() {
        return None;
    }
    let messages = xml_tag_values(text, "message");
    Some(
        codes
            .into_iter()
            .enumerate()
            .map(|(i, code)| {
                ApiError::new(code, messages.get(i).cloned().unwrap_or_default(), vec![])
            })
            .collect(),
    )
}

fn xml_tag_values(text: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(xml_unescape(after[..end].trim()));
        rest = &after[end + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    //! Every error body below is verbatim from shared/reference/salesforce.md (section noted).
    use super::*;

    fn api(status: u16, body: &str) -> SalesforceError {
        error_from_response(status, body.as_bytes())
    }

    #[test]
    fn oauth_errors_become_auth_errors() {
        // §1 (restforce, StackExchange, simple-salesforce fixtures).
        let cases = [
            (
                r#"{"error":"invalid_grant","error_description":"authentication failure - Invalid Password"}"#,
                "invalid_grant",
                "authentication failure - Invalid Password",
            ),
            (
                r#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
                "invalid_grant",
                "expired access/refresh token",
            ),
            (
                r#"{"error":"invalid_grant","error_description":"user hasn't approved this consumer"}"#,
                "invalid_grant",
                "user hasn't approved this consumer",
            ),
            (
                r#"{"error":"invalid_grant","error_description":"audience is invalid"}"#,
                "invalid_grant",
                "audience is invalid",
            ),
            (
                r#"{"error":"invalid_client_id","error_description":"client identifier invalid"}"#,
                "invalid_client_id",
                "client identifier invalid",
            ),
        ];
        for (body, code, desc) in cases {
            match api(400, body) {
                SalesforceError::Auth {
                    status,
                    error,
                    description,
                } => {
                    assert_eq!(
                        (status, error.as_str(), description.as_str()),
                        (400, code, desc)
                    );
                }
                other => panic!("{body}: {other:?}"),
            }
            assert_eq!(api(400, body).class(), ErrorClass::Permanent);
        }
        assert_eq!(
            api(
                503,
                r#"{"error":"server_error","error_description":"try later"}"#
            )
            .class(),
            ErrorClass::Transient
        );
    }

    #[test]
    fn invalid_session_is_session_expired() {
        // §1.6 (restforce fixture).
        let e = api(
            401,
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(e.class(), ErrorClass::SessionExpired);
        assert_eq!(e.code(), Some("INVALID_SESSION_ID"));
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.errors()[0].message, "Session expired or invalid");
    }

    #[test]
    fn not_found_and_field_errors_are_permanent() {
        // §2.1 (palominolabs), §2.2 (restforce), §2.2 (Camel), §2.3 (palominolabs).
        for (status, body, code) in [
            (
                404,
                r#"[{"message":"Provided external ID field does not exist or is not accessible: 00Q7zzz000Kj4Jn","errorCode":"NOT_FOUND"}]"#,
                "NOT_FOUND",
            ),
            (
                404,
                r#"[{"message":"Provided external ID field does not exist or is not accessible: Namez","errorCode":"NOT_FOUND"}]"#,
                "NOT_FOUND",
            ),
            (
                400,
                r#"[{"message":"Foreign key external ID: 0116 not found for field Invoice_External_Id__c in entity blng__Invoice__c","errorCode":"INVALID_FIELD","fields":[]}]"#,
                "INVALID_FIELD",
            ),
            (
                400,
                r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#,
                "INVALID_QUERY_LOCATOR",
            ),
            (
                400,
                r#"[{"message":"No such column 'foo' on sobject of type Bar","errorCode":"INVALID_FIELD"}]"#,
                "INVALID_FIELD",
            ),
        ] {
            let e = api(status, body);
            assert_eq!(e.code(), Some(code), "{body}");
            assert_eq!(e.class(), ErrorClass::Permanent, "{body}");
            assert!(!e.is_collateral());
        }
    }

    #[test]
    fn required_field_missing_keeps_fields() {
        // §2.5 (palominolabs na3).
        let e = api(
            400,
            r#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.errors()[0].fields, vec!["LastName".to_owned()]);
        assert_eq!(
            e.errors()[0].message,
            "Required fields are missing: [LastName]"
        );
    }

    #[test]
    fn multiple_matches_from_300() {
        // §2.2 (restforce fixture).
        let e = api(
            300,
            r#"["/services/data/v23.0/sobjects/Whizbang/foo","/services/data/v23.0/sobjects/Whizbang/bar"]"#,
        );
        match &e {
            SalesforceError::MultipleMatches { urls } => assert_eq!(urls.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.status(), Some(300));
    }

    #[test]
    fn request_limit_exceeded_daily_vs_concurrent() {
        // §4 and §2.5 message strings (UNCONFIRMED texts, widely reported).
        let daily = api(
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(daily.class(), ErrorClass::LimitExceeded);
        assert_eq!(daily.limit_kind(), Some(LimitKind::Daily));
        let conc = api(
            403,
            r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(conc.class(), ErrorClass::LimitExceeded);
        assert_eq!(conc.limit_kind(), Some(LimitKind::Concurrent));
        let other = api(
            403,
            r#"[{"message":"Limit exceeded","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(other.limit_kind(), Some(LimitKind::Unknown));
        assert_eq!(api(429, "").class(), ErrorClass::LimitExceeded);
    }

    #[test]
    fn server_unavailable_and_row_locks_are_transient() {
        // §2.5 table.
        let e = api(
            503,
            r#"[{"message":"Server Unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#,
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        let lock = api(
            400,
            r#"[{"message":"unable to obtain exclusive access to this record or 1 records: 0015500001QdQWaAAN","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#,
        );
        assert_eq!(lock.class(), ErrorClass::Transient);
        // Nested in a trigger failure (§2.5, §8 item 9).
        let nested = api(
            400,
            r#"[{"message":"execution of AfterInsert caused by: System.DmlException: Update failed. First exception on row 0 with id 0015500001QdQWaAAN; first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access to this record: []","errorCode":"CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY","fields":[]}]"#,
        );
        assert_eq!(nested.class(), ErrorClass::Transient);
        let trigger = api(
            400,
            r#"[{"message":"execution of AfterInsert caused by: System.NullPointerException","errorCode":"CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY","fields":[]}]"#,
        );
        assert_eq!(trigger.class(), ErrorClass::Permanent);
        // 500 with a JSON error array is still transient.
        let internal = api(
            500,
            r#"[{"message":"An unexpected error occurred","errorCode":"UNKNOWN_EXCEPTION"}]"#,
        );
        assert_eq!(internal.class(), ErrorClass::Transient);
    }

    #[test]
    fn duplicate_value_is_a_race_only_on_the_key() {
        // §2.2 / §2.5 message shape.
        let body = r#"[{"message":"duplicate value found: TwoCheckout_Customer_Ref__c duplicates value on record with id: 0015500001QdQWaAAN","errorCode":"DUPLICATE_VALUE","fields":[]}]"#;
        let e = api(400, body);
        assert_eq!(e.class(), ErrorClass::DuplicateRace);
        let dv = e.errors()[0].duplicate_value.clone().unwrap();
        assert_eq!(dv.field, "TwoCheckout_Customer_Ref__c");
        assert_eq!(dv.existing_id.as_deref(), Some("0015500001QdQWaAAN"));
        assert_eq!(
            api(400, body)
                .refine_for_external_id("twocheckout_customer_ref__c")
                .class(),
            ErrorClass::DuplicateRace
        );
        assert_eq!(
            api(400, body)
                .refine_for_external_id("Other_Key__c")
                .class(),
            ErrorClass::Permanent
        );
        // CampaignMember duplicate (§5.3) is not a race.
        let cm = api(
            400,
            r#"[{"message":"Already a campaign member.","errorCode":"DUPLICATE_VALUE"}]"#,
        );
        assert_eq!(cm.class(), ErrorClass::Permanent);
    }

    #[test]
    fn duplicates_detected_carries_matched_ids() {
        // §5.6 (real v54 body).
        let body = r#"[{"duplicateResult":{"allowSave":true,"duplicateRule":"Standard_Contact_Duplicate_Rule",
  "duplicateRuleEntityType":"Contact",
  "errorMessage":"You're creating a duplicate record. We recommend you use an existing record instead.",
  "matchResults":[{"entityType":"Contact","errors":[],"matchEngine":"FuzzyMatchEngine",
    "matchRecords":[{"additionalInformation":[],"fieldDiffs":[],"matchConfidence":100.0,
      "record":{"attributes":{"type":"Contact","url":"/services/data/v54.0/sobjects/Contact/0038M0000016Wv8QAE"},
                "Id":"0038M0000016Wv8QAE"}}],
    "rule":"Standard_Contact_Match_Rule_v1_1","size":1,"success":true}]},
  "errorCode":"DUPLICATES_DETECTED",
  "message":"You're creating a duplicate record. We recommend you use an existing record instead."}]"#;
        let e = api(400, body);
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.code(), Some("DUPLICATES_DETECTED"));
        let d = e.duplicates().unwrap();
        assert_eq!(d.matched_ids, vec!["0038M0000016Wv8QAE".to_owned()]);
        assert_eq!(d.allow_save, Some(true));
        assert_eq!(d.rule.as_deref(), Some("Standard_Contact_Duplicate_Rule"));
    }

    #[test]
    fn collateral_codes_are_flagged() {
        // §3.1 (django-salesforce) and §3.2 (Camel) items.
        for v in [
            serde_json::json!({"statusCode":"ALL_OR_NONE_OPERATION_ROLLED_BACK","message":"Record rolled back because not all records were valid and the request was using AllOrNone header","fields":[]}),
            serde_json::json!({"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}),
            serde_json::json!({"errorCode":"BATCH_PROCESSING_HALTED","message":"Batch processing halted"}),
        ] {
            let e = ApiError::from_json(&v).unwrap();
            assert!(e.collateral, "{v}");
            assert_eq!(e.class, ErrorClass::Transient);
        }
        let e = api(
            400,
            r#"[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}]"#,
        );
        assert!(e.is_collateral());
    }

    #[test]
    fn lenient_shapes() {
        // Pretty-printed with " : " spacing (§6.3 item 5 style), single object, statusCode key,
        // null fields, unknown keys.
        let pretty = "[ {\n  \"message\" : \"Required fields are missing: [Name]\",\n  \"errorCode\" : \"REQUIRED_FIELD_MISSING\",\n  \"fields\" : [ \"Name\" ]\n} ]";
        assert_eq!(api(400, pretty).errors()[0].fields, vec!["Name".to_owned()]);
        let obj = api(
            400,
            r#"{"errorCode":"INVALID_TYPE","message":"sObject type 'XYZZY' is not supported."}"#,
        );
        assert_eq!(obj.code(), Some("INVALID_TYPE"));
        let status_code = api(
            400,
            r#"[{"statusCode":"STRING_TOO_LONG","message":"too long","fields":null,"extra":1}]"#,
        );
        assert_eq!(status_code.code(), Some("STRING_TOO_LONG"));
        assert!(status_code.errors()[0].fields.is_empty());
    }

    #[test]
    fn html_and_xml_bodies_from_the_edge() {
        let html =
            "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>";
        let e = api(502, html);
        assert!(
            matches!(e, SalesforceError::Http { status: 502, .. }),
            "{e:?}"
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(api(503, "").class(), ErrorClass::Transient);
        assert_eq!(
            api(420, "<html>no route</html>").class(),
            ErrorClass::Permanent
        );
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Errors><Error><errorCode>SERVER_UNAVAILABLE</errorCode><message>Server Unavailable &amp; busy</message></Error></Errors>"#;
        let e = api(503, xml);
        assert_eq!(e.code(), Some("SERVER_UNAVAILABLE"));
        assert_eq!(e.errors()[0].message, "Server Unavailable & busy");
        let long = "x".repeat(5000);
        match api(500, &long) {
            SalesforceError::Http { body, .. } => assert!(body.len() < 600),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_errors() {
        let e = SalesforceError::Transport {
            kind: TransportKind::Timeout,
            outcome_unknown: true,
            message: "timed out".into(),
            source: None,
        };
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(e.outcome_unknown());
        assert!(e.class().is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
    }

    #[test]
    fn bulk_error_cells() {
        let e = ApiError::from_bulk_error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 200 records: 001…:--");
        assert_eq!(e.code, "UNABLE_TO_LOCK_ROW");
        assert_eq!(
            e.message,
            "unable to obtain exclusive access to this record or 200 records: 001…"
        );
        assert!(e.fields.is_empty());
        assert_eq!(e.class, ErrorClass::Transient);
        let e = ApiError::from_bulk_error("JUST_A_CODE");
        assert_eq!(e.code, "JUST_A_CODE");
    }
}
