//! Salesforce API errors as the emulator renders them.
//!
//! REST responses carry `[{"message","errorCode","fields"?}]`; sObject Collections and Bulk
//! results carry the same data keyed `statusCode`. Some errors add keys (`duplicateResult`).

use serde_json::{json, Map, Value};

/// One Salesforce error (boxed, so `Result<_, SfError>` stays small; fields are reached
/// through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct SfError(Box<SfErrorData>);

impl std::ops::Deref for SfError {
    type Target = SfErrorData;
    fn deref(&self) -> &SfErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for SfError {
    fn deref_mut(&mut self) -> &mut SfErrorData {
        &mut self.0
    }
}

/// The data of an [`SfError`].
#[derive(Debug, Clone, PartialEq)]
pub struct SfErrorData {
    /// HTTP status for a single REST call.
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `fields` array; `None` omits the key in REST bodies.
    pub fields: Option<Vec<String>>,
    /// Extra keys merged into the REST error object (e.g. `duplicateResult`).
    pub extra: Map<String, Value>,
    /// Message used inside collections/composite items when it differs from the REST one.
    pub item_message: Option<String>,
    /// Matching record ids for a 300 "multiple choices" upsert.
    pub multiple: Vec<String>,
}

impl SfError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        SfError(Box::new(SfErrorData {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: None,
            extra: Map::new(),
            item_message: None,
            multiple: Vec::new(),
        }))
    }

    /// A 400 error with a `fields` array.
    pub fn bad(code: &str, message: impl Into<String>, fields: &[&str]) -> Self {
        let mut e = SfError::new(400, code, message);
        e.fields = Some(fields.iter().map(|f| f.to_string()).collect());
        e
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        self.fields = Some(fields);
        self
    }

    pub fn not_found() -> Self {
        SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn invalid_session() -> Self {
        SfError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    pub fn server_unavailable() -> Self {
        SfError::new(503, "SERVER_UNAVAILABLE", "Server Unavailable")
    }

    pub fn limit_exceeded() -> Self {
        SfError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub fn json_parse(detail: impl std::fmt::Display) -> Self {
        SfError::new(400, "JSON_PARSER_ERROR", format!("{detail}"))
    }

    pub fn processing_halted() -> Self {
        SfError::new(
            400,
            "PROCESSING_HALTED",
            "The transaction was rolled back since another operation in the same transaction failed.",
        )
    }

    /// The error object as it appears in REST error arrays.
    pub fn rest_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("errorCode".into(), Value::String(self.code.clone()));
        m.insert("message".into(), Value::String(self.message.clone()));
        if let Some(f) = &self.fields {
            m.insert("fields".into(), json!(f));
        }
        Value::Object(m)
    }

    /// The REST error array body.
    pub fn rest_body(&self) -> Value {
        Value::Array(vec![self.rest_json()])
    }

    /// The error object as it appears in sObject Collections items.
    pub fn item_json(&self) -> Value {
        json!({
            "statusCode": self.code,
            "message": self.item_message.as_deref().unwrap_or(&self.message),
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }

    /// The Bulk API `sf__Error` text: `CODE:message:fields--`.
    pub fn bulk_text(&self) -> String {
        let fields = self.fields.clone().unwrap_or_default().join(",");
        format!(
            "{}:{}:{}--",
            self.code,
            self.item_message.as_deref().unwrap_or(&self.message),
            fields
        )
    }
}

impl std::fmt::Display for SfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for SfError {}
