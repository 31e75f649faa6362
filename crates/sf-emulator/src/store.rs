//! The record store: every table of the org, indexes on external-id/unique/idLookup
//! fields, DML with Salesforce's validation rules, and an undo log for all-or-none
//! transactions (composite `allOrNone`, graphs, collections).
//!
//! Simplifications (documented, not hidden): one org-wide lock serialises all DML; the
//! standard contact duplicate rule matches on the normalised email only (the real matching
//! rule also weighs names); validation rules and triggers do not exist.

use crate::error::SfError;
use crate::ids;
use crate::org::{FieldDef, FieldType, ObjectDef, Schema, STAGES};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Map, Number, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A record's fields, keyed by canonical API name.
pub type Fields = Map<String, Value>;

/// Options of one write.
#[derive(Debug, Clone, Copy)]
pub struct WriteOpts {
    /// `Sforce-Duplicate-Rule-Header: allowSave=true`.
    pub allow_save: bool,
    /// API version of the request (e.g. 62.0).
    pub api_version: f64,
}

impl Default for WriteOpts {
    fn default() -> Self {
        WriteOpts {
            allow_save: false,
            api_version: crate::DEFAULT_API_VERSION,
        }
    }
}

/// One table.
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub live: BTreeMap<String, Fields>,
    pub deleted: BTreeMap<String, Fields>,
    /// field name → normalised key → ids.
    index: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

#[derive(Debug, Clone)]
enum Undo {
    Insert {
        object: String,
        id: String,
    },
    Update {
        object: String,
        id: String,
        old: Fields,
    },
    Delete {
        object: String,
        id: String,
        old: Fields,
    },
}

/// Result of an upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub id: String,
    pub created: bool,
}

/// The org's data.
pub struct OrgState {
    pub schema: Arc<Schema>,
    pub tables: HashMap<String, Table>,
    pub org_id: String,
    pub integration_user_id: String,
    seq: u64,
    case_number: u64,
    undo: Vec<Undo>,
    tx_depth: usize,
    /// Row-lock faults: normalised key (id or ext-id value) → remaining failing attempts.
    pub locks: HashMap<String, u32>,
    /// Incremented on every committed change (drives persistence).
    pub change_seq: u64,
    /// Currency code → (conversion rate, decimal places).
    pub currencies: Vec<(String, f64, i64, bool)>,
}

/// Timestamp in Salesforce's REST format.
pub fn sf_now() -> String {
    format_datetime(Utc::now())
}

pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Parses the datetime forms Salesforce accepts.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

fn index_key(f: &FieldDef, v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(if f.case_sensitive {
            s.clone()
        } else {
            s.to_lowercase()
        }),
        Value::Number(n) => Some(n.as_f64().map(|x| x.to_string()).unwrap_or_default()),
        other => Some(other.to_string()),
    }
}

fn indexed(f: &FieldDef) -> bool {
    f.name != "Id" && (f.unique || f.external_id || f.id_lookup)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
}

impl OrgState {
    pub fn new(schema: Arc<Schema>, username: &str, corporate: &str, active: &[String]) -> Self {
        let mut st = OrgState {
            tables: schema
                .objects()
                .iter()
                .map(|o| (o.name.clone(), Table::default()))
                .collect(),
            schema,
            org_id: ids::make_id("00D", 1),
            integration_user_id: String::new(),
            seq: 0,
            case_number: 1000,
            undo: Vec::new(),
            tx_depth: 0,
            locks: HashMap::new(),
            change_seq: 0,
            currencies: Vec::new(),
        };
        st.seed(username, corporate, active);
        st
    }

    fn next_id(&mut self, obj: &ObjectDef) -> String {
        self.seq += 1;
        ids::make_id(&obj.key_prefix, self.seq)
    }

    fn seed(&mut self, username: &str, corporate: &str, active: &[String]) {
        let uid = {
            let user = self.schema.object("User").expect("User").clone();
            let id = self.next_id(&user);
            let now = sf_now();
            let mut f = Fields::new();
            f.insert("Id".into(), json!(id));
            f.insert("Username".into(), json!(username));
            f.insert("FirstName".into(), json!("Integration"));
            f.insert("LastName".into(), json!("User"));
            f.insert("Name".into(), json!("Integration User"));
            f.insert("Email".into(), json!(username));
            f.insert("Alias".into(), json!("integ"));
            f.insert("IsActive".into(), json!(true));
            f.insert("IsDeleted".into(), json!(false));
            for k in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
                f.insert(k.into(), json!(now));
            }
            f.insert("CreatedById".into(), json!(id));
            f.insert("LastModifiedById".into(), json!(id));
            if self.schema.multi_currency {
                f.insert("CurrencyIsoCode".into(), json!(corporate));
            }
            self.raw_insert("User", f);
            id
        };
        self.integration_user_id = uid;
        let opts = WriteOpts::default();
        let mut pb = Fields::new();
        pb.insert("Name".into(), json!("Standard Price Book"));
        pb.insert("IsActive".into(), json!(true));
        if let Ok(id) = self.insert("Pricebook2", &pb, opts) {
            if let Some(r) = self
                .tables
                .get_mut("Pricebook2")
                .and_then(|t| t.live.get_mut(&id))
            {
                r.insert("IsStandard".into(), json!(true));
            }
        }
        if self.schema.multi_currency {
            let mut codes: Vec<String> = vec![corporate.to_string()];
            for c in active {
                if !codes.contains(c) {
                    codes.push(c.clone());
                }
            }
            for code in codes {
                let (rate, places) = default_rate(&code);
                let corporate_flag = code == corporate;
                let rate = if corporate_flag { 1.0 } else { rate };
                let mut f = Fields::new();
                f.insert("IsoCode".into(), json!(code));
                f.insert("ConversionRate".into(), json!(rate));
                f.insert("DecimalPlaces".into(), json!(places));
                f.insert("IsActive".into(), json!(true));
                if let Ok(id) = self.insert("CurrencyType", &f, opts) {
                    if let Some(r) = self
                        .tables
                        .get_mut("CurrencyType")
                        .and_then(|t| t.live.get_mut(&id))
                    {
                        r.insert("IsCorporate".into(), json!(corporate_flag));
                    }
                }
                self.currencies.push((code, rate, places, corporate_flag));
            }
        }
        self.change_seq = 0;
    }

    // ----- transactions -------------------------------------------------------------

    /// Starts a (nested) transaction; returns the savepoint.
    pub fn begin(&mut self) -> usize {
        self.tx_depth += 1;
        self.undo.len()
    }

    /// Ends a transaction keeping its changes.
    pub fn commit(&mut self, _savepoint: usize) {
        self.tx_depth = self.tx_depth.saturating_sub(1);
        if self.tx_depth == 0 {
            self.undo.clear();
        }
    }

    /// Ends a transaction undoing every change made since `savepoint`.
    pub fn rollback(&mut self, savepoint: usize) {
        while self.undo.len() > savepoint {
            let Some(u) = self.undo.pop() else { break };
            match u {
                Undo::Insert { object, id } => {
                    if let Some(old) = self.table_mut(&object).live.remove(&id) {
                        self.unindex(&object, &id, &old);
                    }
                }
                Undo::Update { object, id, old } => {
                    let cur = self.table_mut(&object).live.remove(&id);
                    if let Some(cur) = cur {
                        self.unindex(&object, &id, &cur);
                    }
                    self.index_record(&object, &id, &old);
                    self.table_mut(&object).live.insert(id, old);
                }
                Undo::Delete { object, id, old } => {
                    self.table_mut(&object).deleted.remove(&id);
                    self.index_record(&object, &id, &old);
                    self.table_mut(&object).live.insert(id, old);
                }
            }
        }
        self.tx_depth = self.tx_depth.saturating_sub(1);
        if self.tx_depth == 0 {
            self.undo.clear();
        }
    }

    fn log(&mut self, u: Undo) {
        if self.tx_depth > 0 {
            self.undo.push(u);
        }
        self.change_seq += 1;
    }

    // ----- raw access ---------------------------------------------------------------

    fn table_mut(&mut self, object: &str) -> &mut Table {
        self.tables.entry(object.to_string()).or_default()
    }

    /// A live record by id (any object).
    pub fn get(&self, id: &str) -> Option<(&ObjectDef, &Fields)> {
        let obj = self.schema.object_for_prefix(ids::prefix_of(id))?;
        let rec = self.tables.get(&obj.name)?.live.get(id)?;
        Some((obj, rec))
    }

    /// Whether an id names a deleted record.
    pub fn is_deleted(&self, id: &str) -> bool {
        self.schema
            .object_for_prefix(ids::prefix_of(id))
            .and_then(|o| self.tables.get(&o.name))
            .is_some_and(|t| t.deleted.contains_key(id))
    }

    fn index_record(&mut self, object: &str, id: &str, rec: &Fields) {
        let schema = self.schema.clone();
        let Some(obj) = schema.object(object) else {
            return;
        };
        let table = self.table_mut(object);
        for f in obj.fields.iter().filter(|f| indexed(f)) {
            if let Some(k) = rec.get(&f.name).and_then(|v| index_key(f, v)) {
                table
                    .index
                    .entry(f.name.clone())
                    .or_default()
                    .entry(k)
                    .or_default()
                    .insert(id.to_string());
            }
        }
    }

    fn unindex(&mut self, object: &str, id: &str, rec: &Fields) {
        let schema = self.schema.clone();
        let Some(obj) = schema.object(object) else {
            return;
        };
        let table = self.table_mut(object);
        for f in obj.fields.iter().filter(|f| indexed(f)) {
            if let Some(k) = rec.get(&f.name).and_then(|v| index_key(f, v)) {
                if let Some(m) = table.index.get_mut(&f.name) {
                    if let Some(set) = m.get_mut(&k) {
                        set.remove(id);
                        if set.is_empty() {
                            m.remove(&k);
                        }
                    }
                }
            }
        }
    }

    fn raw_insert(&mut self, object: &str, rec: Fields) {
        let id = text_of(rec.get("Id").unwrap_or(&Value::Null));
        self.index_record(object, &id, &rec);
        self.table_mut(object).live.insert(id.clone(), rec);
        self.log(Undo::Insert {
            object: object.to_string(),
            id,
        });
    }

    fn raw_replace(&mut self, object: &str, id: &str, rec: Fields) {
        let old = self.table_mut(object).live.remove(id);
        if let Some(old) = &old {
            self.unindex(object, id, old);
        }
        self.index_record(object, id, &rec);
        self.table_mut(object).live.insert(id.to_string(), rec);
        if let Some(old) = old {
            self.log(Undo::Update {
                object: object.to_string(),
                id: id.to_string(),
                old,
            });
        }
    }

    /// Restores tables from a snapshot (indexes rebuilt, counters advanced past every id).
    pub fn restore(
        &mut self,
        tables: HashMap<String, (Vec<Fields>, Vec<Fields>)>,
        case_number: u64,
    ) {
        for t in self.tables.values_mut() {
            *t = Table::default();
        }
        let mut max_seq = self.seq;
        for (name, (live, deleted)) in tables {
            let Some(obj) = self.schema.object(&name).map(|o| o.name.clone()) else {
                continue;
            };
            for rec in live {
                let id = text_of(rec.get("Id").unwrap_or(&Value::Null));
                max_seq = max_seq.max(ids::sequence_of(&id).unwrap_or(0));
                if obj == "User"
                    && rec.get("Username").is_some()
                    && self.integration_user_id.is_empty()
                {
                    self.integration_user_id = id.clone();
                }
                self.index_record(&obj, &id, &rec);
                self.table_mut(&obj).live.insert(id, rec);
            }
            for rec in deleted {
                let id = text_of(rec.get("Id").unwrap_or(&Value::Null));
                max_seq = max_seq.max(ids::sequence_of(&id).unwrap_or(0));
                self.table_mut(&obj).deleted.insert(id, rec);
            }
        }
        if let Some(first_user) = self
            .tables
            .get("User")
            .and_then(|t| t.live.keys().next().cloned())
        {
            self.integration_user_id = first_user;
        }
        self.seq = max_seq;
        self.case_number = self.case_number.max(case_number);
        self.undo.clear();
        self.tx_depth = 0;
    }

    pub fn case_number(&self) -> u64 {
        self.case_number
    }

    /// Ids of live records whose key field equals `value` (per the field's case rules).
    pub fn find_by_key(&self, object: &str, field: &FieldDef, value: &str) -> Vec<String> {
        let Some(table) = self.tables.get(object) else {
            return Vec::new();
        };
        if field.name == "Id" {
            return ids::normalize(value)
                .filter(|id| table.live.contains_key(id))
                .into_iter()
                .collect();
        }
        let key = if field.ftype.is_number() {
            match value.parse::<f64>() {
                Ok(x) => x.to_string(),
                Err(_) => return Vec::new(),
            }
        } else if field.case_sensitive {
            value.to_string()
        } else {
            value.to_lowercase()
        };
        if indexed(field) {
            table
                .index
                .get(&field.name)
                .and_then(|m| m.get(&key))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            table
                .live
                .iter()
                .filter(|(_, r)| {
                    r.get(&field.name)
                        .and_then(|v| index_key(field, v))
                        .as_deref()
                        == Some(&key)
                })
                .map(|(id, _)| id.clone())
                .collect()
        }
    }

    // ----- lock faults ------------------------------------------------------------

    fn check_lock(&mut self, keys: &[String]) -> Result<(), SfError> {
        if self.locks.is_empty() {
            return Ok(());
        }
        for k in keys {
            let lk = k.to_lowercase();
            if let Some(n) = self.locks.get_mut(&lk) {
                if *n > 0 {
                    *n -= 1;
                    if *n == 0 {
                        self.locks.remove(&lk);
                    }
                    return Err(SfError::bad(
                        "UNABLE_TO_LOCK_ROW",
                        format!(
                            "unable to obtain exclusive access to this record or 1 records: {k}"
                        ),
                        &[],
                    ));
                }
            }
        }
        Ok(())
    }

    fn lock_keys(&self, obj: &ObjectDef, id: Option<&str>, rec: &Fields) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        if let Some(id) = id {
            keys.push(id.to_string());
            keys.push(id[..15.min(id.len())].to_string());
        }
        for f in obj.fields.iter().filter(|f| f.external_id) {
            if let Some(Value::String(s)) = rec.get(&f.name) {
                keys.push(s.clone());
            }
        }
        keys
    }

    // ----- value conversion ---------------------------------------------------------

    /// Converts one JSON value for a field, applying type, length and format checks.
    fn convert(&self, f: &FieldDef, v: &Value) -> Result<Value, SfError> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let bad_type = || {
            SfError::bad(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                format!("{}: value not of required type: {}", f.label, text_of(v)),
                &[&f.name],
            )
        };
        match f.ftype {
            t if t.is_text() => {
                let s = match v {
                    Value::String(s) if t == FieldType::Email => s.trim().to_string(),
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(bad_type()),
                };
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                if f.length > 0 && s.chars().count() > f.length as usize {
                    return Err(SfError::bad(
                        "STRING_TOO_LONG",
                        format!(
                            "{}: data value too large: {} (max length={})",
                            f.label, s, f.length
                        ),
                        &[&f.name],
                    ));
                }
                if t == FieldType::Email && !email_ok(&s) {
                    return Err(SfError::bad(
                        "INVALID_EMAIL_ADDRESS",
                        format!("{}: invalid email address: {}", f.label, s),
                        &[&f.name],
                    ));
                }
                if t == FieldType::Picklist && f.restricted_picklist {
                    match f
                        .picklist_values
                        .iter()
                        .find(|p| p.eq_ignore_ascii_case(&s))
                    {
                        Some(p) => return Ok(Value::String(p.clone())),
                        None => {
                            return Err(SfError::bad(
                                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                format!(
                                    "{}: bad value for restricted picklist field: {}",
                                    f.label, s
                                ),
                                &[&f.name],
                            ))
                        }
                    }
                }
                Ok(Value::String(s))
            }
            FieldType::Boolean => match v {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => {
                    Ok(Value::Bool(true))
                }
                Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => {
                    Ok(Value::Bool(false))
                }
                _ => Err(bad_type()),
            },
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent => {
                let x = match v {
                    Value::Number(n) => n.as_f64().ok_or_else(bad_type)?,
                    Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad_type())?,
                    _ => return Err(bad_type()),
                };
                if !x.is_finite() {
                    return Err(bad_type());
                }
                let int_digits = f.precision.saturating_sub(f.scale).max(1);
                if f.precision > 0 && x.abs() >= 10f64.powi(int_digits as i32) {
                    return Err(SfError::bad(
                        "NUMBER_OUTSIDE_VALID_RANGE",
                        format!(
                            "{}: value outside of valid range on numeric field: {}",
                            f.label,
                            text_of(v)
                        ),
                        &[&f.name],
                    ));
                }
                if f.ftype == FieldType::Int {
                    if x.fract() != 0.0 {
                        return Err(bad_type());
                    }
                    return Ok(Value::Number(Number::from(x as i64)));
                }
                let factor = 10f64.powi(f.scale.min(15) as i32);
                let rounded = (x * factor).round() / factor;
                Ok(Number::from_f64(rounded)
                    .map(Value::Number)
                    .unwrap_or(Value::Null))
            }
            FieldType::Date => {
                let Value::String(s) = v else {
                    return Err(bad_type());
                };
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .or_else(|| parse_datetime(s).map(|t| t.date_naive()))
                    .ok_or_else(bad_type)?;
                Ok(Value::String(d.format("%Y-%m-%d").to_string()))
            }
            FieldType::Datetime => {
                let Value::String(s) = v else {
                    return Err(bad_type());
                };
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                let t = parse_datetime(s)
                    .or_else(|| {
                        NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .ok()
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                            .map(|t| t.and_utc())
                    })
                    .ok_or_else(bad_type)?;
                Ok(Value::String(format_datetime(t)))
            }
            FieldType::Reference | FieldType::Id => {
                let Value::String(s) = v else {
                    return Err(bad_type());
                };
                if s.is_empty() {
                    return Ok(Value::Null);
                }
                let id = ids::normalize(s).ok_or_else(|| {
                    SfError::bad(
                        "MALFORMED_ID",
                        format!("{}: id value of incorrect type: {}", f.label, s),
                        &[&f.name],
                    )
                })?;
                let target = self.schema.object_for_prefix(ids::prefix_of(&id));
                let ok_type = target.is_some_and(|o| f.reference_to.iter().any(|r| r == &o.name));
                if !ok_type {
                    return Err(SfError::bad(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("{}: id value of incorrect type: {}", f.label, s),
                        &[&f.name],
                    ));
                }
                if self.get(&id).is_none() {
                    if self.is_deleted(&id) {
                        return Err(SfError::bad(
                            "ENTITY_IS_DELETED",
                            "entity is deleted",
                            &[&f.name],
                        ));
                    }
                    return Err(SfError::bad(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &[],
                    ));
                }
                Ok(Value::String(id))
            }
            _ => Ok(v.clone()),
        }
    }

    /// Turns a request body into canonical field values, resolving relationship
    /// external-id references (`"Account": {"Ext__c": "X"}`).
    fn prepare(&self, obj: &ObjectDef, body: &Fields, creating: bool) -> Result<Fields, SfError> {
        let mut out = Fields::new();
        let mut not_writable: Vec<String> = Vec::new();
        let mut rel_targets: Vec<(String, String)> = Vec::new();
        for (k, v) in body {
            if k == "attributes" {
                continue;
            }
            if let Some(f) = obj.field(k) {
                if f.name == "Id" {
                    if v.is_null() {
                        continue;
                    }
                    if creating {
                        return Err(SfError::bad(
                            "INVALID_FIELD",
                            "cannot specify Id in an insert call",
                            &[],
                        ));
                    }
                    continue;
                }
                let writable = if creating { f.createable } else { f.updateable };
                if !writable {
                    not_writable.push(f.name.clone());
                    continue;
                }
                let conv = self.convert(f, v)?;
                out.insert(f.name.clone(), conv);
            } else if let (Some(f), Value::Object(m)) = (obj.relationship(k), v) {
                rel_targets.push((f.name.clone(), k.clone()));
                let writable = if creating { f.createable } else { f.updateable };
                if !writable {
                    not_writable.push(f.name.clone());
                    continue;
                }
                let id = self.resolve_relationship(f, m)?;
                out.insert(f.name.clone(), Value::String(id));
            } else {
                return Err(SfError::bad(
                    "INVALID_FIELD",
                    format!("No such column '{}' on sobject of type {}", k, obj.name),
                    &[],
                ));
            }
        }
        for (field, rel) in rel_targets {
            if body.keys().any(|k| k.eq_ignore_ascii_case(&field)) {
                return Err(SfError::bad(
                    "INVALID_FIELD",
                    format!(
                        "Cannot specify both an external ID reference {} and a salesforce id, {}",
                        rel, field
                    ),
                    &[],
                ));
            }
        }
        if !not_writable.is_empty() {
            let names: Vec<&str> = not_writable.iter().map(String::as_str).collect();
            return Err(SfError::bad(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    names.join(", ")
                ),
                &names,
            ));
        }
        Ok(out)
    }

    fn resolve_relationship(&self, f: &FieldDef, m: &Fields) -> Result<String, SfError> {
        let parent_name = m
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| f.reference_to.first().cloned())
            .unwrap_or_default();
        let parent = self
            .schema
            .object(&parent_name)
            .filter(|p| f.reference_to.iter().any(|r| r == &p.name))
            .ok_or_else(|| {
                SfError::bad(
                    "INVALID_FIELD",
                    format!(
                        "Invalid type {} for relationship {}",
                        parent_name,
                        f.relationship_name.clone().unwrap_or_default()
                    ),
                    &[],
                )
            })?;
        let mut keys = m.iter().filter(|(k, _)| k.as_str() != "attributes");
        let (Some((key, val)), None) = (keys.next(), keys.next()) else {
            return Err(SfError::bad(
                "INVALID_FIELD",
                format!(
                    "The relationship {} must specify exactly one external ID field",
                    f.relationship_name.clone().unwrap_or_default()
                ),
                &[],
            ));
        };
        let kf = parent
            .field(key)
            .filter(|kf| kf.usable_as_upsert_key())
            .ok_or_else(|| {
                SfError::bad(
                    "INVALID_FIELD",
                    format!(
                        "Field name provided, {} is not an External ID or indexed field for {}",
                        key, parent.name
                    ),
                    &[],
                )
            })?;
        let value = text_of(val);
        let found = self.find_by_key(&parent.name, kf, &value);
        match found.len() {
            1 => Ok(found[0].clone()),
            0 => Err(SfError::bad(
                "INVALID_FIELD",
                format!(
                    "Foreign key external ID: {} not found for field {} in entity {}",
                    value, kf.name, parent.name
                ),
                &[],
            )),
            _ => Err(SfError::bad(
                "INVALID_FIELD",
                format!(
                    "More than 1 record found for external id field: {} in entity {}",
                    kf.name, parent.name
                ),
                &[],
            )),
        }
    }

    // ----- DML ------------------------------------------------------------------------

    /// Inserts a record; returns its 18-character id.
    pub fn insert(
        &mut self,
        object: &str,
        body: &Fields,
        opts: WriteOpts,
    ) -> Result<String, SfError> {
        let schema = self.schema.clone();
        let obj = schema.object(object).ok_or_else(|| {
            SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
        })?;
        let mut rec = self.prepare(obj, body, true)?;
        self.apply_defaults(obj, &mut rec);
        self.derive(obj, &mut rec, None)?;
        check_required(obj, &rec)?;
        self.check_unique(obj, None, &rec)?;
        self.object_rules(obj, None, &mut rec)?;
        if !opts.allow_save {
            self.duplicate_rule(obj, &rec, opts)?;
        }
        let keys = self.lock_keys(obj, None, &rec);
        self.check_lock(&keys)?;
        let id = self.next_id(obj);
        let now = sf_now();
        rec.insert("Id".into(), json!(id));
        rec.insert("IsDeleted".into(), json!(false));
        for k in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            rec.insert(k.into(), json!(now));
        }
        rec.insert("CreatedById".into(), json!(self.integration_user_id));
        rec.insert("LastModifiedById".into(), json!(self.integration_user_id));
        rec.retain(|_, v| !v.is_null());
        self.raw_insert(&obj.name, rec.clone());
        self.after_write(obj, &rec)?;
        Ok(id)
    }

    /// Updates a record by id.
    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        body: &Fields,
        _opts: WriteOpts,
    ) -> Result<(), SfError> {
        let schema = self.schema.clone();
        let obj = schema.object(object).ok_or_else(SfError::not_found)?;
        let norm = ids::normalize(id)
            .filter(|n| ids::prefix_of(n) == obj.key_prefix)
            .ok_or_else(|| {
                SfError::bad(
                    "MALFORMED_ID",
                    format!("{} ID: id value of incorrect type: {}", obj.label, id),
                    &["Id"],
                )
            })?;
        let Some(existing) = self
            .tables
            .get(&obj.name)
            .and_then(|t| t.live.get(&norm))
            .cloned()
        else {
            if self.is_deleted(&norm) {
                return Err(SfError::bad("ENTITY_IS_DELETED", "entity is deleted", &[]));
            }
            return Err(SfError::new(
                404,
                "NOT_FOUND",
                "The requested resource does not exist",
            ));
        };
        let changes = self.prepare(obj, body, false)?;
        let mut rec = existing.clone();
        for (k, v) in changes.iter() {
            rec.insert(k.clone(), v.clone());
        }
        self.derive(obj, &mut rec, Some((&existing, &changes)))?;
        check_required(obj, &rec)?;
        self.check_unique(obj, Some(&norm), &rec)?;
        self.object_rules(obj, Some(&existing), &mut rec)?;
        let keys = self.lock_keys(obj, Some(&norm), &rec);
        self.check_lock(&keys)?;
        let now = sf_now();
        rec.insert("LastModifiedDate".into(), json!(now));
        rec.insert("SystemModstamp".into(), json!(now));
        rec.insert("LastModifiedById".into(), json!(self.integration_user_id));
        rec.retain(|_, v| !v.is_null());
        self.raw_replace(&obj.name, &norm, rec.clone());
        self.after_write(obj, &rec)?;
        Ok(())
    }

    /// Upserts by an external-id (or idLookup, or `Id`) field.
    pub fn upsert(
        &mut self,
        object: &str,
        key_field: &str,
        value: Option<&str>,
        body: &Fields,
        opts: WriteOpts,
    ) -> Result<UpsertOutcome, SfError> {
        let schema = self.schema.clone();
        let obj = schema.object(object).ok_or_else(SfError::not_found)?;
        let kf = obj
            .field(key_field)
            .filter(|f| f.usable_as_upsert_key())
            .ok_or_else(|| {
                SfError::new(
                    404,
                    "NOT_FOUND",
                    format!("Provided external ID field does not exist or is not accessible: {key_field}"),
                )
            })?;
        let value = value.map(str::to_string).filter(|v| !v.is_empty());
        if kf.name == "Id" {
            return match value {
                None => Ok(UpsertOutcome {
                    id: self.insert(&obj.name, body, opts)?,
                    created: true,
                }),
                Some(v) => {
                    self.update(&obj.name, &v, body, opts)?;
                    Ok(UpsertOutcome {
                        id: ids::normalize(&v).unwrap_or(v),
                        created: false,
                    })
                }
            };
        }
        let Some(value) = value else {
            return Err(SfError::bad(
                "MISSING_ARGUMENT",
                format!("{} not specified", kf.name),
                &[],
            ));
        };
        // The key in the body, when repeated, must agree with the URL value (assumption).
        let mut body = body.clone();
        let body_key = body
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&kf.name))
            .cloned();
        if let Some(bk) = body_key {
            let bv = text_of(body.get(&bk).unwrap_or(&Value::Null));
            let same = if kf.case_sensitive {
                bv == value
            } else {
                bv.eq_ignore_ascii_case(&value)
            };
            if !same && !bv.is_empty() {
                return Err(SfError::bad(
                    "INVALID_FIELD",
                    format!(
                        "The value of the external ID field in the request body ({bv}) doesn't match the value in the request URL ({value})"
                    ),
                    &[],
                ));
            }
            body.remove(&bk);
        }
        let found = self.find_by_key(&obj.name, kf, &value);
        match found.len() {
            0 => {
                // A lock fault on the key value applies before the insert.
                self.check_lock(std::slice::from_ref(&value))?;
                body.insert(kf.name.clone(), Value::String(value));
                let id = self.insert(&obj.name, &body, opts)?;
                Ok(UpsertOutcome { id, created: true })
            }
            1 => {
                let id = found[0].clone();
                self.check_lock(std::slice::from_ref(&value))?;
                self.update(&obj.name, &id, &body, opts)?;
                Ok(UpsertOutcome { id, created: false })
            }
            _ => {
                let mut e = SfError::bad(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{}: more than one record found for external id field: [{}]",
                        kf.name,
                        found.join(", ")
                    ),
                    &[],
                );
                e.status = 300;
                e.multiple = found;
                Err(e)
            }
        }
    }

    /// Deletes a record (moves it to the recycle bin).
    pub fn delete(&mut self, object: &str, id: &str) -> Result<(), SfError> {
        let schema = self.schema.clone();
        let obj = schema.object(object).ok_or_else(SfError::not_found)?;
        let norm = ids::normalize(id).filter(|n| ids::prefix_of(n) == obj.key_prefix);
        let Some(norm) = norm else {
            return Err(SfError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {id}"),
            ));
        };
        let Some(existing) = self
            .tables
            .get(&obj.name)
            .and_then(|t| t.live.get(&norm))
            .cloned()
        else {
            if self.is_deleted(&norm) {
                return Err(SfError::new(404, "ENTITY_IS_DELETED", "entity is deleted"));
            }
            return Err(SfError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {id}"),
            ));
        };
        let keys = self.lock_keys(obj, Some(&norm), &existing);
        self.check_lock(&keys)?;
        self.delete_cascade(&obj.name, &norm);
        Ok(())
    }

    fn delete_cascade(&mut self, object: &str, id: &str) {
        let Some(old) = self.table_mut(object).live.remove(id) else {
            return;
        };
        self.unindex(object, id, &old);
        let mut gone = old.clone();
        gone.insert("IsDeleted".into(), json!(true));
        gone.insert("SystemModstamp".into(), json!(sf_now()));
        self.table_mut(object).deleted.insert(id.to_string(), gone);
        self.log(Undo::Delete {
            object: object.to_string(),
            id: id.to_string(),
            old: old.clone(),
        });
        // Master-detail children go with their parent; lookups are cleared.
        let children: Vec<(String, String)> = match object {
            "Opportunity" => self.children("OpportunityLineItem", "OpportunityId", id),
            "Campaign" => self.children("CampaignMember", "CampaignId", id),
            "Contact" => self.children("CampaignMember", "ContactId", id),
            "Lead" => self.children("CampaignMember", "LeadId", id),
            _ => Vec::new(),
        };
        for (o, cid) in children {
            self.delete_cascade(&o, &cid);
        }
        if object == "OpportunityLineItem" {
            if let Some(Value::String(opp)) = old.get("OpportunityId") {
                let opp = opp.clone();
                self.rollup_opportunity(&opp);
            }
        }
    }

    fn children(&self, object: &str, field: &str, parent: &str) -> Vec<(String, String)> {
        self.tables
            .get(object)
            .map(|t| {
                t.live
                    .iter()
                    .filter(|(_, r)| r.get(field).and_then(Value::as_str) == Some(parent))
                    .map(|(id, _)| (object.to_string(), id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- rules ----------------------------------------------------------------------

    fn apply_defaults(&self, obj: &ObjectDef, rec: &mut Fields) {
        for f in &obj.fields {
            if rec.contains_key(&f.name) {
                continue;
            }
            if f.ftype == FieldType::Boolean && f.createable {
                rec.insert(f.name.clone(), json!(false));
            } else if let Some(d) = &f.default_picklist_value {
                rec.insert(f.name.clone(), json!(d));
            } else if f.name == "OwnerId" {
                rec.insert(f.name.clone(), json!(self.integration_user_id));
            }
        }
        for f in &obj.fields {
            if f.ftype == FieldType::Boolean && !rec.contains_key(&f.name) && f.name != "IsDeleted"
            {
                rec.insert(f.name.clone(), json!(false));
            }
        }
    }

    fn derive(
        &mut self,
        obj: &ObjectDef,
        rec: &mut Fields,
        prior: Option<(&Fields, &Fields)>,
    ) -> Result<(), SfError> {
        match obj.name.as_str() {
            "Contact" | "Lead" | "User" => {
                let first = rec.get("FirstName").and_then(Value::as_str).unwrap_or("");
                let last = rec.get("LastName").and_then(Value::as_str).unwrap_or("");
                let name = if first.is_empty() {
                    last.to_string()
                } else {
                    format!("{first} {last}")
                };
                rec.insert("Name".into(), json!(name));
            }
            "Opportunity" => {
                let stage = rec
                    .get("StageName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let stage_changed = prior.is_none_or(|(_, ch)| ch.contains_key("StageName"));
                if let Some(s) = STAGES.iter().find(|s| s.0 == stage) {
                    rec.insert("IsClosed".into(), json!(s.2));
                    rec.insert("IsWon".into(), json!(s.3));
                    let prob_given = prior.map_or(rec.contains_key("Probability"), |(_, ch)| {
                        ch.contains_key("Probability")
                    });
                    if stage_changed && !prob_given {
                        rec.insert("Probability".into(), json!(s.1));
                    }
                    let fc_given = prior
                        .map_or(rec.contains_key("ForecastCategoryName"), |(_, ch)| {
                            ch.contains_key("ForecastCategoryName")
                        });
                    if stage_changed && !fc_given {
                        rec.insert("ForecastCategoryName".into(), json!(s.4));
                    }
                }
            }
            "Task" => {
                let closed = rec.get("Status").and_then(Value::as_str) == Some("Completed");
                rec.insert("IsClosed".into(), json!(closed));
            }
            "Case" => {
                let closed = rec.get("Status").and_then(Value::as_str) == Some("Closed");
                rec.insert("IsClosed".into(), json!(closed));
                if prior.is_none() {
                    self.case_number += 1;
                    rec.insert(
                        "CaseNumber".into(),
                        json!(format!("{:08}", self.case_number)),
                    );
                }
            }
            "CampaignMember" => {
                let responded = rec.get("Status").and_then(Value::as_str) == Some("Responded");
                rec.insert("HasResponded".into(), json!(responded));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_unique(
        &self,
        obj: &ObjectDef,
        self_id: Option<&str>,
        rec: &Fields,
    ) -> Result<(), SfError> {
        let Some(table) = self.tables.get(&obj.name) else {
            return Ok(());
        };
        for f in obj.fields.iter().filter(|f| f.unique && f.name != "Id") {
            let Some(k) = rec.get(&f.name).and_then(|v| index_key(f, v)) else {
                continue;
            };
            if let Some(other) = table
                .index
                .get(&f.name)
                .and_then(|m| m.get(&k))
                .and_then(|s| s.iter().find(|id| Some(id.as_str()) != self_id))
            {
                return Err(SfError::bad(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {}",
                        f.name, other
                    ),
                    &[],
                ));
            }
        }
        Ok(())
    }

    fn duplicate_rule(
        &self,
        obj: &ObjectDef,
        rec: &Fields,
        opts: WriteOpts,
    ) -> Result<(), SfError> {
        if obj.name != "Contact" {
            return Ok(());
        }
        let Some(email) = rec.get("Email").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(f) = obj.field("Email") else {
            return Ok(());
        };
        let matches = self.find_by_key("Contact", f, email.trim());
        let Some(first) = matches.first() else {
            return Ok(());
        };
        let version = format!("v{:.1}", opts.api_version);
        let msg =
            "You're creating a duplicate record. We recommend you use an existing record instead.";
        let match_records: Vec<Value> = matches
            .iter()
            .map(|id| {
                json!({
                    "additionalInformation": [],
                    "fieldDiffs": [],
                    "matchConfidence": 100.0,
                    "record": {
                        "attributes": {"type": "Contact", "url": format!("/services/data/{version}/sobjects/Contact/{id}")},
                        "Id": id
                    }
                })
            })
            .collect();
        let mut e = SfError::new(400, "DUPLICATES_DETECTED", msg);
        e.item_message = Some("Use one of these records?".into());
        e.fields = None;
        e.extra.insert(
            "duplicateResult".into(),
            json!({
                "allowSave": true,
                "duplicateRule": "Standard_Contact_Duplicate_Rule",
                "duplicateRuleEntityType": "Contact",
                "errorMessage": msg,
                "matchResults": [{
                    "entityType": "Contact",
                    "errors": [],
                    "matchEngine": "FuzzyMatchEngine",
                    "matchRecords": match_records,
                    "rule": "Standard_Contact_Match_Rule_v1_1",
                    "size": matches.len(),
                    "success": true
                }]
            }),
        );
        tracing::debug!(matched = %first, "standard contact duplicate rule fired");
        Err(e)
    }

    fn field_str<'a>(rec: &'a Fields, name: &str) -> Option<&'a str> {
        rec.get(name).and_then(Value::as_str)
    }

    fn object_rules(
        &mut self,
        obj: &ObjectDef,
        prior: Option<&Fields>,
        rec: &mut Fields,
    ) -> Result<(), SfError> {
        match obj.name.as_str() {
            "PricebookEntry" => {
                let product = Self::field_str(rec, "Product2Id").unwrap_or("").to_string();
                let pb = Self::field_str(rec, "Pricebook2Id")
                    .unwrap_or("")
                    .to_string();
                if let Some((_, p)) = self.get(&product) {
                    let name = p.get("Name").cloned().unwrap_or(Value::Null);
                    let code = p.get("ProductCode").cloned().unwrap_or(Value::Null);
                    rec.insert("Name".into(), name);
                    rec.insert("ProductCode".into(), code);
                }
                if prior.is_none() {
                    let currency = Self::field_str(rec, "CurrencyIsoCode").map(str::to_string);
                    let is_standard = self
                        .get(&pb)
                        .is_some_and(|(_, r)| r.get("IsStandard") == Some(&json!(true)));
                    let entries: Vec<&Fields> = self
                        .tables
                        .get("PricebookEntry")
                        .map(|t| t.live.values().collect())
                        .unwrap_or_default();
                    let same = |e: &&Fields, pbid: &str| {
                        Self::field_str(e, "Product2Id") == Some(product.as_str())
                            && Self::field_str(e, "Pricebook2Id") == Some(pbid)
                            && Self::field_str(e, "CurrencyIsoCode").map(str::to_string) == currency
                    };
                    if entries.iter().any(|e| same(e, &pb)) {
                        return Err(SfError::bad(
                            "DUPLICATE_VALUE",
                            "This price definition already exists in this price book",
                            &[],
                        ));
                    }
                    if !is_standard {
                        let std_pb = self.standard_pricebook();
                        if !entries.iter().any(|e| same(e, &std_pb)) {
                            return Err(SfError::bad(
                                "STANDARD_PRICE_NOT_DEFINED",
                                "No standard price defined for this product",
                                &[],
                            ));
                        }
                    }
                }
            }
            "OpportunityLineItem" => {
                let opp_id = Self::field_str(rec, "OpportunityId")
                    .unwrap_or("")
                    .to_string();
                let Some((_, opp)) = self.get(&opp_id).map(|(o, r)| (o.name.clone(), r.clone()))
                else {
                    return Err(SfError::bad(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &[],
                    ));
                };
                if prior.is_none() {
                    if Self::field_str(rec, "PricebookEntryId").is_none() {
                        let Some(product) = Self::field_str(rec, "Product2Id").map(str::to_string)
                        else {
                            return Err(SfError::bad(
                                "REQUIRED_FIELD_MISSING",
                                "Required fields are missing: [PricebookEntryId]",
                                &["PricebookEntryId"],
                            ));
                        };
                        let pb = Self::field_str(&opp, "Pricebook2Id")
                            .map(str::to_string)
                            .unwrap_or_else(|| self.standard_pricebook());
                        let currency = Self::field_str(&opp, "CurrencyIsoCode").map(str::to_string);
                        let entry = self.tables.get("PricebookEntry").and_then(|t| {
                            t.live.iter().find(|(_, e)| {
                                Self::field_str(e, "Product2Id") == Some(product.as_str())
                                    && Self::field_str(e, "Pricebook2Id") == Some(pb.as_str())
                                    && Self::field_str(e, "CurrencyIsoCode").map(str::to_string)
                                        == currency
                            })
                        });
                        let Some((eid, _)) = entry else {
                            return Err(SfError::bad(
                                "FIELD_INTEGRITY_EXCEPTION",
                                "field integrity exception: PricebookEntryId (no active pricebook entry for this product in the opportunity's price book and currency)",
                                &["PricebookEntryId"],
                            ));
                        };
                        rec.insert("PricebookEntryId".into(), json!(eid));
                    }
                    let pbe_id = Self::field_str(rec, "PricebookEntryId")
                        .unwrap_or("")
                        .to_string();
                    let Some((_, pbe)) =
                        self.get(&pbe_id).map(|(o, r)| (o.name.clone(), r.clone()))
                    else {
                        return Err(SfError::bad(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                            &[],
                        ));
                    };
                    if self.schema.multi_currency
                        && Self::field_str(&pbe, "CurrencyIsoCode")
                            != Self::field_str(&opp, "CurrencyIsoCode")
                    {
                        return Err(SfError::bad(
                            "FIELD_INTEGRITY_EXCEPTION",
                            "field integrity exception: PricebookEntryId (pricebook entry currency code does not match opportunity currency code)",
                            &["PricebookEntryId"],
                        ));
                    }
                    let entry_pb = Self::field_str(&pbe, "Pricebook2Id")
                        .unwrap_or("")
                        .to_string();
                    match Self::field_str(&opp, "Pricebook2Id") {
                        Some(p) if p != entry_pb => {
                            return Err(SfError::bad(
                                "FIELD_INTEGRITY_EXCEPTION",
                                "field integrity exception: PricebookEntryId (pricebook entry is in a different pricebook than the one assigned to the opportunity)",
                                &["PricebookEntryId"],
                            ))
                        }
                        Some(_) => {}
                        None => {
                            let mut o = opp.clone();
                            o.insert("Pricebook2Id".into(), json!(entry_pb));
                            self.raw_replace("Opportunity", &opp_id, o);
                        }
                    }
                    rec.insert(
                        "Product2Id".into(),
                        pbe.get("Product2Id").cloned().unwrap_or(Value::Null),
                    );
                    rec.insert(
                        "ListPrice".into(),
                        pbe.get("UnitPrice").cloned().unwrap_or(Value::Null),
                    );
                    if let Some(c) = opp.get("CurrencyIsoCode") {
                        rec.insert("CurrencyIsoCode".into(), c.clone());
                    }
                    let opp_name = Self::field_str(&opp, "Name").unwrap_or("");
                    let prod_name = Self::field_str(&pbe, "Name").unwrap_or("");
                    rec.insert("Name".into(), json!(format!("{opp_name} {prod_name}")));
                }
                let qty = rec.get("Quantity").and_then(Value::as_f64).unwrap_or(0.0);
                let unit_given = rec.get("UnitPrice").is_some_and(|v| !v.is_null());
                let total_given = rec.get("TotalPrice").is_some_and(|v| !v.is_null());
                let changed_unit = prior.is_none_or(|p| p.get("UnitPrice") != rec.get("UnitPrice"));
                let changed_total =
                    prior.is_none_or(|p| p.get("TotalPrice") != rec.get("TotalPrice"));
                if prior.is_none() && unit_given && total_given {
                    return Err(SfError::bad(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "field integrity exception: TotalPrice (cannot specify both unit price and total price)",
                        &["TotalPrice"],
                    ));
                }
                if prior.is_none() && !unit_given && !total_given {
                    return Err(SfError::bad(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "field integrity exception: unknown (must specify either UnitPrice or TotalPrice)",
                        &[],
                    ));
                }
                if total_given && changed_total && !(changed_unit && prior.is_some()) {
                    let total = rec.get("TotalPrice").and_then(Value::as_f64).unwrap_or(0.0);
                    let unit = if qty != 0.0 { total / qty } else { 0.0 };
                    rec.insert("UnitPrice".into(), json!(round2(unit)));
                } else {
                    let unit = rec.get("UnitPrice").and_then(Value::as_f64).unwrap_or(0.0);
                    rec.insert("TotalPrice".into(), json!(round2(unit * qty)));
                }
            }
            "CampaignMember" => {
                let contact = Self::field_str(rec, "ContactId").map(str::to_string);
                let lead = Self::field_str(rec, "LeadId").map(str::to_string);
                if contact.is_none() && lead.is_none() {
                    return Err(SfError::bad(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [ContactId, LeadId]",
                        &["ContactId", "LeadId"],
                    ));
                }
                if prior.is_none() {
                    let campaign = Self::field_str(rec, "CampaignId").unwrap_or("");
                    let exists = self.tables.get("CampaignMember").is_some_and(|t| {
                        t.live.values().any(|m| {
                            Self::field_str(m, "CampaignId") == Some(campaign)
                                && ((contact.is_some()
                                    && Self::field_str(m, "ContactId") == contact.as_deref())
                                    || (lead.is_some()
                                        && Self::field_str(m, "LeadId") == lead.as_deref()))
                        })
                    });
                    if exists {
                        return Err(SfError::bad(
                            "DUPLICATE_VALUE",
                            "Already a campaign member.",
                            &[],
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn after_write(&mut self, obj: &ObjectDef, rec: &Fields) -> Result<(), SfError> {
        if obj.name == "OpportunityLineItem" {
            if let Some(opp) = Self::field_str(rec, "OpportunityId").map(str::to_string) {
                self.rollup_opportunity(&opp);
            }
        }
        Ok(())
    }

    /// Opportunity `Amount` is the sum of its line items' `TotalPrice` once it has any.
    fn rollup_opportunity(&mut self, opp_id: &str) {
        let lines: Vec<f64> = self
            .tables
            .get("OpportunityLineItem")
            .map(|t| {
                t.live
                    .values()
                    .filter(|l| Self::field_str(l, "OpportunityId") == Some(opp_id))
                    .filter_map(|l| l.get("TotalPrice").and_then(Value::as_f64))
                    .collect()
            })
            .unwrap_or_default();
        let Some(mut opp) = self
            .tables
            .get("Opportunity")
            .and_then(|t| t.live.get(opp_id))
            .cloned()
        else {
            return;
        };
        if lines.is_empty() {
            return;
        }
        opp.insert("Amount".into(), json!(round2(lines.iter().sum())));
        self.raw_replace("Opportunity", opp_id, opp);
    }

    fn standard_pricebook(&self) -> String {
        self.tables
            .get("Pricebook2")
            .and_then(|t| {
                t.live
                    .iter()
                    .find(|(_, r)| r.get("IsStandard") == Some(&json!(true)))
                    .map(|(id, _)| id.clone())
            })
            .unwrap_or_default()
    }

    /// All live records of an object (for inspection).
    pub fn records(&self, object: &str) -> Vec<Value> {
        let Some(obj) = self.schema.object(object) else {
            return Vec::new();
        };
        self.tables
            .get(&obj.name)
            .map(|t| t.live.values().map(|r| Value::Object(r.clone())).collect())
            .unwrap_or_default()
    }

    /// How many live records of an sObject type there are (without copying them).
    pub fn count(&self, object: &str) -> usize {
        self.schema
            .object(object)
            .and_then(|obj| self.tables.get(&obj.name))
            .map_or(0, |t| t.live.len())
    }

    /// Inserts a record bypassing field-level security (for seeding); validation still runs
    /// except for the duplicate rule.
    pub fn seed_insert(&mut self, object: &str, fields: &Fields) -> Result<String, SfError> {
        let schema = self.schema.clone();
        let obj = schema.object(object).ok_or_else(SfError::not_found)?;
        let mut writable = Fields::new();
        let mut forced = Fields::new();
        for (k, v) in fields {
            match obj.field(k) {
                Some(f) if !f.createable && f.name != "Id" => {
                    forced.insert(f.name.clone(), self.convert(f, v)?);
                }
                _ => {
                    writable.insert(k.clone(), v.clone());
                }
            }
        }
        let opts = WriteOpts {
            allow_save: true,
            ..WriteOpts::default()
        };
        let id = self.insert(&obj.name, &writable, opts)?;
        if !forced.is_empty() {
            if let Some(mut rec) = self
                .tables
                .get(&obj.name)
                .and_then(|t| t.live.get(&id))
                .cloned()
            {
                for (k, v) in forced {
                    rec.insert(k, v);
                }
                rec.retain(|_, v| !v.is_null());
                self.raw_replace(&obj.name, &id, rec);
            }
        }
        Ok(id)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn check_required(obj: &ObjectDef, rec: &Fields) -> Result<(), SfError> {
    let missing: Vec<&str> = obj
        .fields
        .iter()
        .filter(|f| f.createable && !f.nillable && f.ftype != FieldType::Boolean)
        .filter(|f| rec.get(&f.name).is_none_or(Value::is_null))
        .map(|f| f.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SfError::bad(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", missing.join(", ")),
        &missing,
    ))
}

/// Built-in conversion rates (per 1 unit of USD) and ISO 4217 minor units for seeding
/// `CurrencyType`; unknown codes get 1.0 and 2 places.
fn default_rate(code: &str) -> (f64, i64) {
    match code {
        "USD" => (1.0, 2),
        "EUR" => (0.92, 2),
        "GBP" => (0.79, 2),
        "JPY" => (150.0, 0),
        "CAD" => (1.36, 2),
        "AUD" => (1.52, 2),
        "CHF" => (0.88, 2),
        "BHD" => (0.376, 3),
        "RON" => (4.6, 2),
        "BRL" => (5.0, 2),
        "INR" => (83.0, 2),
        _ => (1.0, 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::OrgDefinition;

    fn state(mc: bool) -> OrgState {
        let schema = Schema::build(&OrgDefinition::default(), mc, &["EUR".into()], "USD").unwrap();
        OrgState::new(
            Arc::new(schema),
            "integration@example.com",
            "USD",
            &["EUR".into()],
        )
    }

    fn body(v: Value) -> Fields {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn insert_validates_and_stamps() {
        let mut st = state(false);
        let o = WriteOpts::default();
        let e = st
            .insert("Contact", &body(json!({"FirstName": "A"})), o)
            .unwrap_err();
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(e.message, "Required fields are missing: [LastName]");
        assert_eq!(e.fields, Some(vec!["LastName".to_string()]));
        let id = st
            .insert(
                "Contact",
                &body(json!({"LastName": "Doe", "FirstName": "Jo"})),
                o,
            )
            .unwrap();
        assert!(id.starts_with("003") && id.len() == 18);
        let (_, r) = st.get(&id).unwrap();
        assert_eq!(r["Name"], json!("Jo Doe"));
        assert_eq!(r["OwnerId"], json!(st.integration_user_id));
        assert!(r["CreatedDate"].as_str().unwrap().ends_with("+0000"));
        let e = st
            .insert("Contact", &body(json!({"LastName": "x".repeat(81)})), o)
            .unwrap_err();
        assert_eq!(e.code, "STRING_TOO_LONG");
        let e = st
            .insert(
                "Contact",
                &body(json!({"LastName": "x", "Email": "nope"})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.code, "INVALID_EMAIL_ADDRESS");
        let e = st
            .insert("Contact", &body(json!({"LastName": "x", "Foo__c": 1})), o)
            .unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        assert_eq!(
            e.message,
            "No such column 'Foo__c' on sobject of type Contact"
        );
        let e = st.insert("Opportunity", &body(json!({"Name": "o", "StageName": "Closed Won", "CloseDate": "2024-01-01", "IsWon": true})), o).unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        let e = st
            .insert(
                "Opportunity",
                &body(json!({"Name": "o", "StageName": "Nope", "CloseDate": "2024-01-01"})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        let e = st.insert("Opportunity", &body(json!({"Name": "o", "StageName": "Closed Won", "CloseDate": "2024-01-01", "Amount": "abc"})), o).unwrap_err();
        assert_eq!(e.code, "INVALID_TYPE_ON_FIELD_IN_RECORD");
    }

    #[test]
    fn opportunity_derives_closed_and_won() {
        let mut st = state(false);
        let o = WriteOpts::default();
        let id = st.insert("Opportunity", &body(json!({"Name": "o", "StageName": "Closed Won", "CloseDate": "2024-01-01", "Amount": 10})), o).unwrap();
        let r = st.get(&id).unwrap().1.clone();
        assert_eq!(
            (
                r["IsClosed"].clone(),
                r["IsWon"].clone(),
                r["Probability"].clone()
            ),
            (json!(true), json!(true), json!(100.0))
        );
        assert_eq!(r["Amount"], json!(10.0));
        st.update(
            "Opportunity",
            &id,
            &body(json!({"StageName": "Closed Lost"})),
            o,
        )
        .unwrap();
        let r = st.get(&id).unwrap().1.clone();
        assert_eq!(
            (r["IsClosed"].clone(), r["IsWon"].clone()),
            (json!(true), json!(false))
        );
        st.update(
            "Opportunity",
            &id,
            &body(json!({"StageName": "Prospecting"})),
            o,
        )
        .unwrap();
        assert_eq!(st.get(&id).unwrap().1["IsClosed"], json!(false));
    }

    #[test]
    fn upsert_unique_and_rollback() {
        let mut st = state(false);
        let o = WriteOpts::default();
        let a = st
            .upsert(
                "Account",
                "TwoCheckout_Customer_Ref__c",
                Some("C1"),
                &body(json!({"Name": "A"})),
                o,
            )
            .unwrap();
        assert!(a.created);
        let b = st
            .upsert(
                "Account",
                "twocheckout_customer_ref__c",
                Some("c1"),
                &body(json!({"Name": "B"})),
                o,
            )
            .unwrap();
        assert_eq!((b.id.clone(), b.created), (a.id.clone(), false));
        let e = st
            .insert(
                "Account",
                &body(json!({"Name": "X", "TwoCheckout_Customer_Ref__c": "C1"})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.code, "DUPLICATE_VALUE");
        let e = st
            .upsert("Account", "Name", Some("A"), &body(json!({})), o)
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "NOT_FOUND"));
        let sp = st.begin();
        st.update("Account", &a.id, &body(json!({"Name": "Changed"})), o)
            .unwrap();
        let c = st
            .insert("Account", &body(json!({"Name": "New"})), o)
            .unwrap();
        st.delete("Account", &a.id).unwrap();
        st.rollback(sp);
        assert!(st.get(&c).is_none());
        assert_eq!(st.get(&a.id).unwrap().1["Name"], json!("B"));
        assert_eq!(
            st.find_by_key(
                "Account",
                st.schema
                    .object("Account")
                    .unwrap()
                    .field("TwoCheckout_Customer_Ref__c")
                    .unwrap(),
                "C1"
            ),
            vec![a.id.clone()]
        );
    }

    #[test]
    fn relationship_by_external_id() {
        let mut st = state(false);
        let o = WriteOpts::default();
        let a = st
            .upsert(
                "Account",
                "TwoCheckout_Customer_Ref__c",
                Some("C9"),
                &body(json!({"Name": "A"})),
                o,
            )
            .unwrap();
        let c = st
            .insert(
                "Contact",
                &body(json!({"LastName": "D", "Account": {"TwoCheckout_Customer_Ref__c": "C9"}})),
                o,
            )
            .unwrap();
        assert_eq!(st.get(&c).unwrap().1["AccountId"], json!(a.id));
        let e = st
            .insert(
                "Contact",
                &body(json!({"LastName": "D", "Account": {"TwoCheckout_Customer_Ref__c": "nope"}})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.message, "Foreign key external ID: nope not found for field TwoCheckout_Customer_Ref__c in entity Account");
    }

    #[test]
    fn duplicate_rule_and_allow_save() {
        let mut st = state(false);
        let o = WriteOpts::default();
        let first = st
            .insert(
                "Contact",
                &body(json!({"LastName": "A", "Email": "a@b.com"})),
                o,
            )
            .unwrap();
        let e = st
            .insert(
                "Contact",
                &body(json!({"LastName": "B", "Email": " A@B.com"})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.code, "DUPLICATES_DETECTED");
        assert_eq!(
            e.extra["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"],
            json!(first)
        );
        let allow = WriteOpts {
            allow_save: true,
            ..o
        };
        st.insert(
            "Contact",
            &body(json!({"LastName": "B", "Email": "a@b.com"})),
            allow,
        )
        .unwrap();
    }

    #[test]
    fn lock_fault_counts_down() {
        let mut st = state(false);
        let o = WriteOpts::default();
        st.locks.insert("k1".into(), 2);
        for _ in 0..2 {
            let e = st
                .upsert(
                    "Account",
                    "TwoCheckout_Customer_Ref__c",
                    Some("K1"),
                    &body(json!({"Name": "A"})),
                    o,
                )
                .unwrap_err();
            assert_eq!(e.code, "UNABLE_TO_LOCK_ROW");
        }
        assert!(st
            .upsert(
                "Account",
                "TwoCheckout_Customer_Ref__c",
                Some("K1"),
                &body(json!({"Name": "A"})),
                o
            )
            .is_ok());
    }

    #[test]
    fn multi_currency_and_line_items() {
        let mut st = state(true);
        let o = WriteOpts::default();
        let e = st
            .insert(
                "Account",
                &body(json!({"Name": "A", "CurrencyIsoCode": "XYZ"})),
                o,
            )
            .unwrap_err();
        assert_eq!(e.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        let p = st
            .insert("Product2", &body(json!({"Name": "Widget"})), o)
            .unwrap();
        let std_pb = st.standard_pricebook();
        let e = st.insert("PricebookEntry", &body(json!({"Pricebook2Id": std_pb, "Product2Id": p, "UnitPrice": 5, "CurrencyIsoCode": "EUR"})), o);
        let pbe = e.unwrap();
        let opp = st.insert("Opportunity", &body(json!({"Name": "o", "StageName": "Closed Won", "CloseDate": "2024-01-01", "CurrencyIsoCode": "EUR"})), o).unwrap();
        st.insert("OpportunityLineItem", &body(json!({"OpportunityId": opp, "PricebookEntryId": pbe, "Quantity": 3, "UnitPrice": 5})), o).unwrap();
        assert_eq!(st.get(&opp).unwrap().1["Amount"], json!(15.0));
        let usd_opp = st
            .insert(
                "Opportunity",
                &body(json!({"Name": "u", "StageName": "Closed Won", "CloseDate": "2024-01-01"})),
                o,
            )
            .unwrap();
        let e = st.insert("OpportunityLineItem", &body(json!({"OpportunityId": usd_opp, "PricebookEntryId": pbe, "Quantity": 1, "UnitPrice": 5})), o).unwrap_err();
        assert_eq!(e.code, "FIELD_INTEGRITY_EXCEPTION");
    }
}
