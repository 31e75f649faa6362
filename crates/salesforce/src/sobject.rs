//! Single-record sObject operations (reference §2.1, §2.2), describe and `/limits`.

use crate::client::{Client, Request};
use crate::error::{error_from_response, SalesforceError};
use crate::limits::OrgLimits;
use crate::soql::is_identifier;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Characters left as-is in an encoded path segment: RFC 3986 unreserved minus `.`.
/// `.` is encoded too because Salesforce treats a trailing `.json`/`.xml` on a REST URI as a
/// format suffix (so `/Email/a@b.json` would be ambiguous) — that Salesforce decodes `%2E`
/// before looking for the suffix is UNCONFIRMED.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Percent-encode one path segment (an external id value): `/`, `#`, `%`, `?`, spaces and
/// all non-ASCII bytes (UTF-8) are escaped.
pub fn encode_path_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// Check an external id value is usable as a path segment.
pub(crate) fn check_ext_value(value: &str) -> Result<(), SalesforceError> {
    if value.is_empty() {
        return Err(SalesforceError::InvalidRequest(
            "external id value must not be empty".to_owned(),
        ));
    }
    // URL parsers treat `%2E` and `%2E%2E` segments as `.`/`..` and remove them, so such a
    // value cannot be sent as a path segment at all.
    if value == "." || value == ".." {
        return Err(SalesforceError::InvalidRequest(format!(
            "external id value {value:?} cannot be used in a URL path"
        )));
    }
    Ok(())
}

pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), SalesforceError> {
    if is_identifier(name) && !name.contains('.') {
        Ok(())
    } else {
        Err(SalesforceError::InvalidRequest(format!(
            "{kind} {name:?} is not a valid API name"
        )))
    }
}

/// Record ids (15/18 alphanumeric characters) are also path segments.
pub(crate) fn check_record_id(id: &str) -> Result<(), SalesforceError> {
    if (id.len() == 15 || id.len() == 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidRequest(format!(
            "{id:?} is not a Salesforce record id"
        )))
    }
}

/// `sobjects/{Object}/{ExtField}/{encoded value}` relative to `/services/data/vXX.X/`.
pub(crate) fn upsert_suffix(
    sobject: &str,
    ext_field: &str,
    ext_value: &str,
) -> Result<String, SalesforceError> {
    check_name("sObject", sobject)?;
    check_name("external id field", ext_field)?;
    check_ext_value(ext_value)?;
    Ok(format!(
        "sobjects/{sobject}/{ext_field}/{}",
        encode_path_segment(ext_value)
    ))
}

/// Result of a create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreateResult {
    /// New record id.
    pub id: String,
}

/// Result of an upsert by external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertResult {
    /// Record id (inserted or updated).
    pub id: String,
    /// `true` when the upsert inserted a new record.
    pub created: bool,
}

#[derive(Deserialize)]
struct RawSaveResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<bool>,
}

/// One field of a describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Field type (`string`, `email`, `currency`, `reference`, `picklist`, …).
    #[serde(rename = "type")]
    pub field_type: String,
    /// Settable on create.
    #[serde(default)]
    pub createable: bool,
    /// Settable on update.
    #[serde(default)]
    pub updateable: bool,
    /// Accepts null.
    #[serde(default)]
    pub nillable: bool,
    /// Salesforce fills a default on create.
    #[serde(default)]
    pub defaulted_on_create: bool,
    /// Flagged External ID.
    #[serde(default)]
    pub external_id: bool,
    /// Usable as an upsert key (`idLookup`).
    #[serde(default)]
    pub id_lookup: bool,
    /// Unique.
    #[serde(default)]
    pub unique: bool,
    /// Maximum length for text fields.
    #[serde(default)]
    pub length: u32,
    /// Objects a reference field points to.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference field (`Account` for `AccountId`).
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// Picklist values.
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
}

impl FieldDescribe {
    /// Required on create: createable, not nillable and not defaulted (reference §5.1).
    pub fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted_on_create
    }
}

/// One picklist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PicklistValue {
    /// API value.
    pub value: String,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Active.
    #[serde(default)]
    pub active: bool,
    /// Default value.
    #[serde(default)]
    pub default_value: bool,
}

/// `GET /sobjects/{Object}/describe` (the parts a writer needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectDescribe {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Object is createable.
    #[serde(default)]
    pub createable: bool,
    /// Object is updateable.
    #[serde(default)]
    pub updateable: bool,
    /// Object is queryable.
    #[serde(default)]
    pub queryable: bool,
    /// Fields.
    #[serde(default)]
    pub fields: Vec<FieldDescribe>,
}

impl SObjectDescribe {
    /// Look a field up by API name (case-insensitive, as Salesforce is).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Multi-currency org (`CurrencyIsoCode` present).
    pub fn is_multi_currency(&self) -> bool {
        self.field("CurrencyIsoCode").is_some()
    }
}

impl Client {
    /// `POST /sobjects/{Object}/`. Not idempotent: never retry blindly after a timeout
    /// (prefer [`Client::upsert`]).
    pub async fn create<B: Serialize + ?Sized>(
        &self,
        sobject: &str,
        body: &B,
    ) -> Result<CreateResult, SalesforceError> {
        check_name("sObject", sobject)?;
        let req = Request::new(
            Method::POST,
            self.data_path(&format!("sobjects/{sobject}/")),
        )
        .json(body)?;
        let resp = self.execute(req).await?.error_for_status()?;
        resp.json("create")
    }

    /// `GET /sobjects/{Object}/{Id}?fields=…` (all fields when `fields` is empty).
    pub async fn get<T: DeserializeOwned>(
        &self,
        sobject: &str,
        id: &str,
        fields: &[&str],
    ) -> Result<T, SalesforceError> {
        check_name("sObject", sobject)?;
        check_record_id(id)?;
        self.get_path(format!("sobjects/{sobject}/{id}"), fields)
            .await
    }

    /// `GET /sobjects/{Object}/{ExtField}/{value}`. 300 → [`SalesforceError::MultipleMatches`].
    pub async fn get_by_external_id<T: DeserializeOwned>(
        &self,
        sobject: &str,
        ext_field: &str,
        ext_value: &str,
        fields: &[&str],
    ) -> Result<T, SalesforceError> {
        let suffix = upsert_suffix(sobject, ext_field, ext_value)?;
        self.get_path(suffix, fields).await
    }

    async fn get_path<T: DeserializeOwned>(
        &self,
        suffix: String,
        fields: &[&str],
    ) -> Result<T, SalesforceError> {
        let mut req = Request::new(Method::GET, self.data_path(&suffix));
        if !fields.is_empty() {
            if let Some(bad) = fields.iter().find(|f| !is_identifier(f)) {
                return Err(SalesforceError::InvalidRequest(format!(
                    "field {bad:?} is not a valid API name"
                )));
            }
            req = req.query("fields", fields.join(","));
        }
        let resp = self.execute(req).await?.error_for_status()?;
        resp.json("get")
    }

    /// `PATCH /sobjects/{Object}/{Id}` with the changed fields (204).
    pub async fn update<B: Serialize + ?Sized>(
        &self,
        sobject: &str,
        id: &str,
        body: &B,
    ) -> Result<(), SalesforceError> {
        check_name("sObject", sobject)?;
        check_record_id(id)?;
        let req = Request::new(
            Method::PATCH,
            self.data_path(&format!("sobjects/{sobject}/{id}")),
        )
        .json(body)?;
        self.execute(req).await?.error_for_status()?;
        Ok(())
    }

    /// `DELETE /sobjects/{Object}/{Id}` (204).
    pub async fn delete(&self, sobject: &str, id: &str) -> Result<(), SalesforceError> {
        check_name("sObject", sobject)?;
        check_record_id(id)?;
        let req = Request::new(
            Method::DELETE,
            self.data_path(&format!("sobjects/{sobject}/{id}")),
        );
        self.execute(req).await?.error_for_status()?;
        Ok(())
    }

    /// Upsert by external id: `PATCH /sobjects/{Object}/{ExtField}/{value}` (reference §2.2).
    /// The value is percent-encoded as one path segment. 201 → `created: true`, 200 →
    /// `created: false`; 300 → [`SalesforceError::MultipleMatches`]; a `DUPLICATE_VALUE` on
    /// `ext_field` is classed [`crate::ErrorClass::DuplicateRace`] (retry once). Safe to replay.
    pub async fn upsert<B: Serialize + ?Sized>(
        &self,
        sobject: &str,
        ext_field: &str,
        ext_value: &str,
        body: &B,
    ) -> Result<UpsertResult, SalesforceError> {
        let suffix = upsert_suffix(sobject, ext_field, ext_value)?;
        let req = Request::new(Method::PATCH, self.data_path(&suffix)).json(body)?;
        let resp = self.execute(req).await?;
        if !resp.is_success() {
            return Err(
                error_from_response(resp.status, &resp.body).refine_for_external_id(ext_field)
            );
        }
        if resp.status == 204 {
            return Err(SalesforceError::decode(
                "upsert",
                "204 without a body: the org answered like API <= v45.0; no record id returned",
            ));
        }
        let raw: RawSaveResult = resp.json("upsert")?;
        let id = raw
            .id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SalesforceError::decode("upsert", "response has no id"))?;
        Ok(UpsertResult {
            id,
            created: raw.created.unwrap_or(resp.status == 201),
        })
    }

    /// `GET /sobjects/{Object}/describe`. Costs one API call: cache the result.
    pub async fn describe(&self, sobject: &str) -> Result<SObjectDescribe, SalesforceError> {
        check_name("sObject", sobject)?;
        let req = Request::new(
            Method::GET,
            self.data_path(&format!("sobjects/{sobject}/describe")),
        );
        let resp = self.execute(req).await?.error_for_status()?;
        resp.json("describe")
    }

    /// `GET /limits`. Costs one API call itself; poll at most every few minutes.
    pub async fn limits(&self) -> Result<OrgLimits, SalesforceError> {
        let req = Request::new(Method::GET, self.data_path("limits"));
        let resp = self.execute(req).await?.error_for_status()?;
        let v: serde_json::Value = resp.json("limits")?;
        OrgLimits::from_json(&v)
            .ok_or_else(|| SalesforceError::decode("limits", "body is not an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_hostile_external_ids() {
        assert_eq!(encode_path_segment("C123"), "C123");
        assert_eq!(encode_path_segment("a/b"), "a%2Fb");
        assert_eq!(encode_path_segment("a#b"), "a%23b");
        assert_eq!(encode_path_segment("100%"), "100%25");
        assert_eq!(encode_path_segment("a b"), "a%20b");
        assert_eq!(encode_path_segment("a?b=c"), "a%3Fb%3Dc");
        assert_eq!(encode_path_segment("a@b.com"), "a%40b%2Ecom");
        assert_eq!(encode_path_segment("Zoë"), "Zo%C3%AB");
        assert_eq!(encode_path_segment("-_~"), "-_~");
        assert_eq!(encode_path_segment(".."), "%2E%2E");
    }

    #[test]
    fn upsert_suffix_validates_names() {
        assert_eq!(
            upsert_suffix("Account", "TwoCheckout_Customer_Ref__c", "C/1").unwrap(),
            "sobjects/Account/TwoCheckout_Customer_Ref__c/C%2F1"
        );
        assert!(upsert_suffix("Account/../x", "F__c", "v").is_err());
        assert!(upsert_suffix("Account", "F__c?x", "v").is_err());
        assert!(upsert_suffix("Account", "F__c", "").is_err());
        assert!(upsert_suffix("Account", "F__c", ".").is_err());
        assert!(upsert_suffix("Account", "F__c", "..").is_err());
        assert!(upsert_suffix("Account", "F__c", "...").is_ok());
        assert!(check_record_id("001000000000001AAA").is_ok());
        assert!(check_record_id("001/../x").is_err());
    }

    proptest! {
        #[test]
        fn encoded_segment_is_one_segment_and_decodes_back(v in any::<String>()) {
            prop_assume!(check_ext_value(&v).is_ok());
            let enc = encode_path_segment(&v);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~%".contains(&b)));
            let url = url::Url::parse(&format!("https://x.example/a/{enc}/z")).unwrap();
            let segs: Vec<&str> = url.path_segments().unwrap().collect();
            prop_assert_eq!(segs.len(), 3);
            let decoded = percent_encoding::percent_decode_str(segs[1]).decode_utf8().unwrap();
            prop_assert_eq!(decoded.as_ref(), v.as_str());
        }
    }

    #[test]
    fn describe_parses_real_shape() {
        // Trimmed from a recorded Contact describe (reference §5.1 / [R1] field names).
        let body = r#"{"name":"Contact","label":"Contact","createable":true,"updateable":true,"queryable":true,
          "fields":[
            {"name":"LastName","label":"Last Name","type":"string","createable":true,"updateable":true,
             "nillable":false,"defaultedOnCreate":false,"externalId":false,"idLookup":false,"unique":false,
             "length":80,"referenceTo":[],"relationshipName":null,"picklistValues":[]},
            {"name":"Email","label":"Email","type":"email","createable":true,"updateable":true,
             "nillable":true,"defaultedOnCreate":false,"externalId":false,"idLookup":true,"unique":false,
             "length":80,"referenceTo":[],"relationshipName":null,"picklistValues":[]},
            {"name":"AccountId","label":"Account ID","type":"reference","createable":true,"updateable":true,
             "nillable":true,"defaultedOnCreate":false,"externalId":false,"idLookup":false,"unique":false,
             "length":18,"referenceTo":["Account"],"relationshipName":"Account","picklistValues":[]},
            {"name":"LeadSource","label":"Lead Source","type":"picklist","createable":true,"updateable":true,
             "nillable":true,"defaultedOnCreate":false,"picklistValues":[
               {"active":true,"defaultValue":false,"label":"Web","validFor":null,"value":"Web"}]},
            {"name":"TwoCheckout_Customer_Ref__c","type":"string","createable":true,"updateable":true,
             "nillable":true,"externalId":true,"idLookup":true,"unique":true,"length":255}
          ]}"#;
        let d: SObjectDescribe = serde_json::from_str(body).unwrap();
        assert!(d.field("lastname").unwrap().required_on_create());
        assert!(!d.field("Email").unwrap().required_on_create());
        assert!(d.field("Email").unwrap().id_lookup);
        let ext = d.field("TwoCheckout_Customer_Ref__c").unwrap();
        assert!(ext.external_id && ext.unique);
        assert_eq!(
            d.field("AccountId").unwrap().relationship_name.as_deref(),
            Some("Account")
        );
        assert_eq!(
            d.field("LeadSource").unwrap().picklist_values[0].value,
            "Web"
        );
        assert!(!d.is_multi_currency());
    }
}
