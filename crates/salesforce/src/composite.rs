//! Batching resources that cost ONE API call each (reference §3.1-§3.3): Composite,
//! Composite Graph and sObject Collections. The top-level HTTP status is 200 even when items
//! fail: every item result here carries its own parsed [`ApiError`]s.

use crate::client::{Client, Request};
use crate::error::{parse_error_items, ApiError, ErrorClass, SalesforceError};
use crate::sobject::{check_name, check_record_id, upsert_suffix};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Max subrequests in one Composite request.
pub const MAX_COMPOSITE_SUBREQUESTS: usize = 25;
/// Max graphs in one Composite Graph request.
pub const MAX_GRAPHS: usize = 75;
/// Max nodes in one Composite Graph request (all graphs together).
pub const MAX_GRAPH_NODES: usize = 500;
/// Max distinct node types (API version + method + object) in one graph request.
pub const MAX_GRAPH_NODE_TYPES: usize = 15;
/// Max records in one sObject Collections request.
pub const MAX_COLLECTION_RECORDS: usize = 200;

/// HTTP method of a subrequest / graph node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SubMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

/// One Composite subrequest or Composite Graph node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    /// HTTP method.
    pub method: SubMethod,
    /// Full resource path, e.g. `/services/data/v62.0/sobjects/Account/Ext__c/C1`.
    pub url: String,
    /// Unique within the request/graph; referenced as `@{referenceId.field}`.
    pub reference_id: String,
    /// JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// Composite subrequests have the same shape as graph nodes.
pub type SubRequest = GraphNode;

impl GraphNode {
    /// Upsert by external id: `PATCH /services/data/{v}/sobjects/{Object}/{ExtField}/{value}`.
    pub fn upsert(
        api_version: &str,
        reference_id: impl Into<String>,
        sobject: &str,
        ext_field: &str,
        ext_value: &str,
        body: Value,
    ) -> Result<GraphNode, SalesforceError> {
        let suffix = upsert_suffix(sobject, ext_field, ext_value)?;
        Ok(GraphNode {
            method: SubMethod::Patch,
            url: format!("/services/data/{api_version}/{suffix}"),
            reference_id: reference_id.into(),
            body: Some(body),
        })
    }

    /// Update by record id (which may be a reference like `@{acct.id}`).
    pub fn update(
        api_version: &str,
        reference_id: impl Into<String>,
        sobject: &str,
        id: &str,
        body: Value,
    ) -> Result<GraphNode, SalesforceError> {
        check_name("sObject", sobject)?;
        if !id.starts_with("@{") {
            check_record_id(id)?;
        }
        Ok(GraphNode {
            method: SubMethod::Patch,
            url: format!("/services/data/{api_version}/sobjects/{sobject}/{id}"),
            reference_id: reference_id.into(),
            body: Some(body),
        })
    }

    /// Create (`POST /sobjects/{Object}`). Not idempotent on its own; inside a graph it is
    /// rolled back with the graph, but a replayed graph creates again.
    pub fn create(
        api_version: &str,
        reference_id: impl Into<String>,
        sobject: &str,
        body: Value,
    ) -> Result<GraphNode, SalesforceError> {
        check_name("sObject", sobject)?;
        Ok(GraphNode {
            method: SubMethod::Post,
            url: format!("/services/data/{api_version}/sobjects/{sobject}"),
            reference_id: reference_id.into(),
            body: Some(body),
        })
    }

    /// `@{reference_id.field}` — refer to an earlier node's result (case-sensitive).
    pub fn reference(reference_id: &str, field: &str) -> String {
        format!("@{{{reference_id}.{field}}}")
    }

    /// The external id field of a `PATCH /sobjects/{Object}/{Field}/{value}` node.
    fn upsert_key(&self) -> Option<String> {
        if self.method != SubMethod::Patch {
            return None;
        }
        let path = self.url.split('?').next().unwrap_or_default();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let i = segs.iter().position(|s| *s == "sobjects")?;
        (segs.len() == i + 4).then(|| segs[i + 2].to_owned())
    }

    /// (version, method, object) — what the graph limits call a "node type".
    fn node_type(&self) -> (String, SubMethod, String) {
        let mut parts = self.url.trim_start_matches('/').split('/');
        let mut version = String::new();
        let mut object = String::new();
        while let Some(p) = parts.next() {
            if p.starts_with('v') && p.contains('.') && version.is_empty() {
                version = p.to_owned();
            }
            if p == "sobjects" {
                object = parts.next().unwrap_or_default().to_owned();
                break;
            }
        }
        (version, self.method, object)
    }
}

/// One Composite Graph: all-or-nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// Caller's id (e.g. the event key); echoed in the response.
    #[serde(rename = "graphId")]
    pub graph_id: String,
    /// Nodes in dependency order.
    #[serde(rename = "compositeRequest")]
    pub nodes: Vec<GraphNode>,
}

impl Graph {
    /// An empty graph.
    pub fn new(graph_id: impl Into<String>) -> Self {
        Graph {
            graph_id: graph_id.into(),
            nodes: Vec::new(),
        }
    }

    /// Append a node.
    pub fn node(mut self, node: GraphNode) -> Self {
        self.nodes.push(node);
        self
    }

    /// Append an upsert-by-external-id node (see [`GraphNode::upsert`]).
    pub fn upsert(
        self,
        api_version: &str,
        reference_id: impl Into<String>,
        sobject: &str,
        ext_field: &str,
        ext_value: &str,
        body: Value,
    ) -> Result<Self, SalesforceError> {
        Ok(self.node(GraphNode::upsert(
            api_version,
            reference_id,
            sobject,
            ext_field,
            ext_value,
            body,
        )?))
    }
}

/// Body of `POST /composite/graph`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphRequest {
    /// Graphs (≤ 75).
    pub graphs: Vec<Graph>,
}

impl GraphRequest {
    /// Check the documented limits: ≤ 75 graphs, ≤ 500 nodes, ≤ 15 node types, unique graph
    /// ids, unique non-empty reference ids within each graph, at least one node per graph.
    pub fn validate(&self) -> Result<(), SalesforceError> {
        let bad = |m: String| Err(SalesforceError::InvalidRequest(m));
        if self.graphs.is_empty() {
            return bad("graph request has no graphs".into());
        }
        if self.graphs.len() > MAX_GRAPHS {
            return bad(format!(
                "{} graphs exceed the limit of {MAX_GRAPHS}",
                self.graphs.len()
            ));
        }
        let nodes: usize = self.graphs.iter().map(|g| g.nodes.len()).sum();
        if nodes > MAX_GRAPH_NODES {
            return bad(format!(
                "{nodes} nodes exceed the limit of {MAX_GRAPH_NODES}"
            ));
        }
        let types: HashSet<_> = self
            .graphs
            .iter()
            .flat_map(|g| g.nodes.iter().map(GraphNode::node_type))
            .collect();
        if types.len() > MAX_GRAPH_NODE_TYPES {
            return bad(format!(
                "{} distinct node types exceed the limit of {MAX_GRAPH_NODE_TYPES}",
                types.len()
            ));
        }
        let mut graph_ids = HashSet::new();
        for g in &self.graphs {
            if g.graph_id.is_empty() || !graph_ids.insert(g.graph_id.as_str()) {
                return bad(format!("graph id {:?} is empty or repeated", g.graph_id));
            }
            if g.nodes.is_empty() {
                return bad(format!("graph {:?} has no nodes", g.graph_id));
            }
            let mut refs = HashSet::new();
            for n in &g.nodes {
                if n.reference_id.is_empty() || !refs.insert(n.reference_id.as_str()) {
                    return bad(format!(
                        "reference id {:?} in graph {:?} is empty or repeated",
                        n.reference_id, g.graph_id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One subrequest's result inside `compositeResponse`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubResponse {
    /// Body: the save result, a record, or an error array.
    #[serde(default)]
    pub body: Value,
    /// Response headers of the subrequest (e.g. `Location`).
    #[serde(default)]
    pub http_headers: BTreeMap<String, Value>,
    /// HTTP status of the subrequest.
    pub http_status_code: u16,
    /// The subrequest's reference id.
    pub reference_id: String,
    /// External id field when the subrequest was an upsert by external id (set by the client
    /// from the request; used to tell an insert race from another unique-field clash).
    #[serde(skip)]
    pub upsert_key: Option<String>,
}

impl SubResponse {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.http_status_code)
    }

    /// Parsed errors (empty on success).
    pub fn errors(&self) -> Vec<ApiError> {
        if self.is_success() {
            return Vec::new();
        }
        let mut errors = parse_error_items(&self.body);
        if let Some(key) = &self.upsert_key {
            for e in &mut errors {
                e.refine_for_external_id(key);
            }
        }
        if errors.is_empty() {
            let class = crate::error::class_for_status(self.http_status_code);
            let mut e = ApiError::new(
                format!("HTTP_{}", self.http_status_code),
                self.body.to_string(),
                Vec::new(),
            );
            e.class = class;
            errors.push(e);
        }
        errors
    }

    /// `id` from the body of a successful save.
    pub fn id(&self) -> Option<&str> {
        self.body.get("id").and_then(Value::as_str)
    }

    /// `created` from the body of an upsert (falls back to status 201).
    pub fn created(&self) -> Option<bool> {
        if !self.is_success() {
            return None;
        }
        Some(
            self.body
                .get("created")
                .and_then(Value::as_bool)
                .unwrap_or(self.http_status_code == 201),
        )
    }
}

/// The errors of a failed unit (graph or composite request), with the root cause separated
/// from collateral `PROCESSING_HALTED` items.
fn root_errors<'a>(items: impl Iterator<Item = &'a SubResponse>) -> Vec<(String, ApiError)> {
    let all: Vec<(String, ApiError)> = items
        .flat_map(|r| {
            r.errors()
                .into_iter()
                .map(move |e| (r.reference_id.clone(), e))
        })
        .collect();
    let roots: Vec<_> = all.iter().filter(|(_, e)| !e.collateral).cloned().collect();
    if roots.is_empty() {
        all
    } else {
        roots
    }
}

/// Aggregate class of a set of errors: `Permanent` wins (retrying cannot help), then
/// `SessionExpired`, `LimitExceeded`, `DuplicateRace`, `Transient`.
pub fn dominant_class<'a>(errors: impl IntoIterator<Item = &'a ApiError>) -> Option<ErrorClass> {
    let rank = |c: ErrorClass| match c {
        ErrorClass::Permanent => 5,
        ErrorClass::SessionExpired => 4,
        ErrorClass::LimitExceeded => 3,
        ErrorClass::DuplicateRace => 2,
        ErrorClass::Transient => 1,
    };
    errors.into_iter().map(|e| e.class).max_by_key(|c| rank(*c))
}

/// Result of one graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphResult {
    /// The graph id sent.
    pub graph_id: String,
    /// `isSuccessful`: every node committed.
    pub is_successful: bool,
    /// Per-node results in request order.
    pub responses: Vec<SubResponse>,
}

impl GraphResult {
    /// Non-collateral errors with the reference id of the node that raised them (all errors
    /// if every one is collateral, e.g. after the 14-failed-graphs cut-off).
    pub fn root_errors(&self) -> Vec<(String, ApiError)> {
        root_errors(self.responses.iter())
    }

    /// What to do with a failed graph (`None` when it succeeded).
    pub fn class(&self) -> Option<ErrorClass> {
        if self.is_successful {
            return None;
        }
        let roots = self.root_errors();
        dominant_class(roots.iter().map(|(_, e)| e)).or(Some(ErrorClass::Permanent))
    }

    /// Result of the node with this reference id.
    pub fn response(&self, reference_id: &str) -> Option<&SubResponse> {
        self.responses
            .iter()
            .find(|r| r.reference_id == reference_id)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGraphResponse {
    graphs: Vec<RawGraph>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGraph {
    graph_id: String,
    #[serde(default)]
    graph_response: Option<RawComposite>,
    is_successful: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComposite {
    #[serde(default)]
    composite_response: Vec<SubResponse>,
}

/// Parse a `/composite/graph` response body.
pub fn parse_graph_response(body: &[u8]) -> Result<Vec<GraphResult>, SalesforceError> {
    let raw: RawGraphResponse =
        serde_json::from_slice(body).map_err(|e| SalesforceError::decode("composite graph", e))?;
    Ok(raw
        .graphs
        .into_iter()
        .map(|g| GraphResult {
            graph_id: g.graph_id,
            is_successful: g.is_successful,
            responses: g
                .graph_response
                .map(|r| r.composite_response)
                .unwrap_or_default(),
        })
        .collect())
}

/// Body of `POST /composite`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeRequest {
    /// Roll back everything when one subrequest fails.
    pub all_or_none: bool,
    /// Let Salesforce bulkify unrelated subrequests; `false` keeps order.
    pub collate_subrequests: bool,
    /// Subrequests (≤ 25).
    pub composite_request: Vec<SubRequest>,
}

/// Result of `POST /composite`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeResponse {
    /// Per-subrequest results in request order.
    pub composite_response: Vec<SubResponse>,
}

impl CompositeResponse {
    /// Every subrequest succeeded.
    pub fn is_successful(&self) -> bool {
        self.composite_response.iter().all(SubResponse::is_success)
    }

    /// Non-collateral errors with their reference ids.
    pub fn root_errors(&self) -> Vec<(String, ApiError)> {
        root_errors(self.composite_response.iter())
    }
}

/// Per-record result of an sObject Collections call.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionItemResult {
    /// Record id (absent on failure).
    pub id: Option<String>,
    /// Saved.
    pub success: bool,
    /// Upsert only: inserted.
    pub created: Option<bool>,
    /// Errors (`statusCode` items).
    pub errors: Vec<ApiError>,
}

impl CollectionItemResult {
    /// What to do with a failed item (`None` on success).
    pub fn class(&self) -> Option<ErrorClass> {
        if self.success {
            None
        } else {
            dominant_class(self.errors.iter().filter(|e| !e.collateral))
                .or_else(|| dominant_class(self.errors.iter()))
                .or(Some(ErrorClass::Permanent))
        }
    }
}

#[derive(Deserialize)]
struct RawCollectionItem {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Value,
}

/// Parse an sObject Collections response (array of save results, in request order).
pub fn parse_collection_response(
    body: &[u8],
    ext_field: Option<&str>,
) -> Result<Vec<CollectionItemResult>, SalesforceError> {
    let raw: Vec<RawCollectionItem> = serde_json::from_slice(body)
        .map_err(|e| SalesforceError::decode("sObject collections", e))?;
    Ok(raw
        .into_iter()
        .map(|r| {
            let mut errors = parse_error_items(&r.errors);
            if let Some(f) = ext_field {
                for e in &mut errors {
                    e.refine_for_external_id(f);
                }
            }
            CollectionItemResult {
                id: r.id.filter(|s| !s.is_empty()),
                success: r.success,
                created: r.created,
                errors,
            }
        })
        .collect())
}

fn annotate_upsert_keys(responses: &mut [SubResponse], nodes: &[GraphNode]) {
    for r in responses {
        if let Some(n) = nodes.iter().find(|n| n.reference_id == r.reference_id) {
            r.upsert_key = n.upsert_key();
        }
    }
}

/// Give each record `attributes.type = sobject` unless it already has attributes.
fn with_type(records: &[Value], sobject: &str) -> Result<Vec<Value>, SalesforceError> {
    records
        .iter()
        .map(|r| {
            let mut map: Map<String, Value> = r
                .as_object()
                .cloned()
                .ok_or_else(|| SalesforceError::InvalidRequest("record is not an object".into()))?;
            map.entry("attributes")
                .or_insert_with(|| serde_json::json!({ "type": sobject }));
            Ok(Value::Object(map))
        })
        .collect()
}

fn check_collection_size(n: usize) -> Result<(), SalesforceError> {
    if n == 0 || n > MAX_COLLECTION_RECORDS {
        Err(SalesforceError::InvalidRequest(format!(
            "sObject Collections take 1..={MAX_COLLECTION_RECORDS} records, got {n}"
        )))
    } else {
        Ok(())
    }
}

impl Client {
    /// `POST /composite`. Top-level errors (malformed request, session, limits) are returned
    /// as `Err`; per-subrequest failures are in the response.
    pub async fn composite(
        &self,
        request: &CompositeRequest,
    ) -> Result<CompositeResponse, SalesforceError> {
        let n = request.composite_request.len();
        if n == 0 || n > MAX_COMPOSITE_SUBREQUESTS {
            return Err(SalesforceError::InvalidRequest(format!(
                "composite takes 1..={MAX_COMPOSITE_SUBREQUESTS} subrequests, got {n}"
            )));
        }
        let req = Request::new(Method::POST, self.data_path("composite")).json(request)?;
        let resp = self.execute(req).await?.error_for_status()?;
        let mut out: CompositeResponse = resp.json("composite")?;
        annotate_upsert_keys(&mut out.composite_response, &request.composite_request);
        Ok(out)
    }

    /// `POST /composite/graph`: one API call for up to 75 independent all-or-nothing graphs.
    pub async fn composite_graph(
        &self,
        graphs: &[Graph],
    ) -> Result<Vec<GraphResult>, SalesforceError> {
        let request = GraphRequest {
            graphs: graphs.to_vec(),
        };
        request.validate()?;
        let req = Request::new(Method::POST, self.data_path("composite/graph")).json(&request)?;
        let resp = self.execute(req).await?.error_for_status()?;
        let mut results = parse_graph_response(&resp.body)?;
        for r in &mut results {
            if let Some(g) = graphs.iter().find(|g| g.graph_id == r.graph_id) {
                annotate_upsert_keys(&mut r.responses, &g.nodes);
            }
        }
        let failed = results.iter().filter(|g| !g.is_successful).count();
        tracing::debug!(graphs = results.len(), failed, "composite graph done");
        Ok(results)
    }

    /// `PATCH /composite/sobjects/{Object}/{ExtField}` — upsert ≤ 200 records of one type
    /// by external id (each record must carry the ext field). Results in request order.
    pub async fn collections_upsert(
        &self,
        sobject: &str,
        ext_field: &str,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<CollectionItemResult>, SalesforceError> {
        check_name("sObject", sobject)?;
        check_name("external id field", ext_field)?;
        check_collection_size(records.len())?;
        for (i, r) in records.iter().enumerate() {
            match r.get(ext_field) {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(Value::Number(_)) => {}
                _ => {
                    return Err(SalesforceError::InvalidRequest(format!(
                        "record {i} has no value for external id field {ext_field}"
                    )))
                }
            }
        }
        let body = serde_json::json!({
            "allOrNone": all_or_none,
            "records": with_type(records, sobject)?,
        });
        let req = Request::new(
            Method::PATCH,
            self.data_path(&format!("composite/sobjects/{sobject}/{ext_field}")),
        )
        .json(&body)?;
        self.collection_call(req, records.len(), Some(ext_field))
            .await
    }

    /// `POST /composite/sobjects` — create ≤ 200 records (each with `attributes.type`, or
    /// give `sobject` to set it). Not idempotent.
    pub async fn collections_create(
        &self,
        sobject: Option<&str>,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<CollectionItemResult>, SalesforceError> {
        self.collections_write(Method::POST, sobject, records, all_or_none)
            .await
    }

    /// `PATCH /composite/sobjects` — update ≤ 200 records by `id`.
    pub async fn collections_update(
        &self,
        sobject: Option<&str>,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<CollectionItemResult>, SalesforceError> {
        for (i, r) in records.iter().enumerate() {
            let id = r.get("id").or_else(|| r.get("Id")).and_then(Value::as_str);
            match id {
                Some(id) => check_record_id(id)?,
                None => {
                    return Err(SalesforceError::InvalidRequest(format!(
                        "record {i} has no id for a collections update"
                    )))
                }
            }
        }
        self.collections_write(Method::PATCH, sobject, records, all_or_none)
            .await
    }

    async fn collections_write(
        &self,
        method: Method,
        sobject: Option<&str>,
        records: &[Value],
        all_or_none: bool,
    ) -> Result<Vec<CollectionItemResult>, SalesforceError> {
        check_collection_size(records.len())?;
        let records = match sobject {
            Some(s) => {
                check_name("sObject", s)?;
                with_type(records, s)?
            }
            None => {
                if let Some(i) = records
                    .iter()
                    .position(|r| r.pointer("/attributes/type").is_none())
                {
                    return Err(SalesforceError::InvalidRequest(format!(
                        "record {i} has no attributes.type"
                    )));
                }
                records.to_vec()
            }
        };
        let n = records.len();
        let body = serde_json::json!({ "allOrNone": all_or_none, "records": records });
        let req = Request::new(method, self.data_path("composite/sobjects")).json(&body)?;
        self.collection_call(req, n, None).await
    }

    async fn collection_call(
        &self,
        req: Request,
        sent: usize,
        ext_field: Option<&str>,
    ) -> Result<Vec<CollectionItemResult>, SalesforceError> {
        let resp = self.execute(req).await?.error_for_status()?;
        let items = parse_collection_response(&resp.body, ext_field)?;
        if items.len() != sent {
            return Err(SalesforceError::decode(
                "sObject collections",
                format!("sent {sent} records, got {} results", items.len()),
            ));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    //! Response bodies are verbatim from shared/reference/salesforce.md (section noted).
    use super::*;
    use serde_json::json;

    #[test]
    fn graph_request_serialises_to_reference_shape() {
        // §3.3 envelope with §3.2 subrequests.
        let g1 = Graph::new("order-8812")
            .upsert(
                "v62.0",
                "acct",
                "Account",
                "TwoCo_Customer_Ref__c",
                "C123",
                json!({"Name":"Acme Ltd"}),
            )
            .unwrap()
            .upsert(
                "v62.0",
                "con",
                "Contact",
                "TwoCo_Customer_Ref__c",
                "C123",
                json!({"LastName":"Doe","Email":"a@b.com","AccountId":GraphNode::reference("acct","id")}),
            )
            .unwrap();
        let g2 = Graph::new("order-8813")
            .upsert(
                "v62.0",
                "opp",
                "Opportunity",
                "TwoCo_Order_Ref__c",
                "R/77 #1",
                json!({"Name":"Order R/77","StageName":"Closed Won","CloseDate":"2026-01-31",
                       "Account":{"TwoCo_Customer_Ref__c":"C123"}}),
            )
            .unwrap();
        let req = GraphRequest {
            graphs: vec![g1, g2],
        };
        req.validate().unwrap();
        let expected = json!({"graphs":[
            {"graphId":"order-8812","compositeRequest":[
                {"method":"PATCH","url":"/services/data/v62.0/sobjects/Account/TwoCo_Customer_Ref__c/C123",
                 "referenceId":"acct","body":{"Name":"Acme Ltd"}},
                {"method":"PATCH","url":"/services/data/v62.0/sobjects/Contact/TwoCo_Customer_Ref__c/C123",
                 "referenceId":"con","body":{"LastName":"Doe","Email":"a@b.com","AccountId":"@{acct.id}"}}]},
            {"graphId":"order-8813","compositeRequest":[
                {"method":"PATCH","url":"/services/data/v62.0/sobjects/Opportunity/TwoCo_Order_Ref__c/R%2F77%20%231",
                 "referenceId":"opp","body":{"Name":"Order R/77","StageName":"Closed Won","CloseDate":"2026-01-31",
                 "Account":{"TwoCo_Customer_Ref__c":"C123"}}}]}]});
        assert_eq!(serde_json::to_value(&req).unwrap(), expected);
    }

    #[test]
    fn graph_limits_are_enforced() {
        let node =
            |r: &str| GraphNode::upsert("v62.0", r, "Account", "Ext__c", r, json!({})).unwrap();
        let too_many = GraphRequest {
            graphs: (0..76)
                .map(|i| Graph::new(format!("g{i}")).node(node("a")))
                .collect(),
        };
        assert!(too_many.validate().is_err());
        let dup_ref = GraphRequest {
            graphs: vec![Graph::new("g").node(node("a")).node(node("a"))],
        };
        assert!(dup_ref.validate().is_err());
        let dup_graph = GraphRequest {
            graphs: vec![
                Graph::new("g").node(node("a")),
                Graph::new("g").node(node("b")),
            ],
        };
        assert!(dup_graph.validate().is_err());
        let big = GraphRequest {
            graphs: (0..2)
                .map(|g| {
                    let mut graph = Graph::new(format!("g{g}"));
                    for i in 0..251 {
                        graph = graph.node(node(&format!("n{i}")));
                    }
                    graph
                })
                .collect(),
        };
        assert!(big.validate().is_err());
        let types = GraphRequest {
            graphs: vec![(0..16).fold(Graph::new("g"), |g, i| {
                g.node(
                    GraphNode::upsert(
                        "v62.0",
                        format!("n{i}"),
                        &format!("Obj{i}__c"),
                        "E__c",
                        "x",
                        json!({}),
                    )
                    .unwrap(),
                )
            })],
        };
        assert!(types.validate().is_err());
        assert!(GraphRequest { graphs: vec![] }.validate().is_err());
    }

    #[test]
    fn parses_graph_response_and_classifies() {
        let body = br#"{"graphs":[
          {"graphId":"order-8812","graphResponse":{"compositeResponse":[
             {"body":{"id":"001R00000033JNuIAM","success":true,"errors":[],"created":true},"httpHeaders":{"Location":"/services/data/v62.0/sobjects/Account/001R00000033JNuIAM"},"httpStatusCode":201,"referenceId":"acct"},
             {"body":{"id":"003R00000025REHIA2","success":true,"errors":[],"created":false},"httpHeaders":{},"httpStatusCode":200,"referenceId":"con"}]},
           "isSuccessful":true},
          {"graphId":"order-8813","graphResponse":{"compositeResponse":[
             {"body":[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"acct"},
             {"body":[{"message":"Required fields are missing: [StageName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["StageName"]}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"opp"}]},
           "isSuccessful":false}]}"#;
        let results = parse_graph_response(body).unwrap();
        assert_eq!(results.len(), 2);
        let ok = &results[0];
        assert!(ok.is_successful && ok.class().is_none());
        assert_eq!(
            ok.response("acct").unwrap().id(),
            Some("001R00000033JNuIAM")
        );
        assert_eq!(ok.response("acct").unwrap().created(), Some(true));
        assert_eq!(ok.response("con").unwrap().created(), Some(false));
        let bad = &results[1];
        let roots = bad.root_errors();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].0, "opp");
        assert_eq!(roots[0].1.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(bad.class(), Some(ErrorClass::Permanent));
    }

    #[test]
    fn parses_camel_composite_failure() {
        // §3.2 (Camel fixture, allOrNone=true).
        let body = r#"{"compositeResponse":[
 {"body":[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}],
  "httpHeaders":{},"httpStatusCode":400,"referenceId":"NewPayment1"},
 {"body":[{"message":"Foreign key external ID: 0116 not found for field Invoice_External_Id__c in entity blng__Invoice__c","errorCode":"INVALID_FIELD","fields":[]}],
  "httpHeaders":{},"httpStatusCode":400,"referenceId":"NewPayment2"}]}"#;
        let resp: CompositeResponse = serde_json::from_str(body).unwrap();
        assert!(!resp.is_successful());
        let e0 = resp.composite_response[0].errors();
        assert!(e0[0].collateral);
        let roots = resp.root_errors();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].0, "NewPayment2");
        assert_eq!(roots[0].1.code, "INVALID_FIELD");
        assert_eq!(roots[0].1.class, ErrorClass::Permanent);
    }

    #[test]
    fn parses_cumulusci_subrequest_errors() {
        // §3.2 / §6.3 item 4 (CumulusCI): top level 200, subresponses 404 and 400.
        let body = r#"{"compositeResponse":[
 {"body":[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}],"httpHeaders":{},"httpStatusCode":404,"referenceId":"CCI__RefId__0__"},
 {"body":[{"errorCode":"INVALID_TYPE","message":"sObject type 'XYZZY' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name."}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"CCI__RefId__1__"}]}"#;
        let resp: CompositeResponse = serde_json::from_str(body).unwrap();
        let codes: Vec<String> = resp
            .root_errors()
            .into_iter()
            .map(|(_, e)| e.code)
            .collect();
        assert_eq!(codes, vec!["NOT_FOUND", "INVALID_TYPE"]);
        assert_eq!(
            dominant_class(resp.root_errors().iter().map(|(_, e)| e)),
            Some(ErrorClass::Permanent)
        );
        // A subresponse with a non-error body still yields one error by status.
        let odd = SubResponse {
            body: json!("Service Unavailable"),
            http_headers: BTreeMap::new(),
            http_status_code: 503,
            reference_id: "x".into(),
            upsert_key: None,
        };
        assert_eq!(odd.errors()[0].class, ErrorClass::Transient);
    }

    #[test]
    fn parses_collections_upsert_fixture() {
        // §3.1 (CumulusCI, PATCH …/composite/sobjects/Contact/Email).
        let body = br#"[ {"id":"0035500001H9ka4AAB","success":true,"errors":[],"created":false},
  {"id":"0035500001H9ka6AAB","success":true,"errors":[],"created":false},
  {"id":"0035500001H9kZuAAJ","success":true,"errors":[],"created":false},
  {"id":"0035500001H9kaAAAR","success":true,"errors":[],"created":true} ]"#;
        let items = parse_collection_response(body, Some("Email")).unwrap();
        assert_eq!(items.len(), 4);
        assert!(items.iter().all(|i| i.success && i.class().is_none()));
        assert_eq!(items[3].created, Some(true));
        assert_eq!(items[0].id.as_deref(), Some("0035500001H9ka4AAB"));
        // §6.3 item 2.
        let items = parse_collection_response(
            br#"[{"id":"0015500001QdQWaAAN","success":true,"errors":[],"created":true}]"#,
            Some("Id"),
        )
        .unwrap();
        assert_eq!(items[0].created, Some(true));
    }

    #[test]
    fn parses_collections_partial_failure() {
        // §3.1 (django-salesforce, from the v42 docs example).
        let body = br#"[ {"success":false,"errors":[{"statusCode":"DUPLICATES_DETECTED","message":"Use one of these records?","fields":[]}]},
  {"success":false,"errors":[{"statusCode":"ALL_OR_NONE_OPERATION_ROLLED_BACK",
     "message":"Record rolled back because not all records were valid and the request was using AllOrNone header","fields":[]}]} ]"#;
        let items = parse_collection_response(body, None).unwrap();
        assert_eq!(items[0].id, None);
        assert_eq!(items[0].errors[0].code, "DUPLICATES_DETECTED");
        assert_eq!(items[0].class(), Some(ErrorClass::Permanent));
        // Collections items carry no duplicateResult: matched ids are empty, not invented.
        assert_eq!(
            items[0].errors[0]
                .duplicates
                .as_ref()
                .unwrap()
                .matched_ids
                .len(),
            0
        );
        assert!(items[1].errors[0].collateral);
        assert_eq!(items[1].class(), Some(ErrorClass::Transient));
    }

    #[test]
    fn collections_duplicate_value_refined_by_key() {
        let body = br#"[{"success":false,"errors":[{"statusCode":"DUPLICATE_VALUE","message":"duplicate value found: Ext__c duplicates value on record with id: 0015500001QdQWaAAN","fields":["Ext__c"]}]},
                        {"success":false,"errors":[{"statusCode":"DUPLICATE_VALUE","message":"duplicate value found: Other__c duplicates value on record with id: 0015500001QdQWaAAN","fields":["Other__c"]}]}]"#;
        let items = parse_collection_response(body, Some("Ext__c")).unwrap();
        assert_eq!(items[0].class(), Some(ErrorClass::DuplicateRace));
        assert_eq!(items[1].class(), Some(ErrorClass::Permanent));
    }

    #[test]
    fn graph_node_upsert_key_refines_duplicate_value() {
        let node =
            GraphNode::upsert("v62.0", "acct", "Account", "Ext__c", "a/b", json!({})).unwrap();
        assert_eq!(node.upsert_key().as_deref(), Some("Ext__c"));
        let create = GraphNode::create("v62.0", "c", "Account", json!({})).unwrap();
        assert_eq!(create.upsert_key(), None);
        let body = json!([{"errorCode":"DUPLICATE_VALUE","message":"duplicate value found: Other__c duplicates value on record with id: 0015500001QdQWaAAN"}]);
        let mut responses = vec![SubResponse {
            body,
            http_headers: BTreeMap::new(),
            http_status_code: 400,
            reference_id: "acct".into(),
            upsert_key: None,
        }];
        assert_eq!(responses[0].errors()[0].class, ErrorClass::DuplicateRace);
        annotate_upsert_keys(&mut responses, &[node]);
        assert_eq!(responses[0].errors()[0].class, ErrorClass::Permanent);
    }

    #[test]
    fn with_type_adds_attributes() {
        let out = with_type(
            &[json!({"Name":"x"}), json!({"attributes":{"type":"Other"}})],
            "Account",
        )
        .unwrap();
        assert_eq!(out[0]["attributes"]["type"], "Account");
        assert_eq!(out[1]["attributes"]["type"], "Other");
        assert!(with_type(&[json!(1)], "Account").is_err());
    }
}
