//! Bulk API 2.0 ingest: create job, upload CSV (`PUT …/batches`), close (`UploadComplete`)
//! or abort, asynchronous processing on a tokio task (chunks of records per lock
//! acquisition), job info, and the `successfulResults/`, `failedResults/` and
//! `unprocessedrecords/` CSVs.
//!
//! Assumed where the reference is silent or UNCONFIRMED: several uploads to one open job
//! are appended (same header required); duplicate rules run for Bulk inserts; internal
//! batches of 10,000 records count against `DailyBulkApiBatches`; result CSVs quote every
//! value; error codes `INVALIDJOBSTATE` / `INVALIDJOB` / `INVALIDENTITY` for job-level
//! problems and `InvalidBatch : …` messages for jobs that fail as a whole.

use crate::error::SfError;
use crate::ids;
use crate::rest::{Body, Ctx, Resp};
use crate::store::{sf_now, Fields, WriteOpts};
use crate::Shared;
use axum::body::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Records per internal Bulk batch (for `DailyBulkApiBatches`).
pub const BATCH_RECORDS: usize = 10_000;

/// One ingest job.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub object: String,
    pub operation: String,
    pub ext_field: Option<String>,
    pub line_ending: String,
    pub delimiter: String,
    pub state: String,
    pub created_date: String,
    pub modstamp: String,
    pub version: String,
    pub api_version: f64,
    pub created_by: String,
    data: Vec<u8>,
    header: Option<Vec<String>>,
    pub processed: u64,
    pub failed: u64,
    pub error_message: Option<String>,
    success: Vec<(String, bool, Vec<String>)>,
    failures: Vec<(String, String, Vec<String>)>,
    unprocessed: Vec<Vec<String>>,
    total_ms: u64,
    aborted: bool,
}

impl Job {
    /// Job info JSON; `full` adds the processing counters (GET job info).
    pub fn info(&self, full: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.modstamp,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/{}/jobs/ingest/{}/batches", self.version, self.id),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
        });
        if let Some(f) = &self.ext_field {
            v["externalIdFieldName"] = json!(f);
        }
        if full {
            v["numberRecordsProcessed"] = json!(self.processed);
            v["numberRecordsFailed"] = json!(self.failed);
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(self.total_ms);
            v["apiActiveProcessingTime"] = json!(self.total_ms);
            v["apexProcessingTime"] = json!(0);
            if let Some(m) = &self.error_message {
                v["errorMessage"] = json!(m);
            }
        }
        v
    }

    fn delimiter_byte(&self) -> u8 {
        delimiter_byte(&self.delimiter).unwrap_or(b',')
    }
}

fn delimiter_byte(name: &str) -> Option<u8> {
    Some(match name {
        "COMMA" => b',',
        "TAB" => b'\t',
        "PIPE" => b'|',
        "SEMICOLON" => b';',
        "CARET" => b'^',
        "BACKQUOTE" => b'`',
        _ => return None,
    })
}

fn bulk_err(status: u16, code: &str, msg: impl Into<String>) -> Resp {
    Resp::json(status, json!([{"errorCode": code, "message": msg.into()}]))
}

fn terminal(state: &str) -> bool {
    matches!(state, "JobComplete" | "Failed" | "Aborted")
}

/// Routes `/jobs/ingest/...` (segments after `ingest`).
pub fn handle(
    sh: &Arc<Shared>,
    ctx: &Ctx,
    method: &str,
    segs: &[String],
    _query: &HashMap<String, String>,
    body: Bytes,
    content_type: Option<&str>,
) -> Resp {
    match (method, segs.len()) {
        ("POST", 0) => create(sh, ctx, &body),
        ("GET", 0) => {
            let jobs: Vec<Value> = sh.jobs.lock().values().map(|j| j.info(false)).collect();
            Resp::json(
                200,
                json!({"done": true, "records": jobs, "nextRecordsUrl": null}),
            )
        }
        (_, 0) => bulk_err(
            405,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are GET,POST"),
        ),
        _ => {
            let id = ids::normalize(&segs[0]).unwrap_or_else(|| segs[0].clone());
            if !sh.jobs.lock().contains_key(&id) {
                return bulk_err(404, "NOT_FOUND", "The requested resource does not exist");
            }
            match (
                method,
                segs.get(1).map(|s| s.to_ascii_lowercase()).as_deref(),
            ) {
                ("GET", None) => Resp::json(200, sh.jobs.lock()[&id].info(true)),
                ("PATCH", None) => set_state(sh, &id, &body),
                ("DELETE", None) => {
                    let mut jobs = sh.jobs.lock();
                    let state = jobs[&id].state.clone();
                    if !terminal(&state) && state != "UploadComplete" {
                        return bulk_err(
                            400,
                            "INVALIDJOBSTATE",
                            format!("Deleting a job in state {state} is not allowed"),
                        );
                    }
                    jobs.remove(&id);
                    Resp::empty(204)
                }
                ("PUT", Some("batches")) => upload(sh, &id, &body, content_type),
                ("GET", Some("successfulresults")) => results(sh, &id, Kind::Success),
                ("GET", Some("failedresults")) => results(sh, &id, Kind::Failed),
                ("GET", Some("unprocessedrecords")) => results(sh, &id, Kind::Unprocessed),
                _ => bulk_err(404, "NOT_FOUND", "The requested resource does not exist"),
            }
        }
    }
}

fn create(sh: &Arc<Shared>, ctx: &Ctx, body: &[u8]) -> Resp {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bulk_err(400, "JSON_PARSER_ERROR", e.to_string()),
    };
    let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(object) = get("object") else {
        return bulk_err(
            400,
            "INVALIDJOB",
            "InvalidJob : Required field object is missing",
        );
    };
    let operation = get("operation").unwrap_or_default();
    if !matches!(
        operation.as_str(),
        "insert" | "update" | "upsert" | "delete" | "hardDelete"
    ) {
        return bulk_err(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid operation: {operation}"),
        );
    }
    let content_type = get("contentType").unwrap_or_else(|| "CSV".into());
    if content_type != "CSV" {
        return bulk_err(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Unsupported contentType: {content_type}"),
        );
    }
    let line_ending = get("lineEnding").unwrap_or_else(|| "LF".into());
    if line_ending != "LF" && line_ending != "CRLF" {
        return bulk_err(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid lineEnding: {line_ending}"),
        );
    }
    let delimiter = get("columnDelimiter").unwrap_or_else(|| "COMMA".into());
    if delimiter_byte(&delimiter).is_none() {
        return bulk_err(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid columnDelimiter: {delimiter}"),
        );
    }
    let (canonical, ext_field, user) = {
        let st = sh.state.lock();
        let Some(obj) = st.schema.object(&object) else {
            return bulk_err(
                400,
                "INVALIDENTITY",
                format!("InvalidEntity : sObject type '{object}' is not supported."),
            );
        };
        let ext = match (operation.as_str(), get("externalIdFieldName")) {
            ("upsert", None) => {
                return bulk_err(400, "INVALIDJOB", "InvalidJob : External ID field is required for upsert");
            }
            ("upsert", Some(f)) => match obj.field(&f).filter(|f| f.usable_as_upsert_key()) {
                Some(field) => Some(field.name.clone()),
                None => {
                    return bulk_err(
                        400,
                        "INVALIDJOB",
                        format!("InvalidJob : Field name provided, {f} is not an External ID or indexed field for {}", obj.name),
                    )
                }
            },
            _ => None,
        };
        (obj.name.clone(), ext, st.integration_user_id.clone())
    };
    let now = sf_now();
    let id = {
        let mut jobs = sh.jobs.lock();
        let id = ids::make_id("750", jobs.len() as u64 + 1 + rand::random::<u32>() as u64);
        let job = Job {
            id: id.clone(),
            object: canonical,
            operation,
            ext_field,
            line_ending,
            delimiter,
            state: "Open".into(),
            created_date: now.clone(),
            modstamp: now,
            version: ctx.version.clone(),
            api_version: ctx.api_version,
            created_by: user,
            data: Vec::new(),
            header: None,
            processed: 0,
            failed: 0,
            error_message: None,
            success: Vec::new(),
            failures: Vec::new(),
            unprocessed: Vec::new(),
            total_ms: 0,
            aborted: false,
        };
        jobs.insert(id.clone(), job);
        id
    };
    tracing::debug!(job_id = %id, "bulk ingest job created");
    Resp::json(200, sh.jobs.lock()[&id].info(false))
}

fn upload(sh: &Arc<Shared>, id: &str, body: &[u8], content_type: Option<&str>) -> Resp {
    if !content_type.is_some_and(|c| c.to_ascii_lowercase().starts_with("text/csv")) {
        return bulk_err(
            400,
            "INVALIDJOB",
            "InvalidJob : Content type must be text/csv",
        );
    }
    let mut jobs = sh.jobs.lock();
    let Some(job) = jobs.get_mut(id) else {
        return bulk_err(404, "NOT_FOUND", "The requested resource does not exist");
    };
    if job.state != "Open" {
        return bulk_err(
            409,
            "INVALIDJOBSTATE",
            format!("Job {} is not open for uploads (state {})", id, job.state),
        );
    }
    let delim = job.delimiter_byte();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(true)
        .from_reader(body);
    let header: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => {
            return bulk_err(
                400,
                "INVALIDJOB",
                format!("InvalidBatch : Failed to parse CSV header: {e}"),
            )
        }
    };
    match &job.header {
        None => {
            job.header = Some(header);
            job.data.extend_from_slice(body);
        }
        Some(h) if *h == header => {
            // Append the rows of a further upload without its header line.
            let start = body
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(body.len());
            if !job.data.ends_with(b"\n") {
                job.data.push(b'\n');
            }
            job.data.extend_from_slice(&body[start..]);
        }
        Some(_) => {
            return bulk_err(
                400,
                "INVALIDJOB",
                "InvalidBatch : All uploads to one job must have the same header",
            );
        }
    }
    job.modstamp = sf_now();
    Resp::empty(201)
}

fn set_state(sh: &Arc<Shared>, id: &str, body: &[u8]) -> Resp {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bulk_err(400, "JSON_PARSER_ERROR", e.to_string()),
    };
    let wanted = v
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut jobs = sh.jobs.lock();
    let Some(job) = jobs.get_mut(id) else {
        return bulk_err(404, "NOT_FOUND", "The requested resource does not exist");
    };
    match wanted.as_str() {
        "UploadComplete" => {
            if job.state != "Open" {
                return bulk_err(
                    409,
                    "INVALIDJOBSTATE",
                    format!("Job {} cannot be closed from state {}", id, job.state),
                );
            }
            job.state = "UploadComplete".into();
            job.modstamp = sf_now();
            let info = job.info(false);
            drop(jobs);
            tokio::spawn(process(sh.clone(), id.to_string()));
            Resp::json(200, info)
        }
        "Aborted" => {
            if terminal(&job.state) {
                return bulk_err(
                    409,
                    "INVALIDJOBSTATE",
                    format!("Job {} cannot be aborted from state {}", id, job.state),
                );
            }
            job.state = "Aborted".into();
            job.aborted = true;
            job.modstamp = sf_now();
            Resp::json(200, job.info(false))
        }
        other => bulk_err(
            400,
            "INVALIDJOBSTATE",
            format!("Invalid state for a job update: {other}"),
        ),
    }
}

enum Column {
    Field(String),
    Rel { rel: String, key: String },
    Ignore,
}

fn plan(sh: &Shared, job_object: &str, header: &[String]) -> Result<Vec<Column>, String> {
    let st = sh.state.lock();
    let obj = st
        .schema
        .object(job_object)
        .ok_or_else(|| format!("InvalidBatch : Unknown object {job_object}"))?;
    let mut cols = Vec::new();
    for h in header {
        let h = h.trim();
        if let Some(f) = obj.field(h) {
            cols.push(Column::Field(f.name.clone()));
        } else if let Some((rel, key)) = h.split_once('.') {
            let Some(rf) = obj.relationship(rel) else {
                return Err(format!("InvalidBatch : Field name not found : {h}"));
            };
            cols.push(Column::Rel {
                rel: rf.relationship_name.clone().unwrap_or_default(),
                key: key.to_string(),
            });
        } else if h.is_empty() {
            cols.push(Column::Ignore);
        } else {
            return Err(format!("InvalidBatch : Field name not found : {h}"));
        }
    }
    Ok(cols)
}

fn row_body(cols: &[Column], row: &[String], skip: Option<&str>) -> Fields {
    let mut b = Fields::new();
    for (c, v) in cols.iter().zip(row) {
        match c {
            Column::Field(name) => {
                if skip.is_some_and(|s| s.eq_ignore_ascii_case(name)) || name == "Id" {
                    continue;
                }
                if v.is_empty() {
                    continue;
                }
                if v == "#N/A" {
                    b.insert(name.clone(), Value::Null);
                } else {
                    b.insert(name.clone(), Value::String(v.clone()));
                }
            }
            Column::Rel { rel, key } => {
                if !v.is_empty() {
                    b.insert(rel.clone(), json!({ key.clone(): v }));
                }
            }
            Column::Ignore => {}
        }
    }
    b
}

fn column_value(cols: &[Column], row: &[String], field: &str) -> Option<String> {
    cols.iter()
        .zip(row)
        .find(|(c, _)| matches!(c, Column::Field(n) if n.eq_ignore_ascii_case(field)))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

async fn process(sh: Arc<Shared>, id: String) {
    let started = Instant::now();
    let (data, object, operation, ext, delim, header) = {
        let mut jobs = sh.jobs.lock();
        let Some(job) = jobs.get_mut(&id) else { return };
        if job.aborted {
            return;
        }
        job.state = "InProgress".into();
        job.modstamp = sf_now();
        (
            std::mem::take(&mut job.data),
            job.object.clone(),
            job.operation.clone(),
            job.ext_field.clone(),
            job.delimiter_byte(),
            job.header.clone().unwrap_or_default(),
        )
    };
    let fail = |msg: String, rows: Vec<Vec<String>>| {
        let mut jobs = sh.jobs.lock();
        if let Some(job) = jobs.get_mut(&id) {
            job.state = "Failed".into();
            job.error_message = Some(msg);
            job.unprocessed = rows;
            job.modstamp = sf_now();
        }
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(true)
        .flexible(false)
        .from_reader(&data[..]);
    for rec in rdr.records() {
        match rec {
            Ok(r) => rows.push(r.iter().map(str::to_string).collect()),
            Err(e) => {
                fail(format!("InvalidBatch : Failed to parse CSV: {e}"), rows);
                return;
            }
        }
    }
    let cols = match plan(&sh, &object, &header) {
        Ok(c) => c,
        Err(m) => {
            fail(m, rows);
            return;
        }
    };
    let needs_id = matches!(operation.as_str(), "update" | "delete" | "hardDelete");
    if needs_id
        && column_value(&cols, &header, "Id").is_none()
        && !header.iter().any(|h| h.eq_ignore_ascii_case("Id"))
    {
        fail("InvalidBatch : Field name not found : Id".into(), rows);
        return;
    }
    if let Some(ext) = &ext {
        if !header.iter().any(|h| h.trim().eq_ignore_ascii_case(ext)) {
            fail(
                format!("InvalidBatch : The External ID field {ext} was not found in the header"),
                rows,
            );
            return;
        }
    }
    sh.usage
        .lock()
        .add_bulk_batches(rows.len().div_ceil(BATCH_RECORDS).max(1) as u64);
    let opts = WriteOpts::default();
    let chunk = sh.config.bulk_chunk_size.max(1);
    let mut i = 0;
    while i < rows.len() {
        if sh.jobs.lock().get(&id).is_none_or(|j| j.aborted) {
            let rest = rows[i..].to_vec();
            if let Some(job) = sh.jobs.lock().get_mut(&id) {
                job.unprocessed = rest;
            }
            sh.changed();
            return;
        }
        let end = (i + chunk).min(rows.len());
        let mut ok_rows = Vec::new();
        let mut bad_rows = Vec::new();
        {
            let mut st = sh.state.lock();
            for row in &rows[i..end] {
                let row_id = column_value(&cols, row, "Id");
                let result: Result<(String, bool), SfError> = match operation.as_str() {
                    "insert" => st
                        .insert(&object, &row_body(&cols, row, None), opts)
                        .map(|id| (id, true)),
                    "update" => match &row_id {
                        Some(rid) => st
                            .update(&object, rid, &row_body(&cols, row, None), opts)
                            .map(|_| (ids::normalize(rid).unwrap_or_else(|| rid.clone()), false)),
                        None => Err(SfError::bad(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                            &[],
                        )),
                    },
                    "upsert" => {
                        let key = ext.clone().unwrap_or_default();
                        let value = column_value(&cols, row, &key);
                        st.upsert(
                            &object,
                            &key,
                            value.as_deref(),
                            &row_body(&cols, row, Some(&key)),
                            opts,
                        )
                        .map(|o| (o.id, o.created))
                    }
                    _ => match &row_id {
                        Some(rid) => st
                            .delete(&object, rid)
                            .map(|_| (ids::normalize(rid).unwrap_or_else(|| rid.clone()), false)),
                        None => Err(SfError::bad(
                            "MISSING_ARGUMENT",
                            "Id not specified in a delete call",
                            &[],
                        )),
                    },
                };
                match result {
                    Ok((rid, created)) => ok_rows.push((rid, created, row.clone())),
                    Err(e) => {
                        bad_rows.push((row_id.unwrap_or_default(), e.bulk_text(), row.clone()))
                    }
                }
            }
        }
        {
            let mut jobs = sh.jobs.lock();
            if let Some(job) = jobs.get_mut(&id) {
                job.processed += (end - i) as u64;
                job.failed += bad_rows.len() as u64;
                job.success.extend(ok_rows);
                job.failures.extend(bad_rows);
                job.total_ms = started.elapsed().as_millis() as u64;
                job.modstamp = sf_now();
            }
        }
        sh.changed();
        i = end;
        tokio::task::yield_now().await;
    }
    let mut jobs = sh.jobs.lock();
    if let Some(job) = jobs.get_mut(&id) {
        if !job.aborted {
            job.state = "JobComplete".into();
        }
        job.total_ms = started.elapsed().as_millis() as u64;
        job.modstamp = sf_now();
        tracing::debug!(job_id = %id, processed = job.processed, failed = job.failed, "bulk ingest job finished");
    }
}

enum Kind {
    Success,
    Failed,
    Unprocessed,
}

fn results(sh: &Shared, id: &str, kind: Kind) -> Resp {
    let jobs = sh.jobs.lock();
    let Some(job) = jobs.get(id) else {
        return bulk_err(404, "NOT_FOUND", "The requested resource does not exist");
    };
    let header = job.header.clone().unwrap_or_default();
    let term: &[u8] = if job.line_ending == "CRLF" {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut w = csv::WriterBuilder::new()
        .delimiter(job.delimiter_byte())
        .quote_style(csv::QuoteStyle::Always)
        .terminator(if term.len() == 2 {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>, row: Vec<String>| {
        let _ = w.write_record(row);
    };
    match kind {
        Kind::Success => {
            let mut h = vec!["sf__Id".to_string(), "sf__Created".to_string()];
            h.extend(header.iter().cloned());
            write(&mut w, h);
            for (rid, created, row) in &job.success {
                let mut r = vec![rid.clone(), created.to_string()];
                r.extend(row.iter().cloned());
                write(&mut w, r);
            }
        }
        Kind::Failed => {
            let mut h = vec!["sf__Id".to_string(), "sf__Error".to_string()];
            h.extend(header.iter().cloned());
            write(&mut w, h);
            for (rid, err, row) in &job.failures {
                let mut r = vec![rid.clone(), err.clone()];
                r.extend(row.iter().cloned());
                write(&mut w, r);
            }
        }
        Kind::Unprocessed => {
            write(&mut w, header.clone());
            for row in &job.unprocessed {
                write(&mut w, row.clone());
            }
        }
    }
    let bytes = w.into_inner().unwrap_or_default();
    Resp {
        status: 200,
        body: Body::Text(String::from_utf8_lossy(&bytes).into_owned(), "text/csv"),
        headers: Vec::new(),
    }
}
