//! The org model: which sObjects exist, their fields and field properties.
//!
//! Standard objects are built in code from the describe facts in the reference (required
//! fields, idLookup fields, picklists). Custom fields (and custom objects) come from an org
//! definition file in TOML or JSON; [`OrgDefinition::default`] embeds the custom fields of
//! DESIGN.md §8.
//!
//! Assumptions (not confirmed against a live org): `StageName` and `CurrencyIsoCode` behave
//! as restricted picklists; other standard picklists are unrestricted (the API accepts any
//! value, as for real unrestricted picklists).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Field data types, named as in describe output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Id,
    String,
    Textarea,
    Email,
    Phone,
    Url,
    Picklist,
    Multipicklist,
    Combobox,
    Boolean,
    Int,
    Double,
    Currency,
    Percent,
    Date,
    Datetime,
    Reference,
}

impl FieldType {
    /// Name used in describe `type`.
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::Combobox => "combobox",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Reference => "reference",
        }
    }

    /// SOAP type used in describe `soapType`.
    pub fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::Datetime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    /// Whether values are text.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Textarea
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::Picklist
                | FieldType::Multipicklist
                | FieldType::Combobox
        )
    }

    /// Whether values are numbers.
    pub fn is_number(self) -> bool {
        matches!(
            self,
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent
        )
    }
}

/// One field of an sObject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub ftype: FieldType,
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub defaulted_on_create: bool,
    pub external_id: bool,
    pub unique: bool,
    pub id_lookup: bool,
    pub case_sensitive: bool,
    pub calculated: bool,
    pub custom: bool,
    pub name_field: bool,
    pub picklist_values: Vec<String>,
    pub default_picklist_value: Option<String>,
    pub restricted_picklist: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
}

impl FieldDef {
    fn new(name: &str, ftype: FieldType) -> Self {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::String | FieldType::Combobox | FieldType::Picklist => 255,
            FieldType::Email => 80,
            FieldType::Phone => 40,
            FieldType::Url => 255,
            FieldType::Textarea => 32000,
            FieldType::Multipicklist => 4099,
            _ => 0,
        };
        let (precision, scale) = match ftype {
            FieldType::Currency | FieldType::Double => (18, 2),
            FieldType::Percent => (3, 0),
            FieldType::Int => (9, 0),
            _ => (0, 0),
        };
        FieldDef {
            name: name.to_string(),
            label: label_from_name(name),
            ftype,
            length,
            precision,
            scale,
            nillable: !matches!(ftype, FieldType::Boolean | FieldType::Id),
            createable: true,
            updateable: true,
            defaulted_on_create: ftype == FieldType::Boolean,
            external_id: false,
            unique: false,
            id_lookup: ftype == FieldType::Id,
            case_sensitive: false,
            calculated: false,
            custom: name.ends_with("__c"),
            name_field: false,
            picklist_values: Vec::new(),
            default_picklist_value: None,
            restricted_picklist: false,
            reference_to: Vec::new(),
            relationship_name: None,
        }
    }

    /// Required on create: createable, not nillable and not defaulted.
    pub fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted_on_create
    }

    /// Whether this field can be used as an upsert key (external id or idLookup).
    pub fn usable_as_upsert_key(&self) -> bool {
        self.external_id || self.id_lookup
    }

    fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }
    fn required(mut self) -> Self {
        self.nillable = false;
        self.defaulted_on_create = false;
        self
    }
    fn readonly(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }
    fn create_only(mut self) -> Self {
        self.updateable = false;
        self
    }
    fn lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }
    fn name_field(mut self) -> Self {
        self.name_field = true;
        self
    }
    fn defaulted(mut self) -> Self {
        self.defaulted_on_create = true;
        self
    }
    fn picklist(mut self, values: &[&str], default: Option<&str>, restricted: bool) -> Self {
        self.picklist_values = values.iter().map(|v| v.to_string()).collect();
        self.default_picklist_value = default.map(str::to_string);
        self.restricted_picklist = restricted;
        if default.is_some() {
            self.defaulted_on_create = true;
        }
        self
    }
    fn refs(mut self, to: &[&str], relationship: &str) -> Self {
        self.reference_to = to.iter().map(|v| v.to_string()).collect();
        self.relationship_name = Some(relationship.to_string());
        self
    }
    fn calc(mut self) -> Self {
        self.calculated = true;
        self.createable = false;
        self.updateable = false;
        self
    }
}

fn label_from_name(name: &str) -> String {
    let base = name.trim_end_matches("__c");
    let base = base
        .strip_suffix("Id")
        .filter(|b| !b.is_empty())
        .unwrap_or(base);
    let mut out = String::new();
    let chars: Vec<char> = base.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            out.push(' ');
            continue;
        }
        if i > 0 && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || (prev.is_uppercase() && next_lower) {
                out.push(' ');
            }
        }
        out.push(*c);
    }
    if name.ends_with("Id") && name.len() > 2 && !name.ends_with("__c") {
        out.push_str(" ID");
    }
    out
}

/// One sObject type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: String,
    pub custom: bool,
    pub fields: Vec<FieldDef>,
    #[serde(skip)]
    index: HashMap<String, usize>,
    #[serde(skip)]
    rel_index: HashMap<String, usize>,
}

impl ObjectDef {
    fn new(name: &str, key_prefix: &str, plural: &str) -> Self {
        ObjectDef {
            name: name.to_string(),
            label: label_from_name(name),
            label_plural: plural.to_string(),
            key_prefix: key_prefix.to_string(),
            custom: name.ends_with("__c"),
            fields: Vec::new(),
            index: HashMap::new(),
            rel_index: HashMap::new(),
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        self.rel_index = self
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.relationship_name
                    .as_ref()
                    .map(|r| (r.to_ascii_lowercase(), i))
            })
            .collect();
    }

    fn push(&mut self, f: FieldDef) {
        if let Some(i) = self.index.get(&f.name.to_ascii_lowercase()).copied() {
            self.fields[i] = f;
        } else {
            self.fields.push(f);
        }
        self.reindex();
    }

    /// Field by case-insensitive name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|i| &self.fields[*i])
    }

    /// Reference field by case-insensitive relationship name (e.g. `Account` → `AccountId`).
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        self.rel_index
            .get(&name.to_ascii_lowercase())
            .map(|i| &self.fields[*i])
    }

    /// Whether the object has an `OwnerId` field.
    pub fn has_owner(&self) -> bool {
        self.field("OwnerId").is_some()
    }
}

/// A custom field declared in an org definition file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomFieldSpec {
    pub object: String,
    pub name: String,
    #[serde(rename = "type")]
    pub ftype: FieldType,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub length: Option<u32>,
    #[serde(default)]
    pub precision: Option<u32>,
    #[serde(default)]
    pub scale: Option<u32>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default)]
    pub picklist_values: Vec<String>,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub reference_to: Option<String>,
    #[serde(default)]
    pub relationship_name: Option<String>,
}

/// A custom object declared in an org definition file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomObjectSpec {
    pub name: String,
    pub key_prefix: String,
    #[serde(default)]
    pub label_plural: Option<String>,
}

/// The org definition file format (TOML or JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrgDefinitionFile {
    #[serde(default, rename = "object")]
    pub objects: Vec<CustomObjectSpec>,
    #[serde(default, rename = "field")]
    pub fields: Vec<CustomFieldSpec>,
}

/// Errors loading an org definition.
#[derive(Debug, thiserror::Error)]
pub enum OrgDefinitionError {
    #[error("cannot read org definition {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("org definition is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("org definition is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("org definition: field {field} names unknown object {object}; declare it under [[object]] or fix the name")]
    UnknownObject { object: String, field: String },
    #[error("org definition: field {object}.{field}: {reason}")]
    BadField {
        object: String,
        field: String,
        reason: String,
    },
}

/// The default custom fields (DESIGN.md §8), embedded.
pub const DEFAULT_ORG_TOML: &str = include_str!("default_org.toml");

/// Custom fields and objects on top of the standard objects.
#[derive(Debug, Clone)]
pub struct OrgDefinition {
    pub file: OrgDefinitionFile,
}

impl Default for OrgDefinition {
    fn default() -> Self {
        OrgDefinition::from_toml_str(DEFAULT_ORG_TOML).expect("embedded default org is valid")
    }
}

impl OrgDefinition {
    /// Only standard objects, no custom fields.
    pub fn standard_only() -> Self {
        OrgDefinition {
            file: OrgDefinitionFile::default(),
        }
    }

    pub fn from_toml_str(text: &str) -> Result<Self, OrgDefinitionError> {
        let file: OrgDefinitionFile = toml::from_str(text)?;
        Ok(OrgDefinition { file })
    }

    pub fn from_json_str(text: &str) -> Result<Self, OrgDefinitionError> {
        let file: OrgDefinitionFile = serde_json::from_str(text)?;
        Ok(OrgDefinition { file })
    }

    /// Loads a `.json` file as JSON and anything else as TOML.
    pub fn load(path: &Path) -> Result<Self, OrgDefinitionError> {
        let text = std::fs::read_to_string(path).map_err(|source| OrgDefinitionError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
    }
}

/// The compiled schema of an org: every object with its fields.
#[derive(Debug, Clone)]
pub struct Schema {
    objects: Vec<ObjectDef>,
    index: HashMap<String, usize>,
    prefix_index: HashMap<String, usize>,
    pub multi_currency: bool,
}

impl Schema {
    /// Object by case-insensitive name.
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|i| &self.objects[*i])
    }

    /// Object owning an id's key prefix.
    pub fn object_for_prefix(&self, prefix: &str) -> Option<&ObjectDef> {
        self.prefix_index.get(prefix).map(|i| &self.objects[*i])
    }

    pub fn objects(&self) -> &[ObjectDef] {
        &self.objects
    }

    /// Builds the schema: standard objects plus the definition's custom objects and fields.
    pub fn build(
        def: &OrgDefinition,
        multi_currency: bool,
        active_currencies: &[String],
        corporate_currency: &str,
    ) -> Result<Schema, OrgDefinitionError> {
        let mut objects = standard_objects();
        for spec in &def.file.objects {
            let plural = spec
                .label_plural
                .clone()
                .unwrap_or_else(|| format!("{}s", label_from_name(&spec.name)));
            let mut o = ObjectDef::new(&spec.name, &spec.key_prefix, &plural);
            system_fields(&mut o, true);
            o.push(
                FieldDef::new("Name", FieldType::String)
                    .len(80)
                    .name_field(),
            );
            objects.push(o);
        }
        for o in objects.iter_mut() {
            o.reindex();
        }
        for spec in &def.file.fields {
            let obj = objects
                .iter_mut()
                .find(|o| o.name.eq_ignore_ascii_case(&spec.object))
                .ok_or_else(|| OrgDefinitionError::UnknownObject {
                    object: spec.object.clone(),
                    field: spec.name.clone(),
                })?;
            if !spec.name.ends_with("__c") {
                return Err(OrgDefinitionError::BadField {
                    object: spec.object.clone(),
                    field: spec.name.clone(),
                    reason: "custom field names must end in __c".into(),
                });
            }
            let mut f = FieldDef::new(&spec.name, spec.ftype);
            if let Some(l) = &spec.label {
                f.label = l.clone();
            }
            if let Some(n) = spec.length {
                f.length = n;
            }
            if let Some(n) = spec.precision {
                f.precision = n;
            }
            if let Some(n) = spec.scale {
                f.scale = n;
            }
            if spec.required {
                f = f.required();
            }
            f.external_id = spec.external_id;
            f.unique = spec.unique;
            f.case_sensitive = spec.case_sensitive;
            if !spec.picklist_values.is_empty() {
                f.picklist_values = spec.picklist_values.clone();
                f.restricted_picklist = spec.restricted;
            }
            if spec.ftype == FieldType::Reference {
                let to = spec
                    .reference_to
                    .clone()
                    .ok_or_else(|| OrgDefinitionError::BadField {
                        object: spec.object.clone(),
                        field: spec.name.clone(),
                        reason: "reference fields need reference_to".into(),
                    })?;
                f.reference_to = vec![to];
                f.relationship_name = Some(
                    spec.relationship_name
                        .clone()
                        .unwrap_or_else(|| format!("{}__r", spec.name.trim_end_matches("__c"))),
                );
            }
            if spec.external_id && !spec.ftype.is_text() && !spec.ftype.is_number() {
                return Err(OrgDefinitionError::BadField {
                    object: spec.object.clone(),
                    field: spec.name.clone(),
                    reason: "external ids must be text, email or number fields".into(),
                });
            }
            obj.push(f);
        }
        if multi_currency {
            let mut codes: Vec<String> = active_currencies.to_vec();
            if !codes.iter().any(|c| c == corporate_currency) {
                codes.insert(0, corporate_currency.to_string());
            }
            let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
            for o in objects.iter_mut() {
                if o.name == "CurrencyType" {
                    continue;
                }
                o.push(
                    FieldDef::new("CurrencyIsoCode", FieldType::Picklist)
                        .len(3)
                        .picklist(&refs, Some(corporate_currency), true),
                );
                if let Some(last) = o.fields.last_mut() {
                    last.label = "Currency ISO Code".into();
                }
            }
        } else {
            objects.retain(|o| o.name != "CurrencyType");
        }
        let index = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.to_ascii_lowercase(), i))
            .collect();
        let prefix_index = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key_prefix.clone(), i))
            .collect();
        Ok(Schema {
            objects,
            index,
            prefix_index,
            multi_currency,
        })
    }
}

fn system_fields(o: &mut ObjectDef, owned: bool) {
    o.push(FieldDef::new("Id", FieldType::Id).readonly());
    let mut deleted = FieldDef::new("IsDeleted", FieldType::Boolean).readonly();
    deleted.defaulted_on_create = true;
    o.push(deleted);
    if owned {
        o.push(
            FieldDef::new("OwnerId", FieldType::Reference)
                .refs(&["User"], "Owner")
                .defaulted(),
        );
    }
    o.push(FieldDef::new("CreatedDate", FieldType::Datetime).readonly());
    o.push(
        FieldDef::new("CreatedById", FieldType::Reference)
            .refs(&["User"], "CreatedBy")
            .readonly(),
    );
    o.push(FieldDef::new("LastModifiedDate", FieldType::Datetime).readonly());
    o.push(
        FieldDef::new("LastModifiedById", FieldType::Reference)
            .refs(&["User"], "LastModifiedBy")
            .readonly(),
    );
    o.push(FieldDef::new("SystemModstamp", FieldType::Datetime).readonly());
    for f in o.fields.iter_mut() {
        f.nillable = !matches!(f.name.as_str(), "Id" | "IsDeleted" | "OwnerId");
        if f.readonly_system() {
            f.nillable = false;
            f.defaulted_on_create = true;
        }
    }
}

impl FieldDef {
    fn readonly_system(&self) -> bool {
        matches!(
            self.name.as_str(),
            "CreatedDate"
                | "CreatedById"
                | "LastModifiedDate"
                | "LastModifiedById"
                | "SystemModstamp"
        )
    }
}

fn address(o: &mut ObjectDef, prefix: &str) {
    o.push(FieldDef::new(&format!("{prefix}Street"), FieldType::Textarea).len(255));
    o.push(FieldDef::new(&format!("{prefix}City"), FieldType::String).len(40));
    o.push(FieldDef::new(&format!("{prefix}State"), FieldType::String).len(80));
    o.push(FieldDef::new(&format!("{prefix}PostalCode"), FieldType::String).len(20));
    o.push(FieldDef::new(&format!("{prefix}Country"), FieldType::String).len(80));
}

const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];

/// Opportunity stages: (name, probability, closed, won, forecast category).
pub const STAGES: &[(&str, f64, bool, bool, &str)] = &[
    ("Prospecting", 10.0, false, false, "Pipeline"),
    ("Qualification", 10.0, false, false, "Pipeline"),
    ("Needs Analysis", 20.0, false, false, "Pipeline"),
    ("Value Proposition", 50.0, false, false, "Pipeline"),
    ("Id. Decision Makers", 60.0, false, false, "Pipeline"),
    ("Perception Analysis", 70.0, false, false, "Pipeline"),
    ("Proposal/Price Quote", 75.0, false, false, "Pipeline"),
    ("Negotiation/Review", 90.0, false, false, "Pipeline"),
    ("Closed Won", 100.0, true, true, "Closed"),
    ("Closed Lost", 0.0, true, false, "Omitted"),
];

fn standard_objects() -> Vec<ObjectDef> {
    use FieldType::*;
    let mut out = Vec::new();

    let mut user = ObjectDef::new("User", "005", "Users");
    system_fields(&mut user, false);
    user.push(FieldDef::new("Username", String).len(80).required());
    if let Some(f) = user.fields.last_mut() {
        f.unique = true;
        f.id_lookup = true;
    }
    user.push(FieldDef::new("FirstName", String).len(40));
    user.push(FieldDef::new("LastName", String).len(80).required());
    user.push(FieldDef::new("Name", String).len(121).calc().name_field());
    user.push(FieldDef::new("Email", Email).len(128).required());
    user.push(FieldDef::new("Alias", String).len(8).required());
    user.push(FieldDef::new("IsActive", Boolean));
    user.push(FieldDef::new("TimeZoneSidKey", Picklist).picklist(
        &["America/Los_Angeles", "Europe/London", "GMT"],
        Some("GMT"),
        false,
    ));
    user.push(FieldDef::new("LocaleSidKey", Picklist).picklist(
        &["en_US", "en_GB"],
        Some("en_US"),
        false,
    ));
    user.push(FieldDef::new("EmailEncodingKey", Picklist).picklist(
        &["UTF-8", "ISO-8859-1"],
        Some("UTF-8"),
        false,
    ));
    user.push(FieldDef::new("LanguageLocaleKey", Picklist).picklist(
        &["en_US"],
        Some("en_US"),
        false,
    ));
    user.push(FieldDef::new("Title", String).len(80));
    out.push(user);

    let mut acct = ObjectDef::new("Account", "001", "Accounts");
    system_fields(&mut acct, true);
    acct.push(
        FieldDef::new("Name", String)
            .len(255)
            .required()
            .name_field(),
    );
    acct.push(FieldDef::new("AccountNumber", String).len(40));
    acct.push(FieldDef::new("Site", String).len(80));
    acct.push(FieldDef::new("Type", Picklist).picklist(
        &[
            "Prospect",
            "Customer - Direct",
            "Customer - Channel",
            "Channel Partner / Reseller",
            "Installation Partner",
            "Technology Partner",
            "Other",
        ],
        None,
        false,
    ));
    acct.push(FieldDef::new("Industry", Picklist).picklist(
        &[
            "Agriculture",
            "Banking",
            "Communications",
            "Consulting",
            "Education",
            "Electronics",
            "Finance",
            "Healthcare",
            "Manufacturing",
            "Media",
            "Retail",
            "Technology",
            "Other",
        ],
        None,
        false,
    ));
    acct.push(FieldDef::new("ParentId", Reference).refs(&["Account"], "Parent"));
    address(&mut acct, "Billing");
    address(&mut acct, "Shipping");
    acct.push(FieldDef::new("Phone", Phone));
    acct.push(FieldDef::new("Fax", Phone));
    acct.push(FieldDef::new("Website", Url));
    acct.push(FieldDef::new("AnnualRevenue", Currency));
    acct.push(FieldDef::new("NumberOfEmployees", Int).len(0));
    acct.push(FieldDef::new("Description", Textarea));
    out.push(acct);

    let mut contact = ObjectDef::new("Contact", "003", "Contacts");
    system_fields(&mut contact, true);
    contact.push(FieldDef::new("AccountId", Reference).refs(&["Account"], "Account"));
    contact.push(FieldDef::new("Salutation", Picklist).picklist(
        &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
        None,
        false,
    ));
    contact.push(FieldDef::new("FirstName", String).len(40));
    contact.push(FieldDef::new("LastName", String).len(80).required());
    contact.push(FieldDef::new("Name", String).len(121).calc().name_field());
    address(&mut contact, "Mailing");
    contact.push(FieldDef::new("Phone", Phone));
    contact.push(FieldDef::new("MobilePhone", Phone));
    contact.push(FieldDef::new("Email", Email).lookup());
    contact.push(FieldDef::new("Title", String).len(128));
    contact.push(FieldDef::new("Department", String).len(80));
    contact.push(FieldDef::new("LeadSource", Picklist).picklist(LEAD_SOURCES, None, false));
    contact.push(FieldDef::new("Birthdate", Date));
    contact.push(FieldDef::new("Description", Textarea));
    contact.push(FieldDef::new("HasOptedOutOfEmail", Boolean));
    out.push(contact);

    let mut lead = ObjectDef::new("Lead", "00Q", "Leads");
    system_fields(&mut lead, true);
    lead.push(FieldDef::new("FirstName", String).len(40));
    lead.push(FieldDef::new("LastName", String).len(80).required());
    lead.push(FieldDef::new("Name", String).len(121).calc().name_field());
    lead.push(FieldDef::new("Salutation", Picklist).picklist(
        &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
        None,
        false,
    ));
    lead.push(FieldDef::new("Title", String).len(128));
    lead.push(FieldDef::new("Company", String).len(255).required());
    address(&mut lead, "");
    lead.push(FieldDef::new("Phone", Phone));
    lead.push(FieldDef::new("MobilePhone", Phone));
    lead.push(FieldDef::new("Email", Email).lookup());
    lead.push(FieldDef::new("Website", Url));
    lead.push(FieldDef::new("Description", Textarea));
    lead.push(FieldDef::new("LeadSource", Picklist).picklist(LEAD_SOURCES, None, false));
    lead.push(FieldDef::new("Status", Picklist).picklist(
        &[
            "Open - Not Contacted",
            "Working - Contacted",
            "Closed - Converted",
            "Closed - Not Converted",
        ],
        Some("Open - Not Contacted"),
        false,
    ));
    lead.push(FieldDef::new("Industry", Picklist).picklist(
        &[
            "Agriculture",
            "Banking",
            "Consulting",
            "Education",
            "Finance",
            "Technology",
            "Other",
        ],
        None,
        false,
    ));
    lead.push(FieldDef::new("Rating", Picklist).picklist(&["Hot", "Warm", "Cold"], None, false));
    lead.push(FieldDef::new("AnnualRevenue", Currency));
    lead.push(FieldDef::new("NumberOfEmployees", Int));
    lead.push(FieldDef::new("IsConverted", Boolean).create_only());
    lead.push(FieldDef::new("ConvertedDate", Date).readonly());
    lead.push(
        FieldDef::new("ConvertedAccountId", Reference)
            .refs(&["Account"], "ConvertedAccount")
            .readonly(),
    );
    lead.push(
        FieldDef::new("ConvertedContactId", Reference)
            .refs(&["Contact"], "ConvertedContact")
            .readonly(),
    );
    lead.push(
        FieldDef::new("ConvertedOpportunityId", Reference)
            .refs(&["Opportunity"], "ConvertedOpportunity")
            .readonly(),
    );
    out.push(lead);

    let mut opp = ObjectDef::new("Opportunity", "006", "Opportunities");
    system_fields(&mut opp, true);
    opp.push(FieldDef::new("AccountId", Reference).refs(&["Account"], "Account"));
    opp.push(
        FieldDef::new("Name", String)
            .len(120)
            .required()
            .lookup()
            .name_field(),
    );
    opp.push(FieldDef::new("Description", Textarea));
    let stage_names: Vec<&str> = STAGES.iter().map(|s| s.0).collect();
    opp.push(
        FieldDef::new("StageName", Picklist)
            .len(255)
            .picklist(&stage_names, None, true)
            .required(),
    );
    opp.push(FieldDef::new("Amount", Currency));
    opp.push(FieldDef::new("Probability", Percent).defaulted());
    opp.push(FieldDef::new("CloseDate", Date).required());
    opp.push(FieldDef::new("Type", Picklist).picklist(
        &[
            "Existing Customer - Upgrade",
            "Existing Customer - Replacement",
            "Existing Customer - Downgrade",
            "New Customer",
        ],
        None,
        false,
    ));
    opp.push(FieldDef::new("NextStep", String).len(255));
    opp.push(FieldDef::new("LeadSource", Picklist).picklist(LEAD_SOURCES, None, false));
    opp.push(FieldDef::new("IsClosed", Boolean).readonly());
    opp.push(FieldDef::new("IsWon", Boolean).readonly());
    opp.push(
        FieldDef::new("ForecastCategoryName", Picklist)
            .picklist(
                &["Omitted", "Pipeline", "Best Case", "Commit", "Closed"],
                None,
                false,
            )
            .defaulted(),
    );
    opp.push(FieldDef::new("CampaignId", Reference).refs(&["Campaign"], "Campaign"));
    opp.push(FieldDef::new("Pricebook2Id", Reference).refs(&["Pricebook2"], "Pricebook2"));
    out.push(opp);

    let mut product = ObjectDef::new("Product2", "01t", "Products");
    system_fields(&mut product, false);
    product.push(
        FieldDef::new("Name", String)
            .len(255)
            .required()
            .name_field(),
    );
    product.push(FieldDef::new("ProductCode", String).len(255));
    product.push(FieldDef::new("Description", Textarea).len(4000));
    product.push(FieldDef::new("IsActive", Boolean));
    product.push(FieldDef::new("Family", Picklist).picklist(&["None"], None, false));
    out.push(product);

    let mut pb = ObjectDef::new("Pricebook2", "01s", "Price Books");
    system_fields(&mut pb, false);
    pb.push(
        FieldDef::new("Name", String)
            .len(255)
            .required()
            .name_field(),
    );
    pb.push(FieldDef::new("IsActive", Boolean));
    pb.push(FieldDef::new("IsStandard", Boolean).readonly());
    pb.push(FieldDef::new("Description", String).len(255));
    out.push(pb);

    let mut pbe = ObjectDef::new("PricebookEntry", "01u", "Price Book Entries");
    system_fields(&mut pbe, false);
    pbe.push(
        FieldDef::new("Name", String)
            .len(255)
            .readonly()
            .name_field(),
    );
    pbe.push(
        FieldDef::new("Pricebook2Id", Reference)
            .refs(&["Pricebook2"], "Pricebook2")
            .required()
            .create_only(),
    );
    pbe.push(
        FieldDef::new("Product2Id", Reference)
            .refs(&["Product2"], "Product2")
            .required()
            .create_only(),
    );
    pbe.push(FieldDef::new("UnitPrice", Currency).required());
    pbe.push(FieldDef::new("IsActive", Boolean));
    pbe.push(FieldDef::new("UseStandardPrice", Boolean));
    pbe.push(FieldDef::new("ProductCode", String).len(255).readonly());
    out.push(pbe);

    let mut oli = ObjectDef::new("OpportunityLineItem", "00k", "Opportunity Product");
    system_fields(&mut oli, false);
    oli.push(
        FieldDef::new("OpportunityId", Reference)
            .refs(&["Opportunity"], "Opportunity")
            .required()
            .create_only(),
    );
    oli.push(
        FieldDef::new("PricebookEntryId", Reference)
            .refs(&["PricebookEntry"], "PricebookEntry")
            .create_only(),
    );
    oli.push(
        FieldDef::new("Product2Id", Reference)
            .refs(&["Product2"], "Product2")
            .create_only(),
    );
    oli.push(
        FieldDef::new("Name", String)
            .len(376)
            .readonly()
            .name_field(),
    );
    oli.push(FieldDef::new("Quantity", Double).required());
    oli.push(FieldDef::new("UnitPrice", Currency));
    oli.push(FieldDef::new("ListPrice", Currency).readonly());
    oli.push(FieldDef::new("TotalPrice", Currency));
    oli.push(FieldDef::new("ServiceDate", Date));
    oli.push(FieldDef::new("Description", String).len(255));
    out.push(oli);

    let mut task = ObjectDef::new("Task", "00T", "Tasks");
    system_fields(&mut task, true);
    task.push(FieldDef::new("WhoId", Reference).refs(&["Contact", "Lead"], "Who"));
    task.push(
        FieldDef::new("WhatId", Reference)
            .refs(&["Account", "Opportunity", "Case", "Campaign"], "What"),
    );
    task.push(FieldDef::new("Subject", Combobox).len(255).picklist(
        &["Call", "Send Letter", "Send Quote", "Other"],
        None,
        false,
    ));
    task.push(FieldDef::new("ActivityDate", Date));
    task.push(FieldDef::new("Status", Picklist).picklist(
        &[
            "Not Started",
            "In Progress",
            "Completed",
            "Waiting on someone else",
            "Deferred",
        ],
        Some("Not Started"),
        false,
    ));
    task.push(FieldDef::new("Priority", Picklist).picklist(
        &["High", "Normal", "Low"],
        Some("Normal"),
        false,
    ));
    task.push(FieldDef::new("IsClosed", Boolean).readonly());
    task.push(FieldDef::new("Description", Textarea));
    task.push(FieldDef::new("Type", Picklist).picklist(
        &["Call", "Email", "Meeting", "Other"],
        None,
        false,
    ));
    task.push(
        FieldDef::new("TaskSubtype", Picklist)
            .picklist(&["Task", "Email", "Call"], Some("Task"), false)
            .create_only(),
    );
    out.push(task);

    let mut case = ObjectDef::new("Case", "500", "Cases");
    system_fields(&mut case, true);
    case.push(
        FieldDef::new("CaseNumber", String)
            .len(30)
            .readonly()
            .lookup()
            .name_field(),
    );
    case.push(FieldDef::new("AccountId", Reference).refs(&["Account"], "Account"));
    case.push(FieldDef::new("ContactId", Reference).refs(&["Contact"], "Contact"));
    case.push(FieldDef::new("Subject", String).len(255));
    case.push(FieldDef::new("Description", Textarea));
    case.push(FieldDef::new("Status", Picklist).picklist(
        &["New", "Working", "Escalated", "Closed"],
        Some("New"),
        false,
    ));
    case.push(FieldDef::new("Priority", Picklist).picklist(
        &["High", "Medium", "Low"],
        Some("Medium"),
        false,
    ));
    case.push(FieldDef::new("Origin", Picklist).picklist(&["Phone", "Email", "Web"], None, false));
    case.push(FieldDef::new("Reason", Picklist).picklist(
        &[
            "Installation",
            "Equipment Complexity",
            "Performance",
            "Breakdown",
            "Equipment Design",
            "Feedback",
            "Other",
        ],
        None,
        false,
    ));
    case.push(FieldDef::new("Type", Picklist).picklist(
        &[
            "Mechanical",
            "Electrical",
            "Electronic",
            "Structural",
            "Other",
        ],
        None,
        false,
    ));
    case.push(FieldDef::new("SuppliedEmail", Email));
    case.push(FieldDef::new("SuppliedName", String).len(80));
    case.push(FieldDef::new("IsClosed", Boolean).readonly());
    out.push(case);

    let mut campaign = ObjectDef::new("Campaign", "701", "Campaigns");
    system_fields(&mut campaign, true);
    campaign.push(
        FieldDef::new("Name", String)
            .len(80)
            .required()
            .name_field(),
    );
    campaign.push(FieldDef::new("Type", Picklist).picklist(
        &[
            "Conference",
            "Webinar",
            "Trade Show",
            "Public Relations",
            "Partners",
            "Referral Program",
            "Advertisement",
            "Banner Ads",
            "Direct Mail",
            "Email",
            "Telemarketing",
            "Other",
        ],
        None,
        false,
    ));
    campaign.push(FieldDef::new("Status", Picklist).picklist(
        &["Planned", "In Progress", "Completed", "Aborted"],
        None,
        false,
    ));
    campaign.push(FieldDef::new("IsActive", Boolean));
    campaign.push(FieldDef::new("StartDate", Date));
    campaign.push(FieldDef::new("EndDate", Date));
    campaign.push(FieldDef::new("Description", Textarea));
    campaign.push(FieldDef::new("ParentId", Reference).refs(&["Campaign"], "Parent"));
    out.push(campaign);

    let mut cm = ObjectDef::new("CampaignMember", "00v", "Campaign Members");
    system_fields(&mut cm, false);
    cm.push(
        FieldDef::new("CampaignId", Reference)
            .refs(&["Campaign"], "Campaign")
            .required()
            .create_only(),
    );
    cm.push(
        FieldDef::new("ContactId", Reference)
            .refs(&["Contact"], "Contact")
            .create_only(),
    );
    cm.push(
        FieldDef::new("LeadId", Reference)
            .refs(&["Lead"], "Lead")
            .create_only(),
    );
    cm.push(FieldDef::new("Status", Picklist).picklist(
        &["Planned", "Received", "Responded", "Sent"],
        Some("Sent"),
        false,
    ));
    cm.push(FieldDef::new("HasResponded", Boolean).readonly());
    out.push(cm);

    // Key prefix of CurrencyType is an assumption (not in the reference).
    let mut ct = ObjectDef::new("CurrencyType", "02C", "Currencies");
    system_fields(&mut ct, false);
    ct.push(
        FieldDef::new("IsoCode", Picklist)
            .len(3)
            .required()
            .create_only(),
    );
    ct.push(FieldDef::new("ConversionRate", Double).required());
    ct.push(FieldDef::new("DecimalPlaces", Int).required());
    ct.push(FieldDef::new("IsActive", Boolean));
    ct.push(FieldDef::new("IsCorporate", Boolean).readonly());
    out.push(ct);

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_org_has_design_fields() {
        let s = Schema::build(&OrgDefinition::default(), false, &[], "USD").unwrap();
        let acct = s.object("account").unwrap();
        let f = acct.field("twocheckout_customer_ref__c").unwrap();
        assert!(f.external_id && f.unique && f.custom);
        assert!(
            s.object("Opportunity")
                .unwrap()
                .field("TwoCheckout_Order_Ref__c")
                .unwrap()
                .external_id
        );
        assert!(
            s.object("Task")
                .unwrap()
                .field("TwoCheckout_Event_Key__c")
                .unwrap()
                .unique
        );
        assert!(s
            .object("Lead")
            .unwrap()
            .field("TwoCheckout_Trial_Ref__c")
            .is_some());
        assert!(acct.field("CurrencyIsoCode").is_none());
        assert!(s.object("CurrencyType").is_none());
        assert_eq!(s.object_for_prefix("003").unwrap().name, "Contact");
    }

    #[test]
    fn required_fields_match_reference() {
        let s = Schema::build(&OrgDefinition::default(), true, &["EUR".into()], "USD").unwrap();
        let req = |o: &str| -> Vec<String> {
            s.object(o)
                .unwrap()
                .fields
                .iter()
                .filter(|f| f.required_on_create())
                .map(|f| f.name.clone())
                .collect()
        };
        assert_eq!(req("Account"), vec!["Name"]);
        assert_eq!(req("Contact"), vec!["LastName"]);
        assert_eq!(req("Lead"), vec!["LastName", "Company"]);
        assert_eq!(req("Opportunity"), vec!["Name", "StageName", "CloseDate"]);
        assert!(req("Case").is_empty());
        assert!(req("Task").is_empty());
        let cur = s
            .object("Opportunity")
            .unwrap()
            .field("CurrencyIsoCode")
            .unwrap();
        assert_eq!(cur.picklist_values, vec!["USD", "EUR"]);
        assert!(s.object("CurrencyType").is_some());
    }

    #[test]
    fn labels() {
        assert_eq!(label_from_name("AccountId"), "Account ID");
        assert_eq!(label_from_name("StageName"), "Stage Name");
        assert_eq!(
            label_from_name("TwoCheckout_Customer_Ref__c"),
            "Two Checkout Customer Ref"
        );
    }

    #[test]
    fn bad_definitions_are_rejected() {
        let bad = r#"[[field]]
object = "Nope"
name = "X__c"
type = "string""#;
        let def = OrgDefinition::from_toml_str(bad).unwrap();
        assert!(matches!(
            Schema::build(&def, false, &[], "USD"),
            Err(OrgDefinitionError::UnknownObject { .. })
        ));
        let json = r#"{"field":[{"object":"Account","name":"Score__c","type":"double"}]}"#;
        let def = OrgDefinition::from_json_str(json).unwrap();
        let s = Schema::build(&def, false, &[], "USD").unwrap();
        assert!(s.object("Account").unwrap().field("Score__c").is_some());
    }
}
