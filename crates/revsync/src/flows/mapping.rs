//! Field mappings: Salesforce field name → template, compiled once and checked at start-up.
//!
//! # Template rules
//!
//! - Templates use the minijinja syntax (`{{ customer.email }}`, `{% if … %}`) over the
//!   variables of [`super::context::VARIABLES`]; an unknown variable is a start-up error
//!   ([`MappingError::UnknownVariable`]).
//! - A template that is exactly one expression (`{{ order.total }}`) keeps the expression's
//!   type: decimals (money) become JSON numbers with the currency's minor units, integers
//!   numbers, booleans booleans, lists lists. Anything else renders to a JSON string.
//! - A field whose value is `none` or renders to an empty (or blank) string is **left out**
//!   of the intent: an intent never clears a Salesforce field, and fields that do not exist in
//!   the org's mode (e.g. `CurrencyIsoCode` in a single-currency org) are simply not sent.
//!
//! # Decimal numbers in JSON
//!
//! `serde_json` is built without `arbitrary_precision`, so a JSON number is an `i64`, `u64`
//! or `f64`. [`decimal_to_json`] writes whole amounts as integers and other amounts as the
//! `f64` parsed from the decimal's text (`serde_json::Number::from_str`), then checks that the
//! number prints back to the *same decimal value*. That holds for every decimal with at most
//! 15 significant digits (f64 keeps 15 decimal digits; `serde_json` prints the shortest text
//! that round-trips), i.e. every amount below 10¹³ with two decimals. Trailing zeros are not
//! kept (`12.50` is written `12.5`), which is the same number to Salesforce. A decimal that
//! does not survive the check (more than 15 significant digits) is written as a JSON string of
//! the exact decimal, which Salesforce's REST API also accepts for number fields (ASSUMED).

use std::collections::BTreeMap;
use std::str::FromStr;

use minijinja::value::ValueKind;
use minijinja::{Environment, UndefinedBehavior, Value};
use rust_decimal::Decimal;

use super::context::{DecimalValue, VARIABLES};

/// A mapping that cannot be used. Each variant names the object and field: fix that entry
/// of the `[flows.mapping.<Object>]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The template does not parse.
    #[error("flows.mapping.{object}.{field}: template syntax error: {message}")]
    Syntax {
        /// sObject.
        object: String,
        /// Field.
        field: String,
        /// What the template engine said.
        message: String,
    },
    /// The template uses a variable the context does not have.
    #[error("flows.mapping.{object}.{field}: unknown variable `{variable}` (known variables start with customer., order., opportunity., chargeback.; see the documented list)")]
    UnknownVariable {
        /// sObject.
        object: String,
        /// Field.
        field: String,
        /// The unknown variable path.
        variable: String,
    },
    /// The template fails on a sample context (e.g. a filter applied to a value that can be
    /// `none`: guard it with `{% if … %}` or `| default("")`).
    #[error("flows.mapping.{object}.{field}: template fails on {sample} sample data: {message}")]
    Render {
        /// sObject.
        object: String,
        /// Field.
        field: String,
        /// `full` or `empty`.
        sample: &'static str,
        /// What the template engine said.
        message: String,
    },
    /// A field name that is not a valid Salesforce field API name.
    #[error("flows.mapping.{object}: {field:?} is not a Salesforce field name (letters, digits, underscores)")]
    FieldName {
        /// sObject.
        object: String,
        /// Field.
        field: String,
    },
    /// A configuration value is invalid (names the key).
    #[error("flows.{key}: {message}")]
    Config {
        /// Config key below `flows.`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// One compiled field.
#[derive(Debug, Clone)]
struct CompiledField {
    field: String,
    template_name: String,
    /// The inner expression when the whole template is one `{{ … }}`.
    expression: Option<String>,
}

/// The compiled mapping of one sObject.
#[derive(Debug, Clone)]
pub struct ObjectMapping {
    object: String,
    fields: Vec<CompiledField>,
}

impl ObjectMapping {
    /// The sObject.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The mapped field names.
    pub fn fields_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.field.as_str())
    }
}

/// All compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// The inner expression of a template made of exactly one `{{ … }}`.
fn single_expression(template: &str) -> Option<String> {
    let t = template.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if ["{{", "}}", "{%", "%}", "{#", "#}"]
        .iter()
        .any(|m| inner.contains(m))
        || inner.trim().is_empty()
    {
        return None;
    }
    Some(inner.trim().to_owned())
}

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True when `path` (from `undeclared_variables(true)`) is a documented variable, a prefix
/// of one (`order`), or an attribute / method of one (`customer.email.upper`).
fn known_variable(path: &str, globals: &[String]) -> bool {
    let root = path.split('.').next().unwrap_or(path);
    if globals.iter().any(|g| g == root) {
        return true;
    }
    VARIABLES.iter().any(|(v, _)| {
        let v = v.split("[]").next().unwrap_or(v);
        v == path
            || v.strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('.'))
            || path
                .strip_prefix(v)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

impl Templates {
    /// An empty template set with strict undefined behaviour and no auto-escaping.
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Templates { env }
    }

    /// Compiles and checks one object's mapping against the sample contexts.
    pub fn compile(
        &mut self,
        object: &str,
        mapping: &BTreeMap<String, String>,
        samples: &[(&'static str, Value)],
    ) -> Result<ObjectMapping, MappingError> {
        let globals: Vec<String> = self.env.globals().map(|(n, _)| n.to_owned()).collect();
        let mut fields = Vec::new();
        for (field, source) in mapping {
            if !valid_field_name(field) {
                return Err(MappingError::FieldName {
                    object: object.to_owned(),
                    field: field.clone(),
                });
            }
            let name = format!("{object}.{field}");
            self.env
                .add_template_owned(name.clone(), source.clone())
                .map_err(|e| MappingError::Syntax {
                    object: object.to_owned(),
                    field: field.clone(),
                    message: e.to_string(),
                })?;
            let tmpl = self
                .env
                .get_template(&name)
                .map_err(|e| MappingError::Syntax {
                    object: object.to_owned(),
                    field: field.clone(),
                    message: e.to_string(),
                })?;
            let mut undeclared: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
            undeclared.sort();
            if let Some(unknown) = undeclared.iter().find(|v| !known_variable(v, &globals)) {
                return Err(MappingError::UnknownVariable {
                    object: object.to_owned(),
                    field: field.clone(),
                    variable: unknown.clone(),
                });
            }
            let compiled = CompiledField {
                field: field.clone(),
                template_name: name,
                expression: single_expression(source),
            };
            for (sample, ctx) in samples {
                self.render_field(&compiled, ctx)
                    .map_err(|message| MappingError::Render {
                        object: object.to_owned(),
                        field: field.clone(),
                        sample,
                        message,
                    })?;
            }
            fields.push(compiled);
        }
        Ok(ObjectMapping {
            object: object.to_owned(),
            fields,
        })
    }

    fn render_field(
        &self,
        f: &CompiledField,
        ctx: &Value,
    ) -> Result<Option<serde_json::Value>, String> {
        if let Some(expr) = &f.expression {
            let e = self
                .env
                .compile_expression(expr)
                .map_err(|e| e.to_string())?;
            let v = e.eval(ctx).map_err(|e| e.to_string())?;
            return Ok(to_json(&v));
        }
        let tmpl = self
            .env
            .get_template(&f.template_name)
            .map_err(|e| e.to_string())?;
        let out = tmpl.render(ctx).map_err(|e| e.to_string())?;
        Ok((!out.trim().is_empty()).then_some(serde_json::Value::String(out)))
    }

    /// Renders every field of `mapping`; fields that are none or empty are left out. A field
    /// that fails to render (only possible for data the start-up samples did not cover) is
    /// left out and logged.
    pub fn render(
        &self,
        mapping: &ObjectMapping,
        ctx: &Value,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for f in &mapping.fields {
            match self.render_field(f, ctx) {
                Ok(Some(v)) => {
                    out.insert(f.field.clone(), v);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(object = %mapping.object, field = %f.field, %error, "field mapping failed to render; field left out");
                }
            }
        }
        out
    }
}

fn to_json(v: &Value) -> Option<serde_json::Value> {
    if let Some(d) = v.downcast_object_ref::<DecimalValue>() {
        return Some(decimal_to_json(d.0));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            (!s.trim().is_empty()).then(|| serde_json::Value::String(s.to_owned()))
        }
        ValueKind::Plain => Some(serde_json::Value::String(v.to_string())),
        _ => serde_json::to_value(v).ok(),
    }
}

/// A decimal as a JSON number of the same value (see the module doc), or as a string of the
/// exact decimal when no `f64` holds it exactly.
pub fn decimal_to_json(d: Decimal) -> serde_json::Value {
    if d.fract().is_zero() {
        if let Ok(i) = i64::try_from(d.trunc()) {
            return serde_json::Value::Number(i.into());
        }
    }
    let text = d.to_string();
    if let Ok(n) = serde_json::Number::from_str(&text) {
        if Decimal::from_str(&n.to_string()).is_ok_and(|back| back == d) {
            return serde_json::Value::Number(n);
        }
    }
    serde_json::Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_json_representation() {
        let j = |s: &str| decimal_to_json(Decimal::from_str(s).unwrap()).to_string();
        assert_eq!(j("12.50"), "12.5");
        assert_eq!(j("1500"), "1500");
        assert_eq!(j("100.00"), "100");
        assert_eq!(j("-20.00"), "-20");
        assert_eq!(j("4.125"), "4.125");
        assert_eq!(j("0.10"), "0.1");
        assert_eq!(j("0.000"), "0");
        assert_eq!(j("9999999999999.99"), "9999999999999.99");
        // 17 significant digits: not exact in an f64, so an exact string.
        assert_eq!(j("123456789012345.67"), "\"123456789012345.67\"");
    }

    #[test]
    fn single_expression_detection() {
        assert_eq!(
            single_expression("{{ order.total }}").as_deref(),
            Some("order.total")
        );
        assert_eq!(single_expression(" {{- a -}} ").as_deref(), Some("a"));
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
        assert_eq!(single_expression("x {{ a }}"), None);
        assert_eq!(single_expression("{% if a %}{{ a }}{% endif %}"), None);
    }

    #[test]
    fn variable_paths() {
        assert!(known_variable("customer.email", &[]));
        assert!(known_variable("customer", &[]));
        assert!(known_variable("customer.email.upper", &[]));
        assert!(known_variable("order.lines", &[]));
        assert!(!known_variable("customer.emial", &[]));
        assert!(!known_variable("cust", &[]));
        assert!(!known_variable("customer.e", &[]));
        assert!(known_variable("range", &["range".into()]));
    }

    proptest! {
        /// Every amount with at most 15 significant digits is a JSON number of the same value.
        #[test]
        fn decimals_round_trip_through_json(units in -999_999_999_999_999i64..999_999_999_999_999i64, scale in 0u32..5) {
            let d = Decimal::new(units, scale);
            let v = decimal_to_json(d);
            prop_assert!(v.is_number(), "{} became {}", d, v);
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(Decimal::from_str(&text).unwrap(), d);
        }

        #[test]
        fn any_decimal_keeps_its_value(units in any::<i64>(), scale in 0u32..10) {
            let d = Decimal::new(units, scale);
            let v = decimal_to_json(d);
            let back = match &v {
                serde_json::Value::Number(n) => Decimal::from_str(&n.to_string()).unwrap(),
                serde_json::Value::String(s) => Decimal::from_str(s).unwrap(),
                other => panic!("{other}"),
            };
            prop_assert_eq!(back, d);
        }
    }
}
