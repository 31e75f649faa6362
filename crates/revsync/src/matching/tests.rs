use super::*;
use proptest::prelude::*;

fn customer(key: &str, email: Option<&str>, company: Option<&str>) -> CustomerRecord {
    let mut c = CustomerRecord::new(key);
    c.email = email.map(str::to_owned);
    c.company = company.map(str::to_owned);
    c
}

fn account(id: &str, name: &str, website: Option<&str>) -> SalesforceCandidate {
    SalesforceCandidate {
        sobject: "Account".into(),
        id: id.into(),
        account_name: Some(name.into()),
        website: website.map(str::to_owned),
        ..Default::default()
    }
}

fn contact(
    id: &str,
    email: &str,
    account_id: Option<&str>,
    account_name: Option<&str>,
) -> SalesforceCandidate {
    SalesforceCandidate {
        sobject: "Contact".into(),
        id: id.into(),
        email: Some(email.into()),
        account_id: account_id.map(str::to_owned),
        account_name: account_name.map(str::to_owned),
        ..Default::default()
    }
}

fn t() -> MatchThresholds {
    MatchThresholds::default()
}

#[test]
fn email_normalisation() {
    assert_eq!(
        normalise_email("  Ada@Example.COM ").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        normalise_email("ada+news@example.com").as_deref(),
        Some("ada+news@example.com")
    );
    assert_eq!(normalise_email("not-an-email"), None);
    assert_eq!(normalise_email("@example.com"), None);
    assert_eq!(normalise_email("a@b@c.com"), None);
    assert_eq!(
        email_domain("X@Sub.Acme.CO.uk").as_deref(),
        Some("sub.acme.co.uk")
    );
}

#[test]
fn free_mail_domains() {
    for d in [
        "gmail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "icloud.com",
        "proton.me",
        "gmx.de",
        "gmx.net",
        "mail.ru",
        "qq.com",
        "163.com",
        "yandex.ru",
        "yandex.com",
        "aol.com",
        "GMAIL.COM",
    ] {
        assert!(is_free_mail(d), "{d}");
    }
    for d in [
        "acme.com",
        "yahooligans-corp.com",
        "mail.acme.com",
        "gmail.acme.example",
        "corp.yahoo.example.com",
    ] {
        assert!(!is_free_mail(d), "{d}");
    }
    assert_eq!(company_domain("ada@gmail.com"), None);
    assert_eq!(company_domain("ada@acme.com").as_deref(), Some("acme.com"));
}

#[test]
fn website_domains() {
    assert_eq!(
        website_domain("https://www.Acme.com/about?x=1").as_deref(),
        Some("acme.com")
    );
    assert_eq!(website_domain("acme.com").as_deref(), Some("acme.com"));
    assert_eq!(
        website_domain("http://acme.com:8080").as_deref(),
        Some("acme.com")
    );
    assert_eq!(website_domain("n/a"), None);
}

#[test]
fn company_name_normalisation() {
    assert_eq!(normalise_company_name("Acme Inc."), "acme");
    assert_eq!(normalise_company_name("ACME, LLC"), "acme");
    assert_eq!(normalise_company_name("The Acme Company"), "acme");
    assert_eq!(
        normalise_company_name("Acme Holdings Co., Ltd."),
        "acme holdings"
    );
    assert_eq!(
        normalise_company_name("Société Générale S.A."),
        "societe generale"
    );
    assert_eq!(
        normalise_company_name("Müller & Söhne GmbH"),
        "muller and sohne"
    );
    assert_eq!(normalise_company_name("Øresund ApS"), "oresund");
    assert_eq!(normalise_company_name("Rossi S.r.l."), "rossi");
    assert_eq!(normalise_company_name("Nordic Oy"), "nordic");
    assert_eq!(normalise_company_name("Widgets Pty Ltd"), "widgets");
    assert_eq!(normalise_company_name("Tanaka KK"), "tanaka");
    assert_eq!(normalise_company_name("Acme Corp"), "acme");
    assert_eq!(normalise_company_name("Acme Corporation PLC"), "acme");
    assert_eq!(normalise_company_name("Brasil Ltda."), "brasil");
    assert_eq!(normalise_company_name("Holland B.V."), "holland");
    assert_eq!(normalise_company_name("Roma SpA"), "roma");
    // A name made only of a suffix is kept.
    assert_eq!(normalise_company_name("AG"), "ag");
}

#[test]
fn similarity_scores() {
    assert_eq!(company_similarity("Acme Inc.", "ACME, LLC"), 1.0);
    assert_eq!(
        company_similarity("Analytical Engines", "Engines Analytical Ltd"),
        1.0
    );
    assert!(company_similarity("Acme Widgets", "Acme Widget") > 0.92);
    assert!(company_similarity("Acme", "Globex") < 0.75);
    assert_eq!(company_similarity("", "Acme"), 0.0);
}

#[test]
fn exact_external_id_links() {
    let c = customer("77001", Some("ada@acme.com"), Some("Acme"));
    let found = [
        account("001B", "Other", None),
        SalesforceCandidate {
            ext_id: Some("77001".into()),
            ..account("001A", "Acme", None)
        },
        SalesforceCandidate {
            ext_id: Some("77001".into()),
            ..contact("003A", "someone@else.com", Some("001A"), Some("Acme"))
        },
    ];
    assert_eq!(
        decide(&c, &found, &t()),
        MatchDecision::Link {
            account_id: "001A".into(),
            contact_id: Some("003A".into())
        }
    );
}

#[test]
fn email_match_is_case_insensitive_and_trimmed() {
    let c = customer("77001", Some(" Ada.Lovelace@Acme.com "), None);
    let found = [contact(
        "003A",
        "ada.lovelace@ACME.COM",
        Some("001A"),
        Some("Acme"),
    )];
    assert_eq!(
        decide(&c, &found, &t()),
        MatchDecision::Link {
            account_id: "001A".into(),
            contact_id: Some("003A".into())
        }
    );
}

#[test]
fn email_match_on_private_contact_goes_to_review() {
    let c = customer("77001", Some("ada@acme.com"), None);
    let found = [contact("003A", "ADA@acme.com", None, None)];
    assert!(
        matches!(decide(&c, &found, &t()), MatchDecision::Review { score, .. } if score == 1.0)
    );
}

#[test]
fn domain_and_fuzzy_name_links_the_account() {
    let c = customer("77002", Some("bob@acme.com"), Some("Acme Inc."));
    let found = [account("001A", "ACME, LLC", Some("https://www.acme.com"))];
    assert_eq!(
        decide(&c, &found, &t()),
        MatchDecision::Link {
            account_id: "001A".into(),
            contact_id: None
        }
    );
}

#[test]
fn two_customers_of_the_same_company_get_the_same_account() {
    let found = [
        account("001A", "Acme Inc", Some("acme.com")),
        contact("003A", "ada@acme.com", Some("001A"), Some("Acme Inc")),
        account("001Z", "Zenith", Some("zenith.example")),
    ];
    let ada = customer("1", Some("ada@acme.com"), Some("Acme"));
    let bob = customer("2", Some("bob@acme.com"), Some("ACME, LLC"));
    let a = decide(&ada, &found, &t());
    let b = decide(&bob, &found, &t());
    assert_eq!(
        a,
        MatchDecision::Link {
            account_id: "001A".into(),
            contact_id: Some("003A".into())
        }
    );
    assert_eq!(
        b,
        MatchDecision::Link {
            account_id: "001A".into(),
            contact_id: None
        }
    );
}

#[test]
fn free_mail_is_never_domain_matched() {
    // Same free-mail domain and same company name: no domain evidence, so review, never link.
    let c = customer("77003", Some("carol@gmail.com"), Some("Acme Inc"));
    let found = [contact(
        "003G",
        "dave@gmail.com",
        Some("001A"),
        Some("Acme"),
    )];
    match decide(&c, &found, &t()) {
        MatchDecision::Review { candidates, score } => {
            assert_eq!(score, 1.0);
            assert_eq!(candidates[0].reason, "name_only");
        }
        other => panic!("{other:?}"),
    }
    let c = customer("77003", Some("carol@gmail.com"), Some("Globex"));
    let found = [account("001A", "Acme", Some("gmail.com"))];
    assert_eq!(decide(&c, &found, &t()), MatchDecision::Create);
}

#[test]
fn grey_zone_goes_to_review_and_low_scores_create() {
    let c = customer("77004", Some("eve@acme.com"), Some("Acme Widgets"));
    let grey = [account(
        "001A",
        "Acme Widgetry International",
        Some("acme.com"),
    )];
    let s = company_similarity("Acme Widgets", "Acme Widgetry International");
    assert!((0.75..0.92).contains(&s), "{s}");
    match decide(&c, &grey, &t()) {
        MatchDecision::Review { candidates, score } => {
            assert_eq!(score, s);
            assert_eq!(candidates[0].account_id.as_deref(), Some("001A"));
            assert_eq!(candidates[0].reason, "domain_and_name");
        }
        other => panic!("{other:?}"),
    }
    let low = [account("001B", "Globex", Some("acme.com"))];
    assert_eq!(decide(&c, &low, &t()), MatchDecision::Create);
    assert_eq!(decide(&c, &[], &t()), MatchDecision::Create);
}

#[test]
fn no_company_and_no_email_match_creates() {
    let c = customer("77005", Some("frank@acme.com"), None);
    let found = [account("001A", "Acme", Some("acme.com"))];
    assert_eq!(decide(&c, &found, &t()), MatchDecision::Create);
}

#[test]
fn thresholds_config() {
    assert!(t().validate().is_ok());
    let bad = MatchThresholds {
        auto_link: 0.5,
        review: 0.8,
    };
    assert!(bad.validate().unwrap_err().starts_with("matching.review"));
    let parsed: MatchThresholds = toml::from_str("auto_link = 0.95\n").unwrap();
    assert_eq!(
        parsed,
        MatchThresholds {
            auto_link: 0.95,
            review: 0.75
        }
    );
    assert!(toml::from_str::<MatchThresholds>("autolink = 0.9\n").is_err());
}

proptest! {
    #[test]
    fn similarity_is_bounded_symmetric_and_reflexive(a in "[A-Za-zÀ-ÿ ,.&]{0,24}", b in "[A-Za-zÀ-ÿ ,.&]{0,24}") {
        let s = company_similarity(&a, &b);
        prop_assert!((0.0..=1.0).contains(&s));
        prop_assert!((s - company_similarity(&b, &a)).abs() < 1e-12);
        if !normalise_company_name(&a).is_empty() {
            prop_assert_eq!(company_similarity(&a, &a), 1.0);
        }
    }

    #[test]
    fn normalisation_is_idempotent(a in "[A-Za-zÀ-ÿ0-9 ,.&'-]{0,30}") {
        let n = normalise_company_name(&a);
        prop_assert_eq!(normalise_company_name(&n), n.clone());
    }
}
