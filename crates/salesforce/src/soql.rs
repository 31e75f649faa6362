//! SOQL literal escaping. Never interpolate customer data (names, emails) into SOQL without
//! these helpers.
//!
//! Per the SOQL reference ("Quoted String Escape Sequences"), inside a single-quoted string
//! literal the backslash escapes are `\n \r \t \b \f \" \' \\`, and inside a `LIKE` pattern
//! additionally `\_` and `\%` (literal underscore / percent). Every other character, including
//! any Unicode scalar, is taken literally, so it is emitted as is.

use crate::error::SalesforceError;

/// Escape `s` for use between single quotes in SOQL (no quotes added).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_escaped(&mut out, s, false);
    out
}

fn push_escaped(out: &mut String, s: &str, like: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '%' if like => out.push_str("\\%"),
            '_' if like => out.push_str("\\_"),
            other => out.push(other),
        }
    }
}

/// A complete, safely quoted SOQL string literal: `O'Brien` → `'O\'Brien'`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    push_escaped(&mut out, s, false);
    out.push('\'');
    out
}

/// Where wildcards go around a literal `LIKE` operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikePattern {
    /// `'value'` (no wildcards; `%`/`_` in the value match literally).
    Exact,
    /// `'value%'`
    StartsWith,
    /// `'%value'`
    EndsWith,
    /// `'%value%'`
    Contains,
}

/// A quoted `LIKE` operand in which `%` and `_` from `s` are escaped (match literally) and
/// the wildcards requested by `pattern` are added.
pub fn quote_like(s: &str, pattern: LikePattern) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push('\'');
    if matches!(pattern, LikePattern::EndsWith | LikePattern::Contains) {
        out.push('%');
    }
    push_escaped(&mut out, s, true);
    if matches!(pattern, LikePattern::StartsWith | LikePattern::Contains) {
        out.push('%');
    }
    out.push('\'');
    out
}

/// `('a','b','c')` for `WHERE Email IN …`. An empty list is refused (SOQL has no empty `IN ()`;
/// skip the query instead).
pub fn in_list<S: AsRef<str>>(items: &[S]) -> Result<String, SalesforceError> {
    if items.is_empty() {
        return Err(SalesforceError::InvalidRequest(
            "SOQL IN list must not be empty".to_owned(),
        ));
    }
    let mut out = String::from("(");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(item.as_ref()));
    }
    out.push(')');
    Ok(out)
}

/// Check that `name` is a plain SOQL/REST identifier (object or field API name, optionally
/// dotted for relationship paths): ASCII letters, digits and `_`, starting with a letter.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Longest query text, URL-encoded, that a `GET …/query?q=` request may carry: Salesforce
/// refuses a URI plus headers above 16,384 bytes (414 / 431); the rest is left for the path,
/// the bearer token and the other headers.
pub const MAX_ENCODED_QUERY: usize = 14_000;

/// Length of `text` once `application/x-www-form-urlencoded` (how the query string carries
/// it): unreserved bytes and spaces count one, everything else three.
pub fn encoded_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' | b' ' => 1,
            _ => 3,
        })
        .sum()
}

/// Splits `head WHERE c1 OR c2 OR … tail` over as few queries as keep each one within
/// `max_encoded` (see [`encoded_len`]). Every condition lands in exactly one query, in order;
/// a condition too long to fit even alone gets a query of its own (Salesforce will refuse it
/// with a clear error rather than revsync dropping it).
pub fn split_or(head: &str, conditions: &[String], tail: &str, max_encoded: usize) -> Vec<String> {
    const OR: &str = " OR ";
    let fixed = encoded_len(head) + encoded_len(" WHERE ") + encoded_len(tail);
    let mut queries = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut length = fixed;
    let build = |current: &[&str]| format!("{head} WHERE {}{tail}", current.join(OR));
    for condition in conditions {
        let cost = encoded_len(condition) + if current.is_empty() { 0 } else { OR.len() };
        if !current.is_empty() && length + cost > max_encoded {
            queries.push(build(&current));
            current.clear();
            length = fixed;
        }
        length += encoded_len(condition) + if current.is_empty() { 0 } else { OR.len() };
        current.push(condition);
    }
    if !current.is_empty() {
        queries.push(build(&current));
    }
    queries
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses one SOQL string literal starting at `input[0] == '\''` the way the SOQL lexer
    /// does; returns the decoded value and the rest of the input after the closing quote.
    fn unescape_literal(input: &str, like: bool) -> Result<(String, &str), String> {
        let mut chars = input.char_indices();
        match chars.next() {
            Some((_, '\'')) => {}
            _ => return Err("literal must start with a quote".into()),
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => return Ok((out, &input[i + 1..])),
                '\\' => {
                    let (_, e) = chars.next().ok_or("dangling backslash")?;
                    out.push(match e {
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        '"' => '"',
                        '\'' => '\'',
                        '\\' => '\\',
                        '%' if like => '%',
                        '_' if like => '_',
                        other => return Err(format!("invalid escape \\{other}")),
                    });
                }
                other => out.push(other),
            }
        }
        Err("unterminated literal".into())
    }

    #[test]
    fn quotes_known_cases() {
        assert_eq!(quote("O'Brien"), r"'O\'Brien'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
        assert_eq!(quote("say \"hi\""), r#"'say \"hi\"'"#);
        assert_eq!(quote("l1\nl2\r\t"), r"'l1\nl2\r\t'");
        assert_eq!(quote("\u{8}\u{c}"), r"'\b\f'");
        assert_eq!(quote("Zoë 東京 🎉"), "'Zoë 東京 🎉'");
        assert_eq!(quote("100%_off"), "'100%_off'");
        assert_eq!(quote("x' OR Name != '"), r"'x\' OR Name != \''");
    }

    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(quote_like("100%_off", LikePattern::Exact), r"'100\%\_off'");
        assert_eq!(quote_like("acme", LikePattern::StartsWith), "'acme%'");
        assert_eq!(quote_like("acme", LikePattern::EndsWith), "'%acme'");
        assert_eq!(quote_like("a_b", LikePattern::Contains), r"'%a\_b%'");
    }

    #[test]
    fn in_list_quotes_each_item() {
        assert_eq!(
            in_list(&["a@b.com", "o'neil@x.io"]).unwrap(),
            r"('a@b.com','o\'neil@x.io')"
        );
        assert!(in_list::<&str>(&[]).is_err());
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("Account"));
        assert!(is_identifier("TwoCheckout_Customer_Ref__c"));
        assert!(is_identifier("Account.TwoCo_Ref__c"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("Account/../x"));
        assert!(!is_identifier("_x"));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier("a."));
    }

    #[test]
    fn encoded_len_matches_form_urlencoding() {
        assert_eq!(encoded_len("SELECT Id"), 9);
        assert_eq!(encoded_len("Email = 'a@b.example'"), 29);
        assert_eq!(encoded_len("é"), 6);
    }

    #[test]
    fn split_or_keeps_order_and_limit() {
        let conditions: Vec<String> = (0..50)
            .map(|i| format!("Email = 'user{i}@x.example'"))
            .collect();
        let queries = split_or("SELECT Id FROM Contact", &conditions, " LIMIT 2000", 400);
        assert!(queries.len() > 1);
        assert!(queries.iter().all(|q| encoded_len(q) <= 400), "{queries:?}");
        assert!(
            queries[0].starts_with("SELECT Id FROM Contact WHERE Email = 'user0@x.example' OR ")
        );
        assert!(queries.iter().all(|q| q.ends_with(" LIMIT 2000")));
        assert!(split_or("SELECT Id FROM Contact", &[], "", 400).is_empty());
    }

    proptest! {
        #[test]
        fn split_or_places_every_condition_once_within_the_limit(
            conditions in proptest::collection::vec("[a-z@.' ]{1,40}", 0..60),
            max in 60usize..600,
        ) {
            let head = "SELECT Id FROM Contact";
            let queries = split_or(head, &conditions, " LIMIT 9", max);
            let mut seen = Vec::new();
            for q in &queries {
                let inner = q
                    .strip_prefix("SELECT Id FROM Contact WHERE ")
                    .and_then(|q| q.strip_suffix(" LIMIT 9"))
                    .unwrap();
                let parts: Vec<&str> = inner.split(" OR ").collect();
                // Over the limit only when one condition alone is too long.
                prop_assert!(encoded_len(q) <= max || parts.len() == 1);
                seen.push(inner.to_owned());
            }
            prop_assert_eq!(seen.join(" OR "), conditions.join(" OR "));
            prop_assert_eq!(queries.is_empty(), conditions.is_empty());
        }

        #[test]
        fn quote_round_trips_and_never_terminates_early(s in any::<String>(), tail in "[ A-Za-z=']{0,8}") {
            let literal = quote(&s);
            // Append arbitrary trailing SOQL to prove the literal ends exactly where we think.
            let soql = format!("{literal}{tail}");
            let (decoded, rest) = unescape_literal(&soql, false).unwrap();
            prop_assert_eq!(decoded, s);
            prop_assert_eq!(rest, tail.as_str());
        }

        #[test]
        fn quote_round_trips_hostile_alphabet(s in r#"[\\'"%_\n\r\t\x08\x0c aé東🎉]{0,40}"#) {
            let lit = quote(&s);
            let (decoded, rest) = unescape_literal(&lit, false).unwrap();
            prop_assert_eq!(decoded, s);
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn like_round_trips(s in r#"[\\'"%_\n a-z東]{0,40}"#) {
            let lit = quote_like(&s, LikePattern::Exact);
            let (decoded, rest) = unescape_literal(&lit, true).unwrap();
            prop_assert_eq!(decoded, s.clone());
            prop_assert_eq!(rest, "");
            // With wildcards the only unescaped % are the ones we added.
            let lit = quote_like(&s, LikePattern::Contains);
            let (decoded, _) = unescape_literal(&lit, true).unwrap();
            prop_assert_eq!(decoded, format!("%{s}%"));
        }

        #[test]
        fn in_list_items_round_trip(items in proptest::collection::vec(any::<String>(), 1..6)) {
            let list = in_list(&items).unwrap();
            let mut rest = list.strip_prefix('(').unwrap();
            for (i, item) in items.iter().enumerate() {
                let (decoded, after) = unescape_literal(rest, false).unwrap();
                prop_assert_eq!(&decoded, item);
                rest = if i + 1 < items.len() {
                    after.strip_prefix(',').unwrap()
                } else {
                    after
                };
            }
            prop_assert_eq!(rest, ")");
        }
    }
}
