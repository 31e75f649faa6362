//! Bulk API 2.0 ingest (reference §3.6): create job → upload CSV → `UploadComplete` → poll
//! → fetch successful / failed / unprocessed results.
//!
//! # CSV choices
//! * RFC 4180 via the `csv` crate, comma delimiter, LF line endings (the job is created with
//!   `lineEnding: LF`, `columnDelimiter: COMMA`); a field is quoted when it contains a comma,
//!   quote, CR or LF, and quotes are doubled.
//! * Values starting with `=`, `+`, `-` or `@` are written **verbatim**: Salesforce stores CSV
//!   cells as data and never evaluates formulas, and prefixing them (the usual
//!   spreadsheet-injection defence) would corrupt real values such as `-12.50` or
//!   `@handle`. Anyone opening these files in a spreadsheet must import them as text.
//! * A JSON `null` becomes `#N/A`, which Bulk API reads as "set the field to null"; an
//!   absent key becomes an empty cell, which leaves the field unchanged on update/upsert
//!   (Bulk API convention recalled from the docs, UNCONFIRMED in the reference).
//! * Relationship columns use dotted headers (`Account.TwoCheckout_Customer_Ref__c`); the
//!   value is taken from the nested object `{"Account":{"TwoCheckout_Customer_Ref__c":…}}`
//!   or from a flat key with the dotted name.

use crate::client::{Body, Client, Request};
use crate::error::{ApiError, ErrorClass, SalesforceError, TransportKind};
use crate::soql::is_identifier;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Maximum raw CSV size per upload (150 MB limit after base64 → keep raw ≤ 100 MB).
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;
/// Consecutive transient poll failures tolerated by [`Client::bulk_wait`].
pub const MAX_FAILED_POLLS: u32 = 5;
/// Cell value that sets a field to null.
pub const NULL_CELL: &str = "#N/A";

/// Bulk ingest operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkOperation {
    /// insert
    Insert,
    /// update (by `Id` column)
    Update,
    /// upsert (by `externalIdFieldName`)
    Upsert,
    /// delete
    Delete,
    /// hardDelete
    HardDelete,
}

/// Body of `POST /jobs/ingest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestJobRequest {
    /// sObject API name.
    pub object: String,
    /// Operation.
    pub operation: BulkOperation,
    /// Required for upsert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id_field_name: Option<String>,
    /// Always `CSV`.
    pub content_type: &'static str,
    /// Always `LF`.
    pub line_ending: &'static str,
    /// Always `COMMA`.
    pub column_delimiter: &'static str,
    /// Optional assignment rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_rule_id: Option<String>,
}

impl IngestJobRequest {
    /// An upsert job keyed on `ext_field`.
    pub fn upsert(object: impl Into<String>, ext_field: impl Into<String>) -> Self {
        IngestJobRequest {
            object: object.into(),
            operation: BulkOperation::Upsert,
            external_id_field_name: Some(ext_field.into()),
            content_type: "CSV",
            line_ending: "LF",
            column_delimiter: "COMMA",
            assignment_rule_id: None,
        }
    }

    /// A job of any other operation.
    pub fn new(object: impl Into<String>, operation: BulkOperation) -> Self {
        IngestJobRequest {
            object: object.into(),
            operation,
            external_id_field_name: None,
            content_type: "CSV",
            line_ending: "LF",
            column_delimiter: "COMMA",
            assignment_rule_id: None,
        }
    }

    fn validate(&self) -> Result<(), SalesforceError> {
        crate::sobject::check_name("sObject", &self.object)?;
        match (&self.operation, &self.external_id_field_name) {
            (BulkOperation::Upsert, None) => Err(SalesforceError::InvalidRequest(
                "bulk upsert needs externalIdFieldName".to_owned(),
            )),
            (_, Some(f)) => crate::sobject::check_name("external id field", f),
            _ => Ok(()),
        }
    }
}

/// Job state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum JobState {
    /// Accepting data.
    Open,
    /// Data uploaded, queued.
    UploadComplete,
    /// Processing.
    InProgress,
    /// Done (some rows may have failed).
    JobComplete,
    /// The job failed as a whole.
    Failed,
    /// Aborted.
    Aborted,
    /// A state this client does not know.
    #[serde(untagged)]
    Other(String),
}

impl JobState {
    /// `JobComplete`, `Failed` or `Aborted`.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }

    fn as_str(&self) -> &str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
            JobState::Other(s) => s,
        }
    }
}

/// Job info (`GET /jobs/ingest/{id}`), the fields a writer uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job id (`750…`).
    pub id: String,
    /// Operation.
    #[serde(default)]
    pub operation: Option<BulkOperation>,
    /// sObject.
    #[serde(default)]
    pub object: Option<String>,
    /// State.
    pub state: JobState,
    /// Ext id field of an upsert job.
    #[serde(default)]
    pub external_id_field_name: Option<String>,
    /// Upload URL (relative, without leading slash in real responses).
    #[serde(default)]
    pub content_url: Option<String>,
    /// Rows processed so far.
    #[serde(default)]
    pub number_records_processed: u64,
    /// Rows failed so far.
    #[serde(default)]
    pub number_records_failed: u64,
    /// Internal retries.
    #[serde(default)]
    pub retries: u64,
    /// Milliseconds.
    #[serde(default)]
    pub total_processing_time: u64,
    /// Why a `Failed` job failed.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// Backoff used while polling a job.
#[derive(Debug, Clone)]
pub struct PollPolicy {
    /// First wait.
    pub initial_delay: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
    /// Growth factor per poll (≥ 1).
    pub multiplier: u32,
    /// Give up after this long (then `Transport{Timeout, outcome_unknown}`: the job may
    /// still complete). `None` waits forever.
    pub max_total: Option<Duration>,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            multiplier: 2,
            max_total: Some(Duration::from_secs(3600)),
        }
    }
}

/// One row of `successfulResults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessRow {
    /// `sf__Id`.
    pub id: String,
    /// `sf__Created`.
    pub created: bool,
    /// The input columns.
    pub fields: BTreeMap<String, String>,
}

/// One row of `failedResults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRow {
    /// `sf__Id` (empty → `None`).
    pub id: Option<String>,
    /// Parsed `sf__Error` (class as for REST errors, e.g. `UNABLE_TO_LOCK_ROW` → Transient).
    pub error: ApiError,
    /// The input columns.
    pub fields: BTreeMap<String, String>,
}

/// Everything a finished ingest job reported.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// Final job info.
    pub job: JobInfo,
    /// Saved rows.
    pub successful: Vec<SuccessRow>,
    /// Failed rows.
    pub failed: Vec<FailedRow>,
    /// Rows never processed (input columns only).
    pub unprocessed: Vec<BTreeMap<String, String>>,
}

/// Build a Bulk CSV from JSON records (see the module docs for the quoting/null choices).
pub fn records_to_csv(columns: &[&str], records: &[Value]) -> Result<Vec<u8>, SalesforceError> {
    if columns.is_empty() {
        return Err(SalesforceError::InvalidRequest(
            "CSV needs at least one column".to_owned(),
        ));
    }
    if let Some(bad) = columns.iter().find(|c| !is_identifier(c)) {
        return Err(SalesforceError::InvalidRequest(format!(
            "CSV column {bad:?} is not a field API name"
        )));
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let csv_err = |e: csv::Error| SalesforceError::InvalidRequest(format!("CSV: {e}"));
    w.write_record(columns).map_err(csv_err)?;
    for (i, record) in records.iter().enumerate() {
        if !record.is_object() {
            return Err(SalesforceError::InvalidRequest(format!(
                "record {i} is not an object"
            )));
        }
        let mut row = Vec::with_capacity(columns.len());
        for col in columns {
            let v = lookup(record, col);
            row.push(cell(v).map_err(|m| {
                SalesforceError::InvalidRequest(format!("record {i}, column {col}: {m}"))
            })?);
        }
        w.write_record(&row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| SalesforceError::InvalidRequest(format!("CSV: {e}")))?;
    Ok(bytes)
}

fn lookup<'a>(record: &'a Value, column: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(column) {
        return Some(v);
    }
    let mut cur = record;
    for part in column.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn cell(v: Option<&Value>) -> Result<String, &'static str> {
    Ok(match v {
        None => String::new(),
        Some(Value::Null) => NULL_CELL.to_owned(),
        // `#N/A` is Bulk's null marker: the text itself cannot be written through a CSV.
        Some(Value::String(s)) if s.trim() == NULL_CELL => {
            return Err("the text \"#N/A\" is Bulk API's null marker and cannot be sent as data (write it through REST)")
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(_) | Value::Object(_)) => return Err("nested value is not a CSV cell"),
    })
}

fn read_rows(body: &[u8]) -> Result<Vec<BTreeMap<String, String>>, SalesforceError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let headers = r
        .headers()
        .map_err(|e| SalesforceError::decode("bulk results CSV", e))?
        .clone();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| SalesforceError::decode("bulk results CSV", e))?;
        rows.push(
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect(),
        );
    }
    Ok(rows)
}

/// Parse `successfulResults` CSV (`sf__Id`, `sf__Created`, input columns).
pub fn parse_successful_results(body: &[u8]) -> Result<Vec<SuccessRow>, SalesforceError> {
    read_rows(body)?
        .into_iter()
        .map(|mut row| {
            let id = row
                .remove("sf__Id")
                .ok_or_else(|| SalesforceError::decode("successfulResults", "no sf__Id column"))?;
            let created = row
                .remove("sf__Created")
                .map(|c| c.eq_ignore_ascii_case("true"))
                .unwrap_or(false);
            Ok(SuccessRow {
                id,
                created,
                fields: row,
            })
        })
        .collect()
}

/// Parse `failedResults` CSV (`sf__Id`, `sf__Error`, input columns).
pub fn parse_failed_results(body: &[u8]) -> Result<Vec<FailedRow>, SalesforceError> {
    read_rows(body)?
        .into_iter()
        .map(|mut row| {
            let error = row
                .remove("sf__Error")
                .ok_or_else(|| SalesforceError::decode("failedResults", "no sf__Error column"))?;
            let id = row.remove("sf__Id").filter(|s| !s.is_empty());
            Ok(FailedRow {
                id,
                error: ApiError::from_bulk_error(&error),
                fields: row,
            })
        })
        .collect()
}

/// Parse `unprocessedrecords` CSV (input columns only).
pub fn parse_unprocessed_records(
    body: &[u8],
) -> Result<Vec<BTreeMap<String, String>>, SalesforceError> {
    read_rows(body)
}

fn check_job_id(id: &str) -> Result<(), SalesforceError> {
    if !id.is_empty() && id.len() <= 18 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidRequest(format!(
            "{id:?} is not a bulk job id"
        )))
    }
}

impl Client {
    /// `POST /jobs/ingest`.
    pub async fn bulk_create_job(
        &self,
        request: &IngestJobRequest,
    ) -> Result<JobInfo, SalesforceError> {
        request.validate()?;
        let req = Request::new(Method::POST, self.data_path("jobs/ingest")).json(request)?;
        let job: JobInfo = self
            .execute(req)
            .await?
            .error_for_status()?
            .json("bulk job")?;
        tracing::info!(job_id = %job.id, object = %request.object, "bulk ingest job created");
        Ok(job)
    }

    /// `PUT /jobs/ingest/{id}/batches` with the CSV (≤ [`MAX_UPLOAD_BYTES`]).
    pub async fn bulk_upload(&self, job_id: &str, csv: Vec<u8>) -> Result<(), SalesforceError> {
        check_job_id(job_id)?;
        if csv.len() > MAX_UPLOAD_BYTES {
            return Err(SalesforceError::InvalidRequest(format!(
                "CSV of {} bytes exceeds {MAX_UPLOAD_BYTES}: split it into several jobs",
                csv.len()
            )));
        }
        let mut req = Request::new(
            Method::PUT,
            self.data_path(&format!("jobs/ingest/{job_id}/batches")),
        );
        req.body = Body::Csv(csv);
        self.execute(req).await?.error_for_status()?;
        Ok(())
    }

    async fn bulk_set_state(&self, job_id: &str, state: &str) -> Result<JobInfo, SalesforceError> {
        check_job_id(job_id)?;
        let req = Request::new(
            Method::PATCH,
            self.data_path(&format!("jobs/ingest/{job_id}")),
        )
        .json(&serde_json::json!({ "state": state }))?;
        self.execute(req)
            .await?
            .error_for_status()?
            .json("bulk job")
    }

    /// `PATCH /jobs/ingest/{id}` `{"state":"UploadComplete"}` — processing starts only now.
    pub async fn bulk_close(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        self.bulk_set_state(job_id, "UploadComplete").await
    }

    /// `PATCH /jobs/ingest/{id}` `{"state":"Aborted"}`.
    pub async fn bulk_abort(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        self.bulk_set_state(job_id, "Aborted").await
    }

    /// `GET /jobs/ingest/{id}`.
    pub async fn bulk_job(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        check_job_id(job_id)?;
        let req = Request::new(
            Method::GET,
            self.data_path(&format!("jobs/ingest/{job_id}")),
        );
        self.execute(req)
            .await?
            .error_for_status()?
            .json("bulk job")
    }

    /// `DELETE /jobs/ingest/{id}`.
    pub async fn bulk_delete_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        check_job_id(job_id)?;
        let req = Request::new(
            Method::DELETE,
            self.data_path(&format!("jobs/ingest/{job_id}")),
        );
        self.execute(req).await?.error_for_status()?;
        Ok(())
    }

    /// Poll with exponential backoff until the job is terminal; returns the final info
    /// whatever the terminal state. Each poll is one API call. Up to [`MAX_FAILED_POLLS`]
    /// consecutive transient poll failures are tolerated (not a daily-limit refusal).
    pub async fn bulk_wait(
        &self,
        job_id: &str,
        policy: &PollPolicy,
    ) -> Result<JobInfo, SalesforceError> {
        let started = Instant::now();
        let mut delay = policy.initial_delay;
        let mut failed_polls = 0u32;
        loop {
            let info = match self.bulk_job(job_id).await {
                Ok(info) => {
                    failed_polls = 0;
                    info
                }
                // A failed poll does not fail the job: keep polling through short blips.
                Err(e)
                    if failed_polls < MAX_FAILED_POLLS
                        && matches!(
                            e.class(),
                            ErrorClass::Transient | ErrorClass::LimitExceeded
                        )
                        && e.limit_kind() != Some(crate::error::LimitKind::Daily) =>
                {
                    failed_polls += 1;
                    tracing::warn!(job_id, error = %e, failed_polls, "bulk job poll failed; will poll again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * policy.multiplier.max(1)).min(policy.max_delay);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if info.state.is_terminal() {
                return Ok(info);
            }
            if let Some(max) = policy.max_total {
                if started.elapsed() + delay > max {
                    return Err(SalesforceError::Transport {
                        kind: TransportKind::Timeout,
                        outcome_unknown: true,
                        message: format!(
                            "bulk job {job_id} still {} after {:?}",
                            info.state.as_str(),
                            started.elapsed()
                        ),
                        source: None,
                    });
                }
            }
            tracing::debug!(
                job_id,
                state = info.state.as_str(),
                delay_ms = delay.as_millis() as u64,
                "bulk job not finished"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * policy.multiplier.max(1)).min(policy.max_delay);
        }
    }

    async fn bulk_results(
        &self,
        job_id: &str,
        which: &str,
    ) -> Result<bytes::Bytes, SalesforceError> {
        check_job_id(job_id)?;
        let mut req = Request::new(
            Method::GET,
            self.data_path(&format!("jobs/ingest/{job_id}/{which}")),
        );
        req.accept = "text/csv";
        Ok(self.execute(req).await?.error_for_status()?.body)
    }

    /// `GET /jobs/ingest/{id}/successfulResults`.
    pub async fn bulk_successful_results(
        &self,
        job_id: &str,
    ) -> Result<Vec<SuccessRow>, SalesforceError> {
        parse_successful_results(&self.bulk_results(job_id, "successfulResults").await?)
    }

    /// `GET /jobs/ingest/{id}/failedResults`.
    pub async fn bulk_failed_results(
        &self,
        job_id: &str,
    ) -> Result<Vec<FailedRow>, SalesforceError> {
        parse_failed_results(&self.bulk_results(job_id, "failedResults").await?)
    }

    /// `GET /jobs/ingest/{id}/unprocessedrecords`.
    pub async fn bulk_unprocessed_records(
        &self,
        job_id: &str,
    ) -> Result<Vec<BTreeMap<String, String>>, SalesforceError> {
        parse_unprocessed_records(&self.bulk_results(job_id, "unprocessedrecords").await?)
    }

    /// The whole lifecycle: create, upload, close, wait, fetch all three result sets.
    /// A job that ends `Failed`/`Aborted` is [`SalesforceError::BulkJob`]; if the upload or
    /// close fails the job is aborted (best effort) before the error is returned.
    pub async fn bulk_ingest(
        &self,
        request: &IngestJobRequest,
        csv: Vec<u8>,
        policy: &PollPolicy,
    ) -> Result<IngestOutcome, SalesforceError> {
        let job = self.bulk_create_job(request).await?;
        let prepared = async {
            self.bulk_upload(&job.id, csv).await?;
            self.bulk_close(&job.id).await
        }
        .await;
        if let Err(e) = prepared {
            if let Err(abort_err) = self.bulk_abort(&job.id).await {
                tracing::warn!(job_id = %job.id, error = %abort_err, "could not abort bulk job after a failed upload");
            }
            return Err(e);
        }
        let info = self.bulk_wait(&job.id, policy).await?;
        if info.state != JobState::JobComplete {
            return Err(SalesforceError::BulkJob {
                job_id: info.id,
                state: info.state.as_str().to_owned(),
                error_message: info.error_message,
            });
        }
        let successful = self.bulk_successful_results(&job.id).await?;
        let failed = self.bulk_failed_results(&job.id).await?;
        let unprocessed = self.bulk_unprocessed_records(&job.id).await?;
        tracing::info!(
            job_id = %job.id,
            succeeded = successful.len(),
            failed = failed.len(),
            unprocessed = unprocessed.len(),
            "bulk ingest job finished"
        );
        Ok(IngestOutcome {
            job: info,
            successful,
            failed,
            unprocessed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn job_request_serialises_like_the_docs() {
        let req = IngestJobRequest::upsert("Contact", "TwoCo_Customer_Ref__c");
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"object":"Contact","operation":"upsert","externalIdFieldName":"TwoCo_Customer_Ref__c",
                   "contentType":"CSV","lineEnding":"LF","columnDelimiter":"COMMA"})
        );
        assert!(IngestJobRequest::new("Contact", BulkOperation::Upsert)
            .validate()
            .is_err());
        assert_eq!(
            serde_json::to_value(BulkOperation::HardDelete).unwrap(),
            "hardDelete"
        );
    }

    #[test]
    fn parses_doc_job_info() {
        let body = r#"{"id":"7505fEXAMPLE4C2AAM","operation":"insert","object":"Account","createdById":"0055fEXAMPLEtG4AAM",
 "createdDate":"2022-01-02T21:33:43.000+0000","systemModstamp":"2022-01-02T21:38:31.000+0000",
 "state":"JobComplete","concurrencyMode":"Parallel","contentType":"CSV","apiVersion":66.0,
 "jobType":"V2Ingest","lineEnding":"LF","columnDelimiter":"COMMA","numberRecordsProcessed":7,
 "numberRecordsFailed":0,"retries":0,"totalProcessingTime":886,"apiActiveProcessingTime":813,"apexProcessingTime":619}"#;
        let info: JobInfo = serde_json::from_str(body).unwrap();
        assert_eq!(info.state, JobState::JobComplete);
        assert!(info.state.is_terminal());
        assert_eq!(info.operation, Some(BulkOperation::Insert));
        assert_eq!(info.number_records_processed, 7);
        assert_eq!(info.total_processing_time, 886);
        let open: JobInfo = serde_json::from_str(r#"{"id":"750x","state":"Open"}"#).unwrap();
        assert!(!open.state.is_terminal());
        let odd: JobInfo = serde_json::from_str(r#"{"id":"750x","state":"Queued"}"#).unwrap();
        assert_eq!(odd.state, JobState::Other("Queued".into()));
    }

    #[test]
    fn parses_result_csvs() {
        let ok = b"\"sf__Id\",\"sf__Created\",Name,Ext__c\n001000000000001AAA,true,\"Acme, Inc.\",C1\n001000000000002AAA,false,Bluth,C2\n";
        let rows = parse_successful_results(ok).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].created && !rows[1].created);
        assert_eq!(rows[0].fields["Name"], "Acme, Inc.");
        let failed = b"\"sf__Id\",\"sf__Error\",Name,Ext__c\n,\"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 200 records: 001000000000001AAA:--\",X,C3\n,REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --,Y,C4\n";
        let rows = parse_failed_results(failed).unwrap();
        assert_eq!(rows[0].id, None);
        assert_eq!(rows[0].error.code, "UNABLE_TO_LOCK_ROW");
        assert_eq!(
            rows[0].error.message,
            "unable to obtain exclusive access to this record or 200 records: 001000000000001AAA"
        );
        assert_eq!(rows[0].error.class, ErrorClass::Transient);
        assert_eq!(rows[1].error.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(rows[1].error.fields, vec!["LastName".to_owned()]);
        assert_eq!(rows[1].error.class, ErrorClass::Permanent);
        assert_eq!(rows[1].fields["Ext__c"], "C4");
        assert!(parse_unprocessed_records(b"").unwrap().is_empty());
        assert!(parse_unprocessed_records(b"Name,Ext__c\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn csv_cells_follow_documented_rules() {
        let csv = records_to_csv(
            &[
                "Name",
                "Amount__c",
                "Note__c",
                "Account.Ref__c",
                "Active__c",
            ],
            &[
                json!({"Name":"=HYPERLINK(\"x\")","Amount__c":-12.5,"Note__c":null,
                       "Account":{"Ref__c":"C/1"},"Active__c":true}),
                json!({"Name":"a,b\n\"c\"","Amount__c":1}),
            ],
        )
        .unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(
            text,
            "Name,Amount__c,Note__c,Account.Ref__c,Active__c\n\
             \"=HYPERLINK(\"\"x\"\")\",-12.5,#N/A,C/1,true\n\
             \"a,b\n\"\"c\"\"\",1,,,\n"
        );
        assert!(records_to_csv(&["Bad Column"], &[]).is_err());
        assert!(records_to_csv(&["Name"], &[json!({"Name":{"x":1}})]).is_err());
    }

    proptest! {
        #[test]
        fn csv_round_trips(rows in proptest::collection::vec(
            (any::<String>(), "[=+\\-@]?[ -~\n\r\",]{0,20}"), 0..12))
        {
            let records: Vec<Value> = rows
                .iter()
                .map(|(a, b)| json!({"Name": a, "Description": b}))
                .collect();
            let csv = records_to_csv(&["Name", "Description"], &records).unwrap();
            let parsed = read_rows(&csv).unwrap();
            prop_assert_eq!(parsed.len(), rows.len());
            for (row, (a, b)) in parsed.iter().zip(&rows) {
                prop_assert_eq!(&row["Name"], a);
                prop_assert_eq!(&row["Description"], b);
            }
        }
    }
}
