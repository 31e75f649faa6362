//! Identity resolution: before a customer's first write, find out whether Salesforce already
//! has them (DESIGN §5), so that revsync links instead of duplicating.
//!
//! For the customers of a round that the identity map does not know, the sink asks
//! Salesforce once per round — one SOQL query for Contacts by e-mail or company e-mail domain,
//! and one for Accounts by website domain — and lets [`crate::matching::decide`] choose:
//! - **link**: the Account (and Contact) intents are turned into updates by id that stamp our
//!   external id, so every later upsert by external id finds those records;
//! - **shared account** (the matched Account already carries another customer's external
//!   id: two buyers of one company): the Account is updated by id and children point at it
//!   by `AccountId`;
//! - **review**: the customer's writes are held until an operator decides
//!   (`revsync review`);
//! - **create**: nothing to change; the upsert creates.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Outcome, Sink};
use crate::intent::RecordKey;
use crate::ledger::CustomerRecord;
use crate::matching::{self, MatchDecision, SalesforceCandidate};
use crate::pipeline::CUSTOMER;
use crate::store::{Identity, Micros, OutboxItem, Settlement};

/// Identity-map sources with special meaning.
pub const SHARED: &str = "shared";
pub const REVIEW: &str = "review";
pub const MATCHED: &str = "matched";
pub const DUPLICATE_RULE: &str = "duplicate_rule";

/// How long a customer awaiting review is held before the sink looks again.
const REVIEW_HOLD_US: i64 = 24 * 3_600_000_000;

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Sink {
    /// The customer key of an Account/Contact intent addressed by our external id.
    fn customer_of(&self, item: &OutboxItem) -> Option<String> {
        match (&item.intent.key, item.intent.sobject.as_str()) {
            (RecordKey::ExternalId { field, value }, "Account" | "Contact")
                if *field == self.config.customer_external_id =>
            {
                Some(value.clone())
            }
            _ => None,
        }
    }

    /// Resolves the round's customers; returns the ids of items held back (review), whose
    /// settlements are already in `out`.
    pub(super) async fn resolve_identities(
        &self,
        items: &mut [OutboxItem],
        out: &mut Outcome,
    ) -> BTreeSet<i64> {
        let mut held = BTreeSet::new();
        let customers: BTreeSet<String> =
            items.iter().filter_map(|i| self.customer_of(i)).collect();
        if customers.is_empty() {
            return held;
        }
        let keys: Vec<String> = customers.iter().cloned().collect();
        let known = match self.store.identities(&keys).await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(error = %e, "identity map unavailable; writing by external id");
                return held;
            }
        };
        let known: BTreeMap<String, Identity> = known
            .into_iter()
            .map(|i| (i.customer_key.clone(), i))
            .collect();
        let unknown: Vec<String> = keys
            .iter()
            .filter(|k| !known.contains_key(*k))
            .cloned()
            .collect();

        let mut decided: BTreeMap<String, Identity> = known;
        if !unknown.is_empty() && self.config.matching_enabled {
            match self.match_unknown(&unknown, out).await {
                Ok(found) => {
                    for (key, identity) in found {
                        out.identities.push(identity.clone());
                        decided.insert(key, identity);
                    }
                }
                // Undecided customers wait: writing them by external id now could create a
                // duplicate of a Contact Salesforce already has.
                Err(why) => {
                    let unknown: BTreeSet<&str> = unknown.iter().map(String::as_str).collect();
                    for item in items
                        .iter()
                        .filter(|i| unknown.contains(i.intent.partition.as_str()))
                    {
                        held.insert(item.id);
                        out.settlements.push(Settlement::Retry {
                            id: item.id,
                            not_before: self.retry_at(item.attempts),
                            error: format!("matching could not run: {why}"),
                        });
                    }
                }
            }
        }

        for (key, identity) in &decided {
            match identity.source.as_str() {
                REVIEW => {
                    for item in items.iter().filter(|i| i.intent.partition == *key) {
                        held.insert(item.id);
                        out.settlements.push(Settlement::Retry {
                            id: item.id,
                            not_before: Micros(Micros::now().0 + REVIEW_HOLD_US),
                            error: "customer awaiting review (revsync review list)".into(),
                        });
                    }
                }
                SHARED => {
                    if let Some(account_id) = &identity.account_id {
                        self.point_at_shared_account(
                            items,
                            key,
                            account_id,
                            identity.contact_id.as_deref(),
                        );
                    }
                }
                // Address linked records by id every time (stamping our external id again
                // is harmless): a stamp that failed and is retried never turns into a
                // create by external id.
                MATCHED | DUPLICATE_RULE => self.stamp_linked(items, identity),
                _ => {}
            }
        }
        held
    }

    /// Updates the shared Account by id (never stamping it) and points the customer's other
    /// records at it by `AccountId`.
    fn point_at_shared_account(
        &self,
        items: &mut [OutboxItem],
        key: &str,
        account_id: &str,
        contact_id: Option<&str>,
    ) {
        let ext = self.config.customer_external_id.clone();
        for item in items.iter_mut().filter(|i| i.intent.partition == key) {
            if let (Some(contact), "Contact") = (contact_id, item.intent.sobject.as_str()) {
                if self.customer_of(item).as_deref() == Some(key) {
                    // The same person under another customer key: update, never re-stamp.
                    item.intent.key = RecordKey::Id {
                        id: contact.to_owned(),
                    };
                    item.intent.fields.remove(&ext);
                    item.intent.fields.remove("Account");
                    continue;
                }
            }
            if item.intent.sobject == "Account" && self.customer_of(item).as_deref() == Some(key) {
                item.intent.key = RecordKey::Id {
                    id: account_id.to_owned(),
                };
                // The company's other buyers keep their own data; only the name and address
                // an operator would expect to be shared are left for the update.
                item.intent.fields.remove(&ext);
                continue;
            }
            // Every reference to the customer's Account by external id — `Account`, or a
            // Task's polymorphic `What` — becomes the id field beside it (`AccountId`,
            // `WhatId`). References to the Contact stay: its upsert is in the same graph.
            let references: Vec<String> = ["Account", "What"]
                .into_iter()
                .filter(|name| {
                    item.intent.fields.get(*name).is_some_and(|v| {
                        v.get(&ext).and_then(Value::as_str) == Some(key)
                            && v.pointer("/attributes/type")
                                .and_then(Value::as_str)
                                .is_none_or(|t| t == "Account")
                    })
                })
                .map(str::to_owned)
                .collect();
            for name in references {
                item.intent.fields.remove(&name);
                item.intent
                    .fields
                    .insert(format!("{name}Id"), Value::String(account_id.to_owned()));
            }
            // The same person under another customer key: their Contact is never stamped
            // with this key, so references to it go by id too.
            if let Some(contact) = contact_id {
                for name in ["Contact", "Who"] {
                    let refers = item.intent.fields.get(name).is_some_and(|v| {
                        v.get(&ext).and_then(Value::as_str) == Some(key)
                            && v.pointer("/attributes/type")
                                .and_then(Value::as_str)
                                .is_none_or(|t| t == "Contact")
                    });
                    if refers {
                        item.intent.fields.remove(name);
                        item.intent
                            .fields
                            .insert(format!("{name}Id"), Value::String(contact.to_owned()));
                    }
                }
            }
        }
    }

    /// Queries Salesforce for the unknown customers and decides for each. `Err` (why) when
    /// it could not look: the store or Salesforce was unavailable.
    async fn match_unknown(
        &self,
        unknown: &[String],
        out: &mut Outcome,
    ) -> Result<Vec<(String, Identity)>, String> {
        let records = match self
            .store
            .ledger_records(
                &unknown
                    .iter()
                    .map(|k| (CUSTOMER.to_owned(), k.clone()))
                    .collect::<Vec<_>>(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "ledger unavailable for matching");
                return Err(e.to_string());
            }
        };
        let customers: Vec<CustomerRecord> = records
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect();
        let emails: BTreeSet<String> = customers
            .iter()
            .filter_map(|c| c.email.as_deref().and_then(matching::normalise_email))
            .collect();
        let domains: BTreeSet<String> = customers
            .iter()
            .filter_map(|c| c.email.as_deref().and_then(matching::company_domain))
            .collect();
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let ext = &self.config.customer_external_id;
        if !salesforce::soql::is_identifier(ext) {
            return Ok(Vec::new());
        }
        use salesforce::soql::{quote, quote_like, split_or, LikePattern, MAX_ENCODED_QUERY};
        // A company domain's LIKE already finds that domain's exact e-mails: only the others
        // (free mail) need a condition of their own. The conditions are spread over as few
        // queries as keep each request under Salesforce's URI limit.
        let mut conditions: Vec<String> = domains
            .iter()
            .map(|d| {
                format!(
                    "Email LIKE {}",
                    quote_like(&format!("@{d}"), LikePattern::EndsWith)
                )
            })
            .collect();
        conditions.extend(
            emails
                .iter()
                .filter(|e| !matching::company_domain(e).is_some_and(|d| domains.contains(&d)))
                .map(|e| format!("Email = {}", quote(e))),
        );
        let unavailable = |e: salesforce::SalesforceError, out: &mut Outcome| {
            tracing::warn!(error = %e, "matching query failed; the new customers wait");
            out.unreachable |= matches!(
                e.class(),
                salesforce::ErrorClass::Transient | salesforce::ErrorClass::SessionExpired
            );
            e.to_string()
        };
        let mut queries: Vec<(bool, String)> = split_or(
            &format!(
                "SELECT Id, Email, AccountId, Account.Name, Account.Website, Account.{ext}, {ext} \
                 FROM Contact"
            ),
            &conditions,
            " LIMIT 2000",
            MAX_ENCODED_QUERY,
        )
        .into_iter()
        .map(|q| (true, q))
        .collect();
        if self.config.matching_account_websites {
            let websites: Vec<String> = domains
                .iter()
                .map(|d| format!("Website LIKE {}", quote_like(d, LikePattern::Contains)))
                .collect();
            queries.extend(
                split_or(
                    &format!("SELECT Id, Name, Website, {ext} FROM Account"),
                    &websites,
                    " LIMIT 2000",
                    MAX_ENCODED_QUERY,
                )
                .into_iter()
                .map(|q| (false, q)),
            );
        }
        let mut contacts: Vec<Value> = Vec::new();
        let mut accounts: Vec<Value> = Vec::new();
        for (of_contacts, soql) in queries {
            out.api_calls += 1;
            metrics::counter!("revsync_salesforce_calls_total", "resource" => "query").increment(1);
            match self.client.query_all(&soql).await {
                Ok(rows) if of_contacts => contacts.extend(rows),
                Ok(rows) => accounts.extend(rows),
                Err(e) => return Err(unavailable(e, out)),
            }
        }

        // Every row as a candidate, with the external id its Account carries.
        let mut account_ext: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut found: Vec<SalesforceCandidate> = Vec::new();
        for c in &contacts {
            let account = c.get("Account").cloned().unwrap_or(Value::Null);
            if let Some(a) = text(c, "AccountId") {
                account_ext.insert(a, text(&account, ext));
            }
            found.push(SalesforceCandidate {
                sobject: "Contact".into(),
                id: text(c, "Id").unwrap_or_default(),
                email: text(c, "Email"),
                account_id: text(c, "AccountId"),
                account_name: text(&account, "Name"),
                website: text(&account, "Website"),
                ext_id: text(c, ext),
            });
        }
        for a in &accounts {
            let id = text(a, "Id").unwrap_or_default();
            account_ext.insert(id.clone(), text(a, ext));
            found.push(SalesforceCandidate {
                sobject: "Account".into(),
                id,
                email: None,
                account_id: None,
                account_name: text(a, "Name"),
                website: text(a, "Website"),
                ext_id: text(a, ext),
            });
        }

        let mut decided = Vec::new();
        // Record id → the customer it belongs to: first whoever the identity map already
        // links to it (its stamp may still be on its way), then the first new customer of
        // this round linked to it.
        let ids: Vec<String> = found.iter().map(|f| f.id.clone()).collect();
        let mut claimed: BTreeMap<String, String> = BTreeMap::new();
        match self.store.identities_claiming(&ids).await {
            Ok(claims) => {
                for c in claims {
                    for id in [c.account_id, c.contact_id].into_iter().flatten() {
                        claimed.entry(id).or_insert_with(|| c.customer_key.clone());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity map unavailable; not linking this round");
                return Err(e.to_string());
            }
        }
        for customer in &customers {
            // Only the rows this customer's own evidence found: the same e-mail, or the same
            // company domain (never another customer's rows of the same batch).
            let email = customer
                .email
                .as_deref()
                .and_then(matching::normalise_email);
            let domain = customer.email.as_deref().and_then(matching::company_domain);
            let relevant: Vec<SalesforceCandidate> = found
                .iter()
                .filter(|f| {
                    let same_email = email.is_some()
                        && f.email.as_deref().and_then(matching::normalise_email) == email;
                    let same_domain = domain.as_deref().is_some_and(|d| {
                        f.email
                            .as_deref()
                            .and_then(matching::company_domain)
                            .as_deref()
                            == Some(d)
                            || f.website
                                .as_deref()
                                .and_then(matching::website_domain)
                                .as_deref()
                                == Some(d)
                    });
                    same_email || same_domain
                })
                .cloned()
                .collect();
            let decision = matching::decide(customer, &relevant, &self.config.matching);
            let identity = match decision {
                MatchDecision::Create => continue,
                MatchDecision::Link {
                    account_id,
                    contact_id,
                } => {
                    // Shared when the records already carry another customer's external id,
                    // or another new customer of this same round claims them first: only
                    // one customer's key can be stamped on a record.
                    let carried = account_ext.get(&account_id).cloned().flatten();
                    let contact_carried = contact_id
                        .as_ref()
                        .and_then(|c| found.iter().find(|f| &f.id == c))
                        .and_then(|f| f.ext_id.clone());
                    let foreign = |ext: &Option<String>| {
                        ext.as_deref()
                            .is_some_and(|other| !other.eq_ignore_ascii_case(&customer.key))
                    };
                    let claimed_account = claimed
                        .insert(account_id.clone(), customer.key.clone())
                        .is_some_and(|first| first != customer.key);
                    let claimed_contact = contact_id.as_ref().is_some_and(|c| {
                        claimed
                            .insert(c.clone(), customer.key.clone())
                            .is_some_and(|first| first != customer.key)
                    });
                    let shared = foreign(&carried)
                        || foreign(&contact_carried)
                        || claimed_account
                        || claimed_contact;
                    tracing::info!(customer = %customer.key, %account_id, contact_id = ?contact_id, shared, "customer matched to existing Salesforce records");
                    Identity {
                        customer_key: customer.key.clone(),
                        account_id: Some(account_id),
                        contact_id,
                        source: if shared { SHARED } else { MATCHED }.into(),
                    }
                }
                MatchDecision::Review { candidates, score } => {
                    tracing::warn!(customer = %customer.key, score, candidates = candidates.len(), "customer needs review before it is written");
                    Identity {
                        customer_key: customer.key.clone(),
                        account_id: candidates.first().and_then(|c| c.account_id.clone()),
                        contact_id: candidates.first().and_then(|c| c.contact_id.clone()),
                        source: REVIEW.into(),
                    }
                }
            };
            decided.push((customer.key.clone(), identity));
        }
        Ok(decided)
    }

    /// Rewrites a linked (not shared) customer's Account/Contact intents into updates by id
    /// that stamp our external id on the matched records.
    fn stamp_linked(&self, items: &mut [OutboxItem], identity: &Identity) {
        let ext = self.config.customer_external_id.clone();
        for item in items.iter_mut() {
            if self.customer_of(item).as_deref() != Some(identity.customer_key.as_str()) {
                continue;
            }
            let id = match item.intent.sobject.as_str() {
                "Account" => identity.account_id.clone(),
                _ => identity.contact_id.clone(),
            };
            if let Some(id) = id {
                item.intent.key = RecordKey::Id { id };
                item.intent
                    .fields
                    .insert(ext.clone(), Value::String(identity.customer_key.clone()));
            }
        }
    }
}
