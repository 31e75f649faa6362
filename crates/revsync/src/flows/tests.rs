use super::*;

fn cfg_with(object: &str, field: &str, template: &str) -> FlowsConfig {
    let mut cfg = FlowsConfig::default();
    let map = match object {
        "Account" => &mut cfg.mapping.account,
        "Contact" => &mut cfg.mapping.contact,
        "Opportunity" => &mut cfg.mapping.opportunity,
        _ => &mut cfg.mapping.case,
    };
    map.insert(field.into(), template.into());
    cfg
}

#[test]
fn defaults_compile_in_both_currency_modes() {
    Flows::new(&FlowsConfig::default()).unwrap();
    let cfg = FlowsConfig {
        multi_currency: true,
        ..FlowsConfig::default()
    };
    Flows::new(&cfg).unwrap();
}

#[test]
fn unknown_variable_names_object_field_and_variable() {
    let err = Flows::new(&cfg_with(
        "Opportunity",
        "Description",
        "Total {{ order.totl }}",
    ))
    .unwrap_err();
    assert_eq!(
        err,
        MappingError::UnknownVariable {
            object: "Opportunity".into(),
            field: "Description".into(),
            variable: "order.totl".into()
        }
    );
    assert!(err
        .to_string()
        .contains("flows.mapping.Opportunity.Description"));
    let err = Flows::new(&cfg_with("Contact", "Title", "{{ custmer.email }}")).unwrap_err();
    assert!(
        matches!(err, MappingError::UnknownVariable { ref variable, .. } if variable == "custmer.email")
    );
}

#[test]
fn syntax_errors_and_bad_field_names_are_reported() {
    let err = Flows::new(&cfg_with("Account", "Name", "{{ customer.company ")).unwrap_err();
    assert!(
        matches!(err, MappingError::Syntax { ref object, ref field, .. } if object == "Account" && field == "Name")
    );
    let err = Flows::new(&cfg_with("Account", "Bad Name", "x")).unwrap_err();
    assert!(matches!(err, MappingError::FieldName { .. }));
}

#[test]
fn templates_failing_on_empty_data_are_rejected() {
    // `none` has no length: the empty sample catches it at start-up.
    let err = Flows::new(&cfg_with(
        "Account",
        "Site",
        "{{ customer.company | length }}",
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            MappingError::Render {
                sample: "empty",
                ..
            }
        ),
        "{err:?}"
    );
    // Guarded, it is fine.
    Flows::new(&cfg_with(
        "Account",
        "Site",
        "{% if customer.company %}{{ customer.company | length }}{% endif %}",
    ))
    .unwrap();
}

#[test]
fn loops_and_globals_are_allowed() {
    Flows::new(&cfg_with(
        "Opportunity",
        "Description",
        "{% for l in order.lines %}{{ l.name }} x{{ l.quantity }}; {% endfor %}{{ range(2) | length }}",
    ))
    .unwrap();
}

#[test]
fn empty_override_removes_a_default_field() {
    let flows = Flows::new(&cfg_with("Opportunity", "Type", "")).unwrap();
    assert!(!flows.opportunity.fields_names().any(|f| f == "Type"));
    assert!(flows.opportunity.fields_names().any(|f| f == "Name"));
}

#[test]
fn config_round_trips_and_rejects_unknown_keys() {
    let cfg = FlowsConfig::default();
    let text = toml::to_string(&cfg).unwrap();
    let back: FlowsConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, cfg);
    let parsed: FlowsConfig = toml::from_str(
        "multi_currency = true\nbase_currency = \"EUR\"\n[orders]\nclosed_won_stage = \"Won\"\n[fx.rates]\nUSD = \"0.92\"\n[mapping.Opportunity]\nDescription = \"{{ order.refno }}\"\n",
    )
    .unwrap();
    assert!(parsed.multi_currency && parsed.orders.enabled && parsed.orders.chargeback_case);
    assert_eq!(parsed.orders.closed_won_stage, "Won");
    assert!(toml::from_str::<FlowsConfig>("multicurrency = true\n").is_err());
    assert!(toml::from_str::<FlowsConfig>("[mapping.Lead]\nX = \"y\"\n").is_err());
    assert!(toml::from_str::<FlowsConfig>("[orders]\nenable = true\n").is_err());
}

#[test]
fn invalid_config_values_name_the_key() {
    let mut cfg = FlowsConfig::default();
    cfg.orders.closed_won_stage = " ".into();
    assert_eq!(
        Flows::new(&cfg).unwrap_err(),
        MappingError::Config {
            key: "orders.closed_won_stage".into(),
            message: "must not be empty".into()
        }
    );
    let mut cfg = FlowsConfig::default();
    cfg.external_ids.order = "Order Ref".into();
    assert!(
        matches!(Flows::new(&cfg).unwrap_err(), MappingError::Config { ref key, .. } if key == "external_ids.order")
    );
}

#[test]
fn documented_variables_match_the_context() {
    fn flatten(prefix: &str, v: &minijinja::Value, out: &mut Vec<String>) {
        if v.kind() == minijinja::value::ValueKind::Map {
            for k in v.try_iter().unwrap() {
                let key = k.as_str().unwrap().to_owned();
                let child = v.get_attr(&key).unwrap();
                let p = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&p, &child, out);
            }
        } else if v.kind() == minijinja::value::ValueKind::Seq
            && v.get_item_by_index(0)
                .is_ok_and(|i| i.kind() == minijinja::value::ValueKind::Map)
        {
            out.push(prefix.to_owned());
            flatten(
                &format!("{prefix}[]"),
                &v.get_item_by_index(0).unwrap(),
                out,
            );
        } else {
            out.push(prefix.to_owned());
        }
    }
    let (c, o) = full_samples();
    let st = ContextSettings {
        multi_currency: false,
        base_currency: Currency::from_code("USD").unwrap(),
        closed_won_stage: "Closed Won",
    };
    let mut got = Vec::new();
    flatten("", &context::build(Some(&c), Some(&o), &st), &mut got);
    got.sort();
    got.dedup();
    let mut documented: Vec<String> = VARIABLES.iter().map(|(p, _)| (*p).to_owned()).collect();
    documented.sort();
    assert_eq!(got, documented);
}
