//! REST resources that read or write org data under the org lock: sObject CRUD, upsert by
//! external id, describe, global describe, SOQL query with cursors, and sObject
//! Collections. `/composite` and `/composite/graph` call [`dispatch_locked`] for their
//! subrequests so that a whole transaction runs under one lock.

use crate::error::SfError;
use crate::ids;
use crate::org::{FieldDef, ObjectDef};
use crate::soql;
use crate::store::{Fields, OrgState, WriteOpts};
use crate::Shared;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Per-request context.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// e.g. `v62.0`.
    pub version: String,
    pub api_version: f64,
    pub allow_save: bool,
    pub batch_size: Option<usize>,
}

impl Ctx {
    pub fn new(version: &str) -> Option<Ctx> {
        let v: f64 = version.strip_prefix('v')?.parse().ok()?;
        if !(20.0..=67.0).contains(&v) {
            return None;
        }
        Some(Ctx {
            version: format!("v{v:.1}"),
            api_version: v,
            allow_save: false,
            batch_size: None,
        })
    }

    pub fn opts(&self) -> WriteOpts {
        WriteOpts {
            allow_save: self.allow_save,
            api_version: self.api_version,
        }
    }

    fn sobject_url(&self, object: &str, id: &str) -> String {
        format!("/services/data/{}/sobjects/{}/{}", self.version, object, id)
    }
}

/// A response body.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Text(String, &'static str),
    Empty,
}

/// A response of the dispatcher.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Body,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            body: Body::Json(v),
            headers: Vec::new(),
        }
    }
    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            body: Body::Empty,
            headers: Vec::new(),
        }
    }
    pub fn err(e: SfError) -> Resp {
        Resp::json(e.status, e.rest_body())
    }
    pub fn json_value(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            Body::Text(t, _) => Value::String(t.clone()),
            Body::Empty => Value::Null,
        }
    }
}

/// A parsed request body.
#[derive(Debug, Clone)]
pub enum BodyIn {
    None,
    Json(Value),
    Invalid(String),
}

impl BodyIn {
    pub fn parse(bytes: &[u8]) -> BodyIn {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return BodyIn::None;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => BodyIn::Json(v),
            Err(e) => BodyIn::Invalid(format!(
                "{} at [line:{}, column:{}]",
                e.to_string()
                    .split(" at line")
                    .next()
                    .unwrap_or("invalid JSON"),
                e.line(),
                e.column()
            )),
        }
    }

    fn json(&self) -> Result<&Value, SfError> {
        match self {
            BodyIn::Json(v) => Ok(v),
            BodyIn::None => Err(SfError::json_parse(
                "No content to map due to end-of-input at [line:1, column:0]",
            )),
            BodyIn::Invalid(m) => Err(SfError::json_parse(m)),
        }
    }

    fn object(&self) -> Result<Fields, SfError> {
        match self.json()? {
            Value::Object(m) => Ok(m.clone()),
            _ => Err(SfError::json_parse(
                "Cannot deserialize instance of SObject out of START_ARRAY token at [line:1, column:1]",
            )),
        }
    }
}

// ----- query cursors ---------------------------------------------------------------

struct Cursor {
    records: Arc<Vec<Value>>,
    total: usize,
    page: usize,
}

/// Open query locators (oldest dropped past [`MAX_CURSORS`]).
#[derive(Default)]
pub struct Cursors {
    map: HashMap<String, Cursor>,
    order: VecDeque<String>,
    seq: u64,
}

/// Open query locators kept; Salesforce keeps 10 per user, the emulator keeps more so
/// parallel tests do not evict each other (documented simplification).
pub const MAX_CURSORS: usize = 200;

impl Cursors {
    fn open(&mut self, records: Vec<Value>, total: usize, page: usize) -> String {
        self.seq += 1;
        let id = ids::make_id("01g", self.seq);
        self.map.insert(
            id.clone(),
            Cursor {
                records: Arc::new(records),
                total,
                page,
            },
        );
        self.order.push_back(id.clone());
        while self.order.len() > MAX_CURSORS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        id
    }
}

fn query_page(
    sh: &Shared,
    ctx: &Ctx,
    endpoint: &str,
    records: Arc<Vec<Value>>,
    (total, page): (usize, usize),
    offset: usize,
    locator: Option<String>,
) -> Value {
    let end = (offset + page).min(records.len());
    let slice: Vec<Value> = records[offset.min(end)..end].to_vec();
    let done = end >= records.len();
    let mut out = json!({"totalSize": total, "done": done, "records": slice});
    if !done {
        let loc = match locator {
            Some(l) => l,
            None => sh.cursors.lock().open((*records).clone(), total, page),
        };
        out["nextRecordsUrl"] = json!(format!(
            "/services/data/{}/{}/{}-{}",
            ctx.version, endpoint, loc, end
        ));
    }
    out
}

fn run_query(
    sh: &Shared,
    st: &OrgState,
    ctx: &Ctx,
    endpoint: &str,
    q: Option<&String>,
    include_deleted: bool,
) -> Resp {
    let Some(q) = q.filter(|q| !q.trim().is_empty()) else {
        return Resp::err(SfError::new(
            400,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        ));
    };
    match soql::run(st, q, include_deleted, &ctx.version) {
        Ok(out) => {
            let page = ctx
                .batch_size
                .map(|b| b.clamp(200, 2000))
                .unwrap_or(sh.config.query_page_size)
                .max(1);
            let total = out.total_size;
            Resp::json(
                200,
                query_page(
                    sh,
                    ctx,
                    endpoint,
                    Arc::new(out.records),
                    (total, page),
                    0,
                    None,
                ),
            )
        }
        Err(e) => Resp::err(e),
    }
}

fn query_more(sh: &Shared, ctx: &Ctx, endpoint: &str, locator: &str) -> Resp {
    let invalid = || {
        Resp::err(SfError::new(
            400,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ))
    };
    let Some((loc, off)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = off.parse::<usize>() else {
        return invalid();
    };
    let Some(loc18) = ids::normalize(loc) else {
        return invalid();
    };
    let (records, total, page) = {
        let c = sh.cursors.lock();
        let Some(cur) = c.map.get(&loc18) else {
            return invalid();
        };
        (cur.records.clone(), cur.total, cur.page)
    };
    if offset > records.len() {
        return invalid();
    }
    let v = query_page(
        sh,
        ctx,
        endpoint,
        records.clone(),
        (total, page),
        offset,
        Some(loc18.clone()),
    );
    if v["done"] == json!(true) {
        let mut c = sh.cursors.lock();
        c.map.remove(&loc18);
        c.order.retain(|x| x != &loc18);
    }
    Resp::json(200, v)
}

// ----- describe --------------------------------------------------------------------

fn object_urls(ctx: &Ctx, obj: &ObjectDef) -> Value {
    let base = format!("/services/data/{}/sobjects/{}", ctx.version, obj.name);
    json!({
        "sobject": base,
        "describe": format!("{base}/describe"),
        "rowTemplate": format!("{base}/{{ID}}"),
    })
}

fn object_basic(ctx: &Ctx, obj: &ObjectDef) -> Value {
    let readonly = obj.name == "User" || obj.name == "CurrencyType";
    json!({
        "activateable": false,
        "createable": true,
        "custom": obj.custom,
        "customSetting": false,
        "deletable": !readonly,
        "deprecatedAndHidden": false,
        "feedEnabled": false,
        "hasSubtypes": false,
        "isSubtype": false,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": true,
        "mergeable": matches!(obj.name.as_str(), "Account" | "Contact" | "Lead" | "Case"),
        "mruEnabled": true,
        "name": obj.name,
        "queryable": true,
        "replicateable": true,
        "retrieveable": true,
        "searchable": true,
        "triggerable": true,
        "undeletable": !readonly,
        "updateable": true,
        "urls": object_urls(ctx, obj),
    })
}

fn field_describe(f: &FieldDef) -> Value {
    let picklist: Vec<Value> = f
        .picklist_values
        .iter()
        .map(|v| {
            json!({
                "active": true,
                "defaultValue": f.default_picklist_value.as_deref() == Some(v.as_str()),
                "label": v,
                "validFor": null,
                "value": v,
            })
        })
        .collect();
    json!({
        "aggregatable": true,
        "autoNumber": f.name == "CaseNumber",
        "byteLength": f.length * 3,
        "calculated": f.calculated,
        "caseSensitive": f.case_sensitive,
        "cascadeDelete": false,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": if f.ftype == crate::org::FieldType::Boolean { json!(false) } else { Value::Null },
        "defaultedOnCreate": f.defaulted_on_create,
        "dependentPicklist": false,
        "deprecatedAndHidden": false,
        "digits": if f.ftype == crate::org::FieldType::Int { f.precision } else { 0 },
        "externalId": f.external_id,
        "filterable": true,
        "groupable": !f.ftype.is_number() || f.ftype == crate::org::FieldType::Int,
        "htmlFormatted": false,
        "idLookup": f.id_lookup,
        "inlineHelpText": null,
        "label": f.label,
        "length": f.length,
        "name": f.name,
        "nameField": f.name_field,
        "nillable": f.nillable,
        "permissionable": f.custom && f.nillable,
        "picklistValues": picklist,
        "polymorphicForeignKey": f.reference_to.len() > 1,
        "precision": if f.ftype.is_number() && f.ftype != crate::org::FieldType::Int { f.precision } else { 0 },
        "referenceTo": f.reference_to,
        "relationshipName": f.relationship_name,
        "restrictedPicklist": f.restricted_picklist,
        "scale": if f.ftype.is_number() && f.ftype != crate::org::FieldType::Int { f.scale } else { 0 },
        "soapType": f.ftype.soap_type(),
        "sortable": f.ftype != crate::org::FieldType::Textarea,
        "type": f.ftype.describe_name(),
        "unique": f.unique,
        "updateable": f.updateable,
    })
}

/// Full describe of one object.
pub fn describe(ctx: &Ctx, obj: &ObjectDef) -> Value {
    let mut v = object_basic(ctx, obj);
    v["fields"] = Value::Array(obj.fields.iter().map(field_describe).collect());
    v["childRelationships"] = json!([]);
    v["recordTypeInfos"] = json!([]);
    v["compactLayoutable"] = json!(true);
    v["searchLayoutable"] = json!(true);
    v
}

fn global_describe(st: &OrgState, ctx: &Ctx) -> Value {
    let objs: Vec<Value> = st
        .schema
        .objects()
        .iter()
        .map(|o| object_basic(ctx, o))
        .collect();
    json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objs})
}

// ----- records -----------------------------------------------------------------------

/// A record as REST returns it: `attributes` then fields (all, or the `fields` selection).
pub fn record_json(
    ctx: &Ctx,
    obj: &ObjectDef,
    rec: &Fields,
    only: Option<&[String]>,
) -> Result<Value, SfError> {
    let id = rec.get("Id").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": obj.name, "url": ctx.sobject_url(&obj.name, id)}),
    );
    match only {
        Some(names) => {
            for n in names {
                let f = obj.field(n.trim()).ok_or_else(|| {
                    SfError::new(
                        400,
                        "INVALID_FIELD",
                        format!(
                            "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                            n.trim(),
                            obj.name
                        ),
                    )
                })?;
                out.insert(
                    f.name.clone(),
                    rec.get(&f.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
        None => {
            for f in &obj.fields {
                out.insert(
                    f.name.clone(),
                    rec.get(&f.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    Ok(Value::Object(out))
}

fn success(id: &str, created: Option<bool>) -> Value {
    let mut v = json!({"id": id, "success": true, "errors": []});
    if let Some(c) = created {
        v["created"] = json!(c);
    }
    v
}

fn multiple_choices(ctx: &Ctx, obj: &str, ids: &[String]) -> Resp {
    let urls: Vec<String> = ids.iter().map(|id| ctx.sobject_url(obj, id)).collect();
    Resp::json(300, json!(urls))
}

fn upsert_resp(ctx: &Ctx, object: &str, r: Result<crate::store::UpsertOutcome, SfError>) -> Resp {
    match r {
        Ok(o) if o.created => {
            let created = (ctx.api_version >= 46.0).then_some(true);
            Resp::json(201, success(&o.id, created))
        }
        Ok(o) => {
            if ctx.api_version >= 46.0 {
                Resp::json(200, success(&o.id, Some(false)))
            } else {
                Resp::empty(204)
            }
        }
        Err(e) if e.status == 300 => multiple_choices(ctx, object, &e.multiple),
        Err(e) => Resp::err(e),
    }
}

fn method_not_allowed(method: &str, allowed: &str) -> Resp {
    Resp::err(SfError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    ))
}

fn sobjects(
    st: &mut OrgState,
    ctx: &Ctx,
    method: &str,
    segs: &[String],
    query: &HashMap<String, String>,
    body: &BodyIn,
) -> Resp {
    if segs.is_empty() {
        return match method {
            "GET" | "HEAD" => Resp::json(200, global_describe(st, ctx)),
            _ => method_not_allowed(method, "GET,HEAD"),
        };
    }
    let schema = st.schema.clone();
    let Some(obj) = schema.object(&segs[0]) else {
        return Resp::err(SfError::not_found());
    };
    let opts = ctx.opts();
    match (segs.len(), method) {
        (1, "GET" | "HEAD") => Resp::json(
            200,
            json!({"objectDescribe": object_basic(ctx, obj), "recentItems": []}),
        ),
        (1, "POST") => match body.object().and_then(|b| st.insert(&obj.name, &b, opts)) {
            Ok(id) => Resp::json(201, success(&id, None)),
            Err(e) => Resp::err(e),
        },
        (1, _) => method_not_allowed(method, "GET,HEAD,POST"),
        (2, "GET") if segs[1].eq_ignore_ascii_case("describe") => {
            Resp::json(200, describe(ctx, obj))
        }
        (2, "POST") if segs[1].eq_ignore_ascii_case("Id") => {
            match body.object().and_then(|b| st.insert(&obj.name, &b, opts)) {
                Ok(id) => Resp::json(201, success(&id, None)),
                Err(e) => Resp::err(e),
            }
        }
        (2, _) => {
            let x = &segs[1];
            let id = ids::normalize(x).filter(|n| ids::prefix_of(n) == obj.key_prefix);
            match method {
                "GET" | "HEAD" => {
                    let Some(id) = id else {
                        return Resp::err(SfError::new(
                            404,
                            "NOT_FOUND",
                            format!("Provided external ID field does not exist or is not accessible: {x}"),
                        ));
                    };
                    match st.tables.get(&obj.name).and_then(|t| t.live.get(&id)) {
                        Some(rec) => {
                            let only: Option<Vec<String>> = query
                                .get("fields")
                                .map(|f| f.split(',').map(str::to_string).collect());
                            match record_json(ctx, obj, rec, only.as_deref()) {
                                Ok(v) => Resp::json(200, v),
                                Err(e) => Resp::err(e),
                            }
                        }
                        None if st.is_deleted(&id) => {
                            Resp::err(SfError::new(404, "ENTITY_IS_DELETED", "entity is deleted"))
                        }
                        None => Resp::err(SfError::not_found()),
                    }
                }
                "PATCH" => {
                    let Some(id) = id else {
                        return Resp::err(SfError::new(
                            404,
                            "NOT_FOUND",
                            format!("Provided external ID field does not exist or is not accessible: {x}"),
                        ));
                    };
                    match body
                        .object()
                        .and_then(|b| st.update(&obj.name, &id, &b, opts))
                    {
                        Ok(()) => Resp::empty(204),
                        Err(e) => Resp::err(e),
                    }
                }
                "DELETE" => match st.delete(&obj.name, x) {
                    Ok(()) => Resp::empty(204),
                    Err(e) => Resp::err(e),
                },
                _ => method_not_allowed(method, "GET,HEAD,PATCH,DELETE"),
            }
        }
        (3, _) => {
            let (field, value) = (&segs[1], &segs[2]);
            let kf = obj.field(field).filter(|f| f.usable_as_upsert_key());
            let Some(kf) = kf else {
                return Resp::err(SfError::new(
                    404,
                    "NOT_FOUND",
                    format!(
                        "Provided external ID field does not exist or is not accessible: {field}"
                    ),
                ));
            };
            match method {
                "GET" | "HEAD" | "DELETE" => {
                    let found = st.find_by_key(&obj.name, kf, value);
                    match found.len() {
                        0 => Resp::err(SfError::not_found()),
                        1 if method == "DELETE" => match st.delete(&obj.name, &found[0]) {
                            Ok(()) => Resp::empty(204),
                            Err(e) => Resp::err(e),
                        },
                        1 => {
                            let rec = st.tables.get(&obj.name).and_then(|t| t.live.get(&found[0]));
                            let only: Option<Vec<String>> = query
                                .get("fields")
                                .map(|f| f.split(',').map(str::to_string).collect());
                            match rec.map(|r| record_json(ctx, obj, r, only.as_deref())) {
                                Some(Ok(v)) => Resp::json(200, v),
                                Some(Err(e)) => Resp::err(e),
                                None => Resp::err(SfError::not_found()),
                            }
                        }
                        _ => multiple_choices(ctx, &obj.name, &found),
                    }
                }
                "PATCH" | "POST" => {
                    let b = match body.object() {
                        Ok(b) => b,
                        Err(e) => return Resp::err(e),
                    };
                    if query.get("updateOnly").is_some_and(|v| v == "true")
                        && st.find_by_key(&obj.name, kf, value).is_empty()
                    {
                        return Resp::err(SfError::not_found());
                    }
                    let r = st.upsert(&obj.name, &kf.name, Some(value), &b, opts);
                    upsert_resp(ctx, &obj.name, r)
                }
                _ => method_not_allowed(method, "GET,HEAD,PATCH,POST,DELETE"),
            }
        }
        _ => Resp::err(SfError::not_found()),
    }
}

// ----- collections -------------------------------------------------------------------

/// Maximum records per sObject Collections request.
pub const COLLECTION_LIMIT: usize = 200;

fn rolled_back_item(id: Option<&str>) -> Value {
    let mut v = json!({
        "success": false,
        "errors": [{
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
            "fields": []
        }]
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

fn failure_item(id: Option<&str>, e: &SfError) -> Value {
    let mut v = json!({"success": false, "errors": [e.item_json()]});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

fn record_type(rec: &Fields) -> Option<String> {
    rec.get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn concrete_type_error() -> SfError {
    SfError::bad("INVALID_TYPE", "Must send a concrete entity type.", &[])
}

fn collections(
    st: &mut OrgState,
    ctx: &Ctx,
    method: &str,
    segs: &[String],
    query: &HashMap<String, String>,
    body: &BodyIn,
) -> Resp {
    let opts = ctx.opts();
    // GET /composite/sobjects/{Type}?ids=&fields=
    if method == "GET" {
        let Some(t) = segs.first() else {
            return method_not_allowed(method, "POST,PATCH,DELETE");
        };
        let schema = st.schema.clone();
        let Some(obj) = schema.object(t) else {
            return Resp::err(SfError::not_found());
        };
        let ids_param = query.get("ids").cloned().unwrap_or_default();
        let fields: Option<Vec<String>> = query
            .get("fields")
            .map(|f| f.split(',').map(str::to_string).collect());
        let Some(fields) = fields else {
            return Resp::err(SfError::new(
                400,
                "MISSING_ARGUMENT",
                "fields not specified",
            ));
        };
        let mut out = Vec::new();
        for id in ids_param.split(',').filter(|s| !s.is_empty()) {
            let rec = ids::normalize(id)
                .and_then(|n| st.tables.get(&obj.name).and_then(|t| t.live.get(&n)));
            match rec {
                Some(r) => match record_json(ctx, obj, r, Some(&fields)) {
                    Ok(v) => out.push(v),
                    Err(e) => return Resp::err(e),
                },
                None => out.push(Value::Null),
            }
        }
        return Resp::json(200, Value::Array(out));
    }
    if method == "DELETE" {
        let all_or_none = query.get("allOrNone").is_some_and(|v| v == "true");
        let list: Vec<String> = query
            .get("ids")
            .map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if list.len() > COLLECTION_LIMIT {
            return Resp::err(SfError::new(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            ));
        }
        let sp = st.begin();
        let mut results: Vec<(Option<String>, Result<(), SfError>)> = Vec::new();
        for id in &list {
            let r = match st
                .schema
                .object_for_prefix(ids::prefix_of(id))
                .map(|o| o.name.clone())
            {
                Some(o) => st.delete(&o, id),
                None => Err(SfError::bad(
                    "MALFORMED_ID",
                    format!("malformed id {id}"),
                    &[],
                )),
            };
            results.push((Some(id.clone()), r));
        }
        return finish_collection(st, sp, all_or_none, results, None);
    }
    let body = match body.json() {
        Ok(Value::Object(m)) => m.clone(),
        Ok(_) => {
            return Resp::err(SfError::json_parse(
                "Cannot deserialize instance of request body out of START_ARRAY token",
            ))
        }
        Err(e) => return Resp::err(e),
    };
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(Value::Array(records)) = body.get("records") else {
        return Resp::err(SfError::new(
            400,
            "JSON_PARSER_ERROR",
            "Required field records is missing",
        ));
    };
    if records.len() > COLLECTION_LIMIT {
        return Resp::err(SfError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    let sp = st.begin();
    let mut results: Vec<(Option<String>, Result<(), SfError>)> = Vec::new();
    let mut created_flags: Vec<Option<bool>> = Vec::new();
    match (method, segs.len()) {
        ("POST", 0) => {
            for r in records {
                let Value::Object(rec) = r else {
                    results.push((None, Err(concrete_type_error())));
                    created_flags.push(None);
                    continue;
                };
                let res = match record_type(rec) {
                    None => Err(concrete_type_error()),
                    Some(t) => st.insert(&t, rec, opts),
                };
                match res {
                    Ok(id) => results.push((Some(id), Ok(()))),
                    Err(e) => results.push((None, Err(e))),
                }
                created_flags.push(None);
            }
        }
        ("PATCH", 0) => {
            for r in records {
                let Value::Object(rec) = r else {
                    results.push((None, Err(concrete_type_error())));
                    created_flags.push(None);
                    continue;
                };
                let id = rec
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("id"))
                    .and_then(|(_, v)| v.as_str())
                    .map(str::to_string);
                let res = match (record_type(rec), &id) {
                    (None, _) => Err(concrete_type_error()),
                    (_, None) => Err(SfError::bad(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call",
                        &[],
                    )),
                    (Some(t), Some(id)) => {
                        let mut body = rec.clone();
                        body.retain(|k, _| !k.eq_ignore_ascii_case("id"));
                        st.update(&t, id, &body, opts)
                    }
                };
                let nid = id
                    .as_deref()
                    .map(|i| ids::normalize(i).unwrap_or_else(|| i.to_string()));
                results.push((nid, res));
                created_flags.push(None);
            }
        }
        ("PATCH", 2) => {
            let schema = st.schema.clone();
            let Some(obj) = schema.object(&segs[0]) else {
                st.rollback(sp);
                return Resp::err(SfError::not_found());
            };
            let Some(kf) = obj.field(&segs[1]).filter(|f| f.usable_as_upsert_key()) else {
                st.rollback(sp);
                return Resp::err(SfError::new(
                    404,
                    "NOT_FOUND",
                    format!(
                        "Provided external ID field does not exist or is not accessible: {}",
                        segs[1]
                    ),
                ));
            };
            for r in records {
                let Value::Object(rec) = r else {
                    results.push((None, Err(concrete_type_error())));
                    created_flags.push(None);
                    continue;
                };
                let ty_ok = record_type(rec).is_some_and(|t| t.eq_ignore_ascii_case(&obj.name));
                if !ty_ok {
                    results.push((None, Err(concrete_type_error())));
                    created_flags.push(None);
                    continue;
                }
                let key_entry = rec.iter().find(|(k, _)| k.eq_ignore_ascii_case(&kf.name));
                let value = key_entry.and_then(|(_, v)| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
                let mut body = rec.clone();
                body.retain(|k, _| !k.eq_ignore_ascii_case(&kf.name));
                match st.upsert(&obj.name, &kf.name, value.as_deref(), &body, opts) {
                    Ok(o) => {
                        results.push((Some(o.id), Ok(())));
                        created_flags.push(Some(o.created));
                    }
                    Err(e) => {
                        results.push((None, Err(e)));
                        created_flags.push(None);
                    }
                }
            }
        }
        _ => {
            st.rollback(sp);
            return method_not_allowed(method, "GET,POST,PATCH,DELETE");
        }
    }
    finish_collection(st, sp, all_or_none, results, Some(created_flags))
}

fn finish_collection(
    st: &mut OrgState,
    sp: usize,
    all_or_none: bool,
    results: Vec<(Option<String>, Result<(), SfError>)>,
    created: Option<Vec<Option<bool>>>,
) -> Resp {
    let any_failed = results.iter().any(|(_, r)| r.is_err());
    if all_or_none && any_failed {
        st.rollback(sp);
        let items: Vec<Value> = results
            .iter()
            .map(|(id, r)| match r {
                Ok(()) => rolled_back_item(None),
                Err(e) => failure_item(id.as_deref(), e),
            })
            .collect();
        return Resp::json(200, Value::Array(items));
    }
    st.commit(sp);
    let items: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, (id, r))| match r {
            Ok(()) => {
                let c = created.as_ref().and_then(|c| c.get(i).copied().flatten());
                success(id.as_deref().unwrap_or(""), c)
            }
            Err(e) => failure_item(id.as_deref(), e),
        })
        .collect();
    Resp::json(200, Value::Array(items))
}

/// Dispatches a request on org data. `segs` are the path segments after `vXX.X`.
pub fn dispatch_locked(
    sh: &Shared,
    st: &mut OrgState,
    ctx: &Ctx,
    method: &str,
    segs: &[String],
    query: &HashMap<String, String>,
    body: &BodyIn,
) -> Resp {
    let first = segs.first().map(String::as_str).unwrap_or("");
    match first {
        "sobjects" => sobjects(st, ctx, method, &segs[1..], query, body),
        "query" | "queryAll" => {
            let include_deleted = first == "queryAll";
            if method != "GET" {
                return method_not_allowed(method, "GET,HEAD");
            }
            match segs.get(1) {
                None => run_query(sh, st, ctx, first, query.get("q"), include_deleted),
                Some(loc) => query_more(sh, ctx, first, loc),
            }
        }
        "composite" if segs.get(1).map(String::as_str) == Some("sobjects") => {
            collections(st, ctx, method, &segs[2..], query, body)
        }
        _ => Resp::err(SfError::not_found()),
    }
}

/// Resource name used for call accounting.
pub fn resource_name(segs: &[String]) -> String {
    match (
        segs.first().map(String::as_str),
        segs.get(1).map(String::as_str),
    ) {
        (None, _) => "resources".into(),
        (Some("composite"), Some(s @ ("graph" | "sobjects" | "batch" | "tree"))) => {
            format!("composite/{s}")
        }
        (Some("jobs"), Some(s)) => format!("jobs/{s}"),
        (Some(f), _) => f.to_string(),
    }
}
