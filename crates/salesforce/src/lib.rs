//! Salesforce protocol client for revsync's sink.
//!
//! This crate owns everything needed to talk to a Salesforce org: the OAuth flows
//! ([`auth`]: JWT bearer, client credentials, refresh token, username-password), a cached
//! token with single-flight re-authentication, the REST client ([`Client`]) with
//! `Sforce-Limit-Info` tracking and an in-flight cap, sObject CRUD and external-id upsert,
//! SOQL with pagination and literal escaping ([`soql`]), describe and `/limits`, Composite,
//! Composite Graph, sObject Collections ([`composite`]), Bulk API 2.0 ingest ([`bulk`]) and
//! one classified error type ([`SalesforceError`] / [`ApiError`] / [`ErrorClass`]).
//!
//! It must not know anything about revsync's store, flows, outbox or 2Checkout: callers pass
//! object/field names and JSON bodies and get typed Salesforce results back. Retrying,
//! backoff, batching policy and budget decisions belong to the caller; this crate only
//! re-authenticates once on an expired session and replays that one request.
//!
//! ```no_run
//! use salesforce::{Client, ClientCredentials, Credentials, ErrorClass};
//! # async fn demo() -> Result<(), salesforce::SalesforceError> {
//! let creds = Credentials::ClientCredentials(ClientCredentials::new(
//!     "consumer-key", "consumer-secret", "https://acme.my.salesforce.com"));
//! let client = Client::builder(creds).max_in_flight(8).build()?;
//! match client.upsert("Account", "TwoCheckout_Customer_Ref__c", "C/123",
//!                     &serde_json::json!({"Name": "Acme Ltd"})).await {
//!     Ok(r) => println!("{} created={}", r.id, r.created),
//!     Err(e) if e.class() == ErrorClass::DuplicateRace => { /* retry once */ }
//!     Err(e) if e.class().is_retryable() => { /* backoff, retry */ }
//!     Err(e) => { /* dead-letter with e.errors() */ }
//! }
//! println!("api usage: {:?}", client.api_usage());
//! # Ok(()) }
//! ```
//!
//! Protocol facts come from `shared/reference/salesforce.md`; items that reference marks
//! UNCONFIRMED are flagged in the doc comments where they shape behaviour.

pub mod auth;
pub mod bulk;
mod client;
pub mod composite;
pub mod error;
pub mod limits;
pub mod query;
pub mod sobject;
pub mod soql;

pub use auth::{
    AccessToken, ClientAuthMethod, ClientCredentials, Credentials, JwtBearer, Password, PrivateKey,
    RefreshToken, Secret, TokenSource,
};
pub use bulk::{
    BulkOperation, FailedRow, IngestJobRequest, IngestOutcome, JobInfo, JobState, PollPolicy,
    SuccessRow,
};
pub use client::{
    Client, ClientBuilder, ClientConfig, UsageCallback, DEFAULT_API_VERSION, MIN_API_VERSION,
};
pub use composite::{
    CollectionItemResult, CompositeRequest, CompositeResponse, Graph, GraphNode, GraphResult,
    SubMethod, SubRequest, SubResponse,
};
pub use error::{
    ApiError, DuplicateMatches, DuplicateValue, ErrorClass, LimitKind, SalesforceError,
    TransportKind,
};
pub use limits::{parse_limit_info, ApiUsage, LimitInfo, LimitValue, OrgLimits};
pub use query::{QueryPage, QueryPager};
pub use sobject::{
    encode_path_segment, CreateResult, FieldDescribe, PicklistValue, SObjectDescribe, UpsertResult,
};

/// Re-exported so callers of [`Client::request_json`] need no direct `reqwest` dependency.
pub use reqwest::Method;
