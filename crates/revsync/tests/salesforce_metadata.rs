//! The deployable org metadata under `salesforce/` (DESIGN §8) matches, field for field, the
//! org the Salesforce emulator runs by default (`sf-emulator/src/default_org.toml`) — the org
//! every test, the demo and the benchmarks write to. And the permission set grants the
//! integration user read and edit on every one of those fields.
//!
//! The metadata files are flat and written by us, so a tag reader is enough to check them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sf_emulator::org::{CustomFieldSpec, FieldType};
use sf_emulator::OrgDefinition;

fn metadata_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../salesforce/force-app/main/default")
}

/// The text of `<tag>…</tag>` directly in `xml`, if present once.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    assert_eq!(
        xml.matches(&open).count(),
        1,
        "<{name}> appears more than once"
    );
    Some(xml[start..end].trim())
}

fn flag(xml: &str, name: &str) -> bool {
    match tag(xml, name) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => panic!("<{name}>{other}</{name}> is not a boolean"),
    }
}

fn number(xml: &str, name: &str) -> Option<u32> {
    tag(xml, name).map(|v| v.parse().unwrap_or_else(|_| panic!("<{name}>{v}")))
}

/// Salesforce declares custom fields of Task and Event on Activity.
fn folder_of(object: &str) -> &str {
    match object {
        "Task" | "Event" => "Activity",
        other => other,
    }
}

/// Every `*.field-meta.xml`: (folder object, field name) → file text.
fn field_files() -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let objects = metadata_root().join("objects");
    for object in std::fs::read_dir(&objects).expect("salesforce/…/objects exists") {
        let object = object.unwrap().path();
        let fields = object.join("fields");
        let Ok(entries) = std::fs::read_dir(&fields) else {
            continue;
        };
        for f in entries {
            let path = f.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let name = file
                .strip_suffix(".field-meta.xml")
                .unwrap_or_else(|| panic!("unexpected file {}", path.display()));
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(
                (
                    object.file_name().unwrap().to_string_lossy().into_owned(),
                    name.to_owned(),
                ),
                text,
            );
        }
    }
    out
}

fn check_field(spec: &CustomFieldSpec, xml: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("{}.{}: {what}", spec.object, spec.name));
        }
    };
    expect("fullName", tag(xml, "fullName") == Some(spec.name.as_str()));
    expect(
        "CustomField root in the metadata namespace",
        xml.contains("<CustomField xmlns=\"http://soap.sforce.com/2006/04/metadata\">"),
    );
    let ty = tag(xml, "type").unwrap_or_default();
    match spec.ftype {
        FieldType::String => {
            expect("type Text", ty == "Text");
            expect("length", number(xml, "length") == spec.length);
        }
        FieldType::Currency => {
            expect("type Currency", ty == "Currency");
            expect("precision", number(xml, "precision") == spec.precision);
            expect("scale", number(xml, "scale") == spec.scale);
        }
        FieldType::Double => {
            expect("type Number", ty == "Number");
            expect("precision", number(xml, "precision") == spec.precision);
            expect("scale", number(xml, "scale") == spec.scale);
        }
        FieldType::Date => expect("type Date", ty == "Date"),
        other => expect(&format!("a mapping for {other:?}"), false),
    }
    expect("externalId", flag(xml, "externalId") == spec.external_id);
    expect("unique", flag(xml, "unique") == spec.unique);
    expect(
        "caseSensitive",
        flag(xml, "caseSensitive") == spec.case_sensitive,
    );
    expect("required", flag(xml, "required") == spec.required);
    expect(
        "a label",
        tag(xml, "label").is_some_and(|l| !l.is_empty() && l.len() <= 40),
    );
    problems
}

#[test]
fn every_field_of_the_default_org_is_deployable_metadata_and_nothing_else_is() {
    let org = OrgDefinition::default();
    let files = field_files();
    let mut problems = Vec::new();
    let mut expected_keys = Vec::new();
    for spec in &org.file.fields {
        let key = (folder_of(&spec.object).to_owned(), spec.name.clone());
        match files.get(&key) {
            Some(xml) => problems.extend(check_field(spec, xml)),
            None => problems.push(format!(
                "missing salesforce/force-app/main/default/objects/{}/fields/{}.field-meta.xml",
                key.0, key.1
            )),
        }
        expected_keys.push(key);
    }
    for key in files.keys() {
        if !expected_keys.contains(key) {
            problems.push(format!(
                "{}.{} is in salesforce/ but not in the emulator's default org",
                key.0, key.1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "metadata and default org differ:\n{}",
        problems.join("\n")
    );
    assert!(files.len() >= 15, "DESIGN §8 lists at least 15 fields");
}

#[test]
fn the_permission_set_grants_read_and_edit_on_every_field_and_object_revsync_writes() {
    let path = metadata_root().join("permissionsets/revsync_Integration.permissionset-meta.xml");
    let xml = std::fs::read_to_string(&path).expect("permission set exists");
    let blocks = |name: &str| -> Vec<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        xml.split(&open)
            .skip(1)
            .map(|rest| rest.split(&close).next().unwrap_or_default().to_owned())
            .collect()
    };
    let fields: BTreeMap<String, String> = blocks("fieldPermissions")
        .into_iter()
        .map(|b| (tag(&b, "field").unwrap_or_default().to_owned(), b))
        .collect();
    for spec in &OrgDefinition::default().file.fields {
        let name = format!("{}.{}", folder_of(&spec.object), spec.name);
        let b = fields
            .get(&name)
            .unwrap_or_else(|| panic!("no fieldPermissions for {name}"));
        assert!(
            flag(b, "readable") && flag(b, "editable"),
            "{name}: read and edit"
        );
    }
    let objects: BTreeMap<String, String> = blocks("objectPermissions")
        .into_iter()
        .map(|b| (tag(&b, "object").unwrap_or_default().to_owned(), b))
        .collect();
    for object in ["Account", "Contact", "Opportunity", "Case", "Lead"] {
        let b = objects
            .get(object)
            .unwrap_or_else(|| panic!("no objectPermissions for {object}"));
        for p in ["allowCreate", "allowRead", "allowEdit"] {
            assert!(flag(b, p), "{object}: {p}");
        }
        assert!(!flag(b, "allowDelete"), "{object}: revsync never deletes");
    }
    let users: Vec<String> = blocks("userPermissions")
        .iter()
        .filter(|b| flag(b, "enabled"))
        .map(|b| tag(b, "name").unwrap_or_default().to_owned())
        .collect();
    for p in ["ApiEnabled", "EditTask"] {
        assert!(users.iter().any(|u| u == p), "user permission {p}");
    }
}

#[test]
fn the_project_file_points_the_cli_at_force_app() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../salesforce/sfdx-project.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["packageDirectories"][0]["path"], "force-app");
    assert_eq!(v["packageDirectories"][0]["default"], true);
    assert!(v["sourceApiVersion"]
        .as_str()
        .is_some_and(|s| s.ends_with(".0")));
}
