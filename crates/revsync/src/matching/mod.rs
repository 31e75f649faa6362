//! Matching (DESIGN §5): pure scoring that decides whether a 2Checkout customer revsync has
//! not seen before is an existing Salesforce Account / Contact, a case for human review, or
//! a new record. The sink runs the (batched) Salesforce queries and hands the rows found to
//! [`decide`]; nothing here does I/O.
//!
//! Order of evidence, strongest first:
//! 1. our external id on an existing record → link;
//! 2. the e-mail (trimmed, case-insensitive) of an existing Contact → link to that Contact and
//!    its Account (a private Contact without an Account goes to review: linking needs an
//!    Account);
//! 3. the same company e-mail domain (never a free-mail domain) as an Account's website or a
//!    Contact's e-mail, plus a fuzzy company-name score: at or above `auto_link` → link the
//!    Account; between `review` and `auto_link` → review;
//! 4. a company-name score at or above `review` *without* domain evidence → review (a name
//!    alone never auto-links);
//! 5. otherwise → create.
//!
//! E-mail normalisation is deliberately conservative: trim and lower-case only. Provider
//! specific rewrites (`+tags`, Gmail dots) are not applied, because Salesforce matches e-mail
//! exactly and two such addresses can belong to different people at a company domain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::ledger::CustomerRecord;

// ---------------------------------------------------------------------------------
// E-mail and domains

/// Free-mail domains matched exactly: never evidence of a company.
const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "protonmail.ch",
    "pm.me",
    "mail.ru",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "rambler.ru",
    "ya.ru",
    "qq.com",
    "foxmail.com",
    "163.com",
    "126.com",
    "139.com",
    "yeah.net",
    "sina.com",
    "sina.cn",
    "sohu.com",
    "aol.com",
    "aim.com",
    "msn.com",
    "ymail.com",
    "rocketmail.com",
    "mail.com",
    "email.com",
    "gmx.net",
    "web.de",
    "t-online.de",
    "freenet.de",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "laposte.net",
    "sfr.fr",
    "libero.it",
    "virgilio.it",
    "tiscali.it",
    "seznam.cz",
    "wp.pl",
    "o2.pl",
    "interia.pl",
    "onet.pl",
    "naver.com",
    "daum.net",
    "hanmail.net",
    "rediffmail.com",
    "fastmail.com",
    "fastmail.fm",
    "hey.com",
    "tutanota.com",
    "tuta.io",
    "zohomail.com",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "cox.net",
    "charter.net",
    "btinternet.com",
    "sky.com",
    "virginmedia.com",
    "ntlworld.com",
    "shaw.ca",
    "rogers.com",
    "sympatico.ca",
    "bigpond.com",
    "optusnet.com.au",
    "xtra.co.nz",
    "uol.com.br",
    "bol.com.br",
    "terra.com.br",
    "abv.bg",
    "ukr.net",
    "i.ua",
    "walla.co.il",
];

/// Free-mail families: `<name>.<any public suffix>` (e.g. `yahoo.co.uk`, `hotmail.fr`).
const FREE_MAIL_FAMILIES: &[&str] = &[
    "yahoo",
    "hotmail",
    "live",
    "outlook",
    "gmx",
    "yandex",
    "aol",
    "windowslive",
];

/// The e-mail trimmed and lower-cased, when it has the shape `local@domain`.
pub fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.'))
        .then_some(e)
}

/// The domain of an e-mail address, lower-case, without a trailing dot.
pub fn email_domain(email: &str) -> Option<String> {
    let e = normalise_email(email)?;
    let (_, domain) = e.rsplit_once('@')?;
    let d = domain.trim_end_matches('.');
    (!d.is_empty()).then(|| d.to_owned())
}

/// True for free-mail domains (exact list plus provider families such as `yahoo.*`).
pub fn is_free_mail(domain: &str) -> bool {
    let d = domain.trim().trim_end_matches('.').to_lowercase();
    if FREE_MAIL.contains(&d.as_str()) {
        return true;
    }
    let labels: Vec<&str> = d.split('.').collect();
    // `yahoo.com`, `yahoo.co.uk`, `hotmail.com.br`: the family name and a suffix of at most
    // two labels.
    labels.len() >= 2 && labels.len() <= 3 && FREE_MAIL_FAMILIES.contains(&labels[0])
}

/// The e-mail's domain when it can identify a company (not free-mail).
pub fn company_domain(email: &str) -> Option<String> {
    email_domain(email).filter(|d| !is_free_mail(d))
}

/// The host of a website value (`https://www.acme.com/about` → `acme.com`), lower-case,
/// without `www.`, port or path.
pub fn website_domain(website: &str) -> Option<String> {
    let w = website.trim().to_lowercase();
    let w = w.split_once("://").map_or(w.as_str(), |(_, rest)| rest);
    let host = w.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    (host.contains('.') && !host.starts_with('.')).then(|| host.to_owned())
}

// ---------------------------------------------------------------------------------
// Company names

/// Legal-form suffixes removed from the end of a company name (after accents are folded,
/// dots removed and runs of single letters joined: `S. A.` → `sa`).
const LEGAL_SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "gmbh",
    "ag",
    "kg",
    "ohg",
    "ug",
    "se",
    "sa",
    "sas",
    "sarl",
    "sl",
    "srl",
    "spa",
    "bv",
    "nv",
    "oy",
    "oyj",
    "ab",
    "as",
    "asa",
    "aps",
    "pty",
    "ltda",
    "lda",
    "kk",
    "co",
    "corp",
    "corporation",
    "company",
    "plc",
    "pte",
    "pvt",
    "sro",
    "bhd",
    "sdn",
    "cv",
    "sac",
    "eirl",
    "gk",
    "zrt",
    "kft",
    "doo",
    "ooo",
];

fn fold_char(c: char, out: &mut String) {
    match c {
        'ø' | 'Ø' => out.push('o'),
        'æ' | 'Æ' => out.push_str("ae"),
        'œ' | 'Œ' => out.push_str("oe"),
        'ß' => out.push_str("ss"),
        'ł' | 'Ł' => out.push('l'),
        'đ' | 'Đ' | 'ð' | 'Ð' => out.push('d'),
        'þ' | 'Þ' => out.push_str("th"),
        'ı' => out.push('i'),
        c => out.push(c),
    }
}

/// A company name for comparison: accents folded, lower-case, `&` as `and`, punctuation
/// removed, runs of single letters joined (`S. A.` → `sa`), a leading `the` and trailing legal
/// suffixes removed (`Acme Inc.` and `ACME, LLC` both give `acme`). A name made only of
/// suffixes is kept as it is rather than emptied.
pub fn normalise_company_name(name: &str) -> String {
    let mut folded = String::with_capacity(name.len());
    for c in name
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
    {
        fold_char(c, &mut folded);
    }
    let lower = folded.to_lowercase();
    let mut cleaned = String::with_capacity(lower.len());
    for c in lower.chars() {
        match c {
            '.' => {}
            '&' | '+' => cleaned.push_str(" and "),
            c if c.is_alphanumeric() => cleaned.push(c),
            _ => cleaned.push(' '),
        }
    }
    // Join runs of single letters: "s a" → "sa", "b v" → "bv".
    let mut tokens: Vec<String> = Vec::new();
    let mut run = String::new();
    for t in cleaned.split_whitespace() {
        if t.chars().count() == 1 && t.chars().all(char::is_alphabetic) {
            run.push_str(t);
        } else {
            if !run.is_empty() {
                tokens.push(std::mem::take(&mut run));
            }
            tokens.push(t.to_owned());
        }
    }
    if !run.is_empty() {
        tokens.push(run);
    }
    let original = tokens.clone();
    if tokens.len() > 1 && tokens[0] == "the" {
        tokens.remove(0);
    }
    while tokens.len() > 1
        && tokens
            .last()
            .is_some_and(|t| LEGAL_SUFFIXES.contains(&t.as_str()))
    {
        tokens.pop();
    }
    if tokens.is_empty() {
        tokens = original;
    }
    tokens.join(" ")
}

/// Similarity of two company names in `[0, 1]`, computed on [`normalise_company_name`]:
/// the larger of the Jaro-Winkler similarity of the normalised names and of the same names
/// with their words sorted (so word order does not matter: "Engines Analytical" =
/// "Analytical Engines"). Jaro-Winkler suits short names, rewards a common prefix and
/// tolerates small typos; 1.0 means equal after normalisation. Empty names score 0.
pub fn company_similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (normalise_company_name(a), normalise_company_name(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    if a == b {
        return 1.0;
    }
    let sorted = |s: &str| {
        let mut w: Vec<&str> = s.split(' ').collect();
        w.sort_unstable();
        w.join(" ")
    };
    strsim::jaro_winkler(&a, &b)
        .max(strsim::jaro_winkler(&sorted(&a), &sorted(&b)))
        .clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------------
// Decision

/// Score thresholds (`[matching]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchThresholds {
    /// Domain match plus a name score at or above this links automatically.
    pub auto_link: f64,
    /// A score at or above this (and below `auto_link`) goes to the review queue.
    pub review: f64,
}

impl Default for MatchThresholds {
    fn default() -> Self {
        MatchThresholds {
            auto_link: 0.92,
            review: 0.75,
        }
    }
}

impl MatchThresholds {
    /// Checks `0 ≤ review ≤ auto_link ≤ 1`; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.auto_link) {
            return Err(format!(
                "matching.auto_link: {} is not in [0, 1]",
                self.auto_link
            ));
        }
        if !(0.0..=1.0).contains(&self.review) {
            return Err(format!("matching.review: {} is not in [0, 1]", self.review));
        }
        if self.review > self.auto_link {
            return Err(format!(
                "matching.review: {} is above matching.auto_link {}",
                self.review, self.auto_link
            ));
        }
        Ok(())
    }
}

/// A Salesforce row the sink found for a customer (an Account, or a Contact with its
/// Account's name and website).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SalesforceCandidate {
    /// `Account` or `Contact`.
    pub sobject: String,
    /// Record id.
    pub id: String,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Contact's `AccountId` (for an Account, its own id may be left empty).
    pub account_id: Option<String>,
    /// Account name.
    pub account_name: Option<String>,
    /// Account `Website` (URL or bare domain).
    pub website: Option<String>,
    /// Our external id on the record, when set.
    pub ext_id: Option<String>,
}

impl SalesforceCandidate {
    fn is_contact(&self) -> bool {
        self.sobject.eq_ignore_ascii_case("Contact")
    }

    /// The Account this row belongs to.
    pub fn account(&self) -> Option<&str> {
        if self.is_contact() {
            self.account_id.as_deref()
        } else {
            Some(self.id.as_str())
        }
        .filter(|a| !a.is_empty())
    }

    /// Company domains this row shows: the website's host and, for a Contact, its e-mail
    /// domain (free-mail excluded).
    fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .website
            .as_deref()
            .and_then(website_domain)
            .filter(|d| !is_free_mail(d))
            .into_iter()
            .collect();
        if self.is_contact() {
            d.extend(self.email.as_deref().and_then(company_domain));
        }
        d
    }
}

/// One Account proposed for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewCandidate {
    /// Account id.
    pub account_id: Option<String>,
    /// Contact id, when the evidence is a Contact.
    pub contact_id: Option<String>,
    /// Account name.
    pub account_name: Option<String>,
    /// Score in `[0, 1]`.
    pub score: f64,
    /// Why it is proposed: `email_without_account`, `domain_and_name`, `name_only`.
    pub reason: String,
}

/// What to do with a customer revsync has not seen before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum MatchDecision {
    /// Use these records (and stamp our external id on them).
    Link {
        /// Account id.
        account_id: String,
        /// Contact id, when an existing Contact is the customer.
        contact_id: Option<String>,
    },
    /// Not sure: put the case in the review queue.
    Review {
        /// Best candidates first.
        candidates: Vec<ReviewCandidate>,
        /// Best score.
        score: f64,
    },
    /// Nothing matches: create new records.
    Create,
}

fn by_id(mut v: Vec<&SalesforceCandidate>) -> Vec<&SalesforceCandidate> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Decides for `candidate` given the rows found in Salesforce (see the module doc for the
/// order of evidence). Deterministic: ties are broken by record id.
pub fn decide(
    candidate: &CustomerRecord,
    found: &[SalesforceCandidate],
    thresholds: &MatchThresholds,
) -> MatchDecision {
    // 1. Our external id (Salesforce compares text external ids case-insensitively).
    let key = candidate.key.trim();
    let with_ext = by_id(
        found
            .iter()
            .filter(|f| {
                f.ext_id
                    .as_deref()
                    .is_some_and(|e| !key.is_empty() && e.trim().eq_ignore_ascii_case(key))
            })
            .collect(),
    );
    let ext_contact = with_ext.iter().find(|f| f.is_contact());
    let ext_account = with_ext
        .iter()
        .find(|f| !f.is_contact())
        .map(|f| f.id.clone())
        .or_else(|| ext_contact.and_then(|c| c.account().map(str::to_owned)));
    if let Some(account_id) = ext_account {
        return MatchDecision::Link {
            account_id,
            contact_id: ext_contact.map(|c| c.id.clone()),
        };
    }

    // 2. E-mail.
    if let Some(email) = candidate.email.as_deref().and_then(normalise_email) {
        let same_email = by_id(
            found
                .iter()
                .filter(|f| {
                    f.is_contact()
                        && f.email.as_deref().and_then(normalise_email).as_deref()
                            == Some(email.as_str())
                })
                .collect(),
        );
        if let Some(c) = same_email.iter().find(|c| c.account().is_some()) {
            return MatchDecision::Link {
                account_id: c.account().unwrap_or_default().to_owned(),
                contact_id: Some(c.id.clone()),
            };
        }
        if let Some(c) = same_email.first() {
            return MatchDecision::Review {
                candidates: vec![ReviewCandidate {
                    account_id: None,
                    contact_id: Some(c.id.clone()),
                    account_name: c.account_name.clone(),
                    score: 1.0,
                    reason: "email_without_account".into(),
                }],
                score: 1.0,
            };
        }
    }

    // 3./4. Company domain and fuzzy name, per Account.
    let Some(company) = candidate
        .company
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    else {
        return MatchDecision::Create;
    };
    let domain = candidate.email.as_deref().and_then(company_domain);
    // Account id → (account name, domain matched).
    let mut accounts: BTreeMap<String, (Option<String>, bool)> = BTreeMap::new();
    for f in found {
        let Some(account) = f.account() else { continue };
        let entry = accounts.entry(account.to_owned()).or_insert((None, false));
        if entry.0.is_none() {
            entry.0 = f.account_name.clone();
        }
        if domain
            .as_deref()
            .is_some_and(|d| f.domains().iter().any(|fd| fd == d))
        {
            entry.1 = true;
        }
    }
    let mut scored: Vec<ReviewCandidate> = accounts
        .into_iter()
        .filter_map(|(account_id, (name, domain_match))| {
            let score = company_similarity(company, name.as_deref()?);
            Some(ReviewCandidate {
                account_id: Some(account_id),
                contact_id: None,
                account_name: name,
                score,
                reason: if domain_match {
                    "domain_and_name"
                } else {
                    "name_only"
                }
                .into(),
            })
        })
        .filter(|c| c.score >= thresholds.review)
        .collect();
    // Best first: domain evidence, then score, then id.
    scored.sort_by(|a, b| {
        let da = a.reason == "domain_and_name";
        let db = b.reason == "domain_and_name";
        db.cmp(&da)
            .then(b.score.total_cmp(&a.score))
            .then(a.account_id.cmp(&b.account_id))
    });
    let Some(best) = scored.first() else {
        return MatchDecision::Create;
    };
    if best.reason == "domain_and_name" && best.score >= thresholds.auto_link {
        return MatchDecision::Link {
            account_id: best.account_id.clone().unwrap_or_default(),
            contact_id: None,
        };
    }
    let score = scored.iter().map(|c| c.score).fold(0.0, f64::max);
    MatchDecision::Review {
        candidates: scored,
        score,
    }
}

#[cfg(test)]
mod tests;
