//! Planning: which Salesforce requests carry a round of leased intents. Pure.
//!
//! - A partition (one customer) with several records, or any payment-priority work, becomes
//!   one Composite Graph: all-or-nothing, parents first, parents referenced by external id.
//!   Graphs are packed into requests of at most 75 graphs and 500 nodes: one API call.
//!   When a round has more graphs than one request may carry, small partitions share a graph
//!   (up to 500 / 75 ≈ 7 nodes), so a request carries ~450 nodes instead of 75 customers'
//!   worth: a burst of orders costs half the calls. The price: a customer whose write fails
//!   rolls back its graph-mates, which are retried at once on their own (the sink settles a
//!   rolled-back node apart from the node that failed).
//! - A single-object stream (one record per partition, rollups or backfills) becomes sObject
//!   Collections upserts of 200 records per call, or one Bulk API 2.0 job per object when it
//!   is larger than the bulk threshold.

use std::collections::BTreeMap;

use crate::intent::{Priority, RecordKey};
use crate::store::OutboxItem;

/// Limits of one round, from the sink's configuration.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    pub graphs_per_request: usize,
    pub nodes_per_request: usize,
    pub collection_size: usize,
    pub bulk_threshold: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            graphs_per_request: 75,
            nodes_per_request: 500,
            collection_size: 200,
            bulk_threshold: 2_000,
        }
    }
}

/// One Salesforce request, as indexes into the round's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Composite Graph: one graph per partition, items in write order.
    Graphs(Vec<Vec<usize>>),
    /// sObject Collections upsert of one object by one external-id field.
    Collection {
        sobject: String,
        ext_field: String,
        items: Vec<usize>,
    },
    /// One Bulk API 2.0 upsert job.
    Bulk {
        sobject: String,
        ext_field: String,
        items: Vec<usize>,
    },
}

impl Request {
    /// True when the request carries as much as one call can.
    pub fn is_full(&self, limits: &PlanLimits) -> bool {
        match self {
            Request::Graphs(graphs) => {
                graphs.len() >= limits.graphs_per_request
                    || graphs.iter().map(Vec::len).sum::<usize>() + 3 > limits.nodes_per_request
            }
            Request::Collection { items, .. } => items.len() >= limits.collection_size,
            Request::Bulk { .. } => true,
        }
    }

    /// API calls the request costs (ASSUMED for Bulk: one per HTTP request of a job).
    pub fn api_calls(&self) -> i64 {
        match self {
            Request::Graphs(_) | Request::Collection { .. } => 1,
            Request::Bulk { .. } => BULK_JOB_CALLS,
        }
    }

    /// The round's items this request carries.
    pub fn items(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match self {
            Request::Graphs(graphs) => Box::new(graphs.iter().flatten().copied()),
            Request::Collection { items, .. } | Request::Bulk { items, .. } => {
                Box::new(items.iter().copied())
            }
        }
    }
}

/// HTTP requests of one Bulk API 2.0 job: create, upload, close, one poll, three result
/// sets. Bulk 2.0 per-request accounting is UNCONFIRMED in the reference.
pub const BULK_JOB_CALLS: i64 = 7;

/// Plans the requests for `items` (ordered by id, i.e. write order within a partition).
/// Every item lands in exactly one request.
pub fn plan(items: &[OutboxItem], limits: &PlanLimits) -> Vec<Request> {
    let mut partitions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut order = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = item.intent.partition.as_str();
        if !partitions.contains_key(p) {
            order.push(p);
        }
        partitions.entry(p).or_default().push(i);
    }

    let mut streams: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut graphs: Vec<Vec<usize>> = Vec::new();
    for p in order {
        let members = &partitions[p];
        let single = match members.as_slice() {
            [only] => {
                let intent = &items[*only].intent;
                match (&intent.key, intent.priority) {
                    (
                        RecordKey::ExternalId { field, .. },
                        Priority::Rollup | Priority::Backfill,
                    ) => Some((intent.sobject.clone(), field.clone())),
                    _ => None,
                }
            }
            _ => None,
        };
        match single {
            Some(stream) => streams.entry(stream).or_default().push(members[0]),
            None => {
                // A partition larger than one request is cut; the rest of it is written in
                // the following requests, in order.
                for chunk in members.chunks(limits.nodes_per_request) {
                    graphs.push(chunk.to_vec());
                }
            }
        }
    }

    if graphs.len() > limits.graphs_per_request {
        graphs = share_graphs(graphs, limits);
    }

    let mut requests = Vec::new();
    let mut current: Vec<Vec<usize>> = Vec::new();
    let mut nodes = 0;
    for graph in graphs {
        if !current.is_empty()
            && (current.len() == limits.graphs_per_request
                || nodes + graph.len() > limits.nodes_per_request)
        {
            requests.push(Request::Graphs(std::mem::take(&mut current)));
            nodes = 0;
        }
        nodes += graph.len();
        current.push(graph);
    }
    if !current.is_empty() {
        requests.push(Request::Graphs(current));
    }

    for ((sobject, ext_field), members) in streams {
        if members.len() >= limits.bulk_threshold {
            requests.push(Request::Bulk {
                sobject,
                ext_field,
                items: members,
            });
        } else {
            for chunk in members.chunks(limits.collection_size) {
                requests.push(Request::Collection {
                    sobject: sobject.clone(),
                    ext_field: ext_field.clone(),
                    items: chunk.to_vec(),
                });
            }
        }
    }
    requests
}

/// Merges consecutive small partitions' graphs (in order) into graphs of at most
/// `nodes_per_request / graphs_per_request` nodes, rounded up; larger ones stay alone.
fn share_graphs(graphs: Vec<Vec<usize>>, limits: &PlanLimits) -> Vec<Vec<usize>> {
    let cap = limits
        .nodes_per_request
        .div_ceil(limits.graphs_per_request.max(1));
    let mut shared: Vec<Vec<usize>> = Vec::with_capacity(graphs.len());
    for graph in graphs {
        match shared.last_mut() {
            Some(last) if last.len() + graph.len() <= cap => last.extend(graph),
            _ => shared.push(graph),
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::RecordIntent;

    fn item(id: i64, partition: &str, sobject: &str, priority: Priority) -> OutboxItem {
        OutboxItem {
            id,
            intent: RecordIntent {
                sobject: sobject.into(),
                key: RecordKey::external("Ext__c", &format!("{partition}-{id}")),
                fields: Default::default(),
                partition: partition.into(),
                priority,
            },
            event_ids: vec![id],
            attempts: 0,
            due: crate::store::Micros(0),
        }
    }

    fn order_event(first_id: i64, customer: &str) -> Vec<OutboxItem> {
        ["Account", "Contact", "Opportunity"]
            .iter()
            .enumerate()
            .map(|(i, o)| item(first_id + i as i64, customer, o, Priority::Payment))
            .collect()
    }

    /// Every item exactly once, within the limits, and each customer's records together and
    /// parents first inside their graph.
    fn check(items: &[OutboxItem], requests: &[Request]) -> Vec<usize> {
        let mut seen: Vec<usize> = requests.iter().flat_map(|r| r.items()).collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..items.len()).collect::<Vec<_>>(),
            "every item once"
        );
        let mut graph_sizes = Vec::new();
        for r in requests {
            let Request::Graphs(g) = r else {
                panic!("payments go in graphs")
            };
            assert!(g.len() <= 75);
            assert!(g.iter().map(Vec::len).sum::<usize>() <= 500);
            for graph in g {
                graph_sizes.push(graph.len());
                for customer in graph.chunks(3) {
                    let objects: Vec<_> = customer
                        .iter()
                        .map(|&i| items[i].intent.sobject.as_str())
                        .collect();
                    assert_eq!(objects, ["Account", "Contact", "Opportunity"]);
                    let partition = &items[customer[0]].intent.partition;
                    assert!(customer
                        .iter()
                        .all(|&i| &items[i].intent.partition == partition));
                }
            }
        }
        graph_sizes
    }

    #[test]
    fn a_burst_of_order_events_shares_graphs_150_customers_per_call() {
        let items: Vec<_> = (0..1000)
            .flat_map(|c| order_event(c * 3, &format!("c{c}")))
            .collect();
        let requests = plan(&items, &PlanLimits::default());
        // 75 graphs of two customers (6 nodes): 450 nodes, 150 customers per request.
        assert_eq!(requests.len(), 7);
        let sizes = check(&items, &requests);
        assert!(sizes.iter().all(|&n| n == 6), "{sizes:?}");
    }

    #[test]
    fn a_round_that_fits_one_request_keeps_one_graph_per_customer() {
        let items: Vec<_> = (0..75)
            .flat_map(|c| order_event(c * 3, &format!("c{c}")))
            .collect();
        let requests = plan(&items, &PlanLimits::default());
        assert_eq!(requests.len(), 1);
        let sizes = check(&items, &requests);
        assert_eq!(sizes, vec![3; 75]);
    }

    #[test]
    fn node_limit_packs_requests() {
        // 10 customers with 120 records each: 4 graphs per request by nodes (480 ≤ 500).
        let items: Vec<_> = (0..10)
            .flat_map(|c| {
                (0..120)
                    .map(move |i| item(c * 1000 + i, &format!("c{c}"), "Task", Priority::Payment))
            })
            .collect();
        let requests = plan(&items, &PlanLimits::default());
        assert_eq!(requests.len(), 3);
    }

    #[test]
    fn single_object_streams_use_collections_then_bulk() {
        let rollups: Vec<_> = (0..450)
            .map(|c| item(c, &format!("c{c}"), "Account", Priority::Rollup))
            .collect();
        let requests = plan(&rollups, &PlanLimits::default());
        assert_eq!(requests.len(), 3);
        assert!(requests
            .iter()
            .all(|r| matches!(r, Request::Collection { sobject, .. } if sobject == "Account")));

        let backfill: Vec<_> = (0..2500)
            .map(|c| item(c, &format!("c{c}"), "Account", Priority::Backfill))
            .collect();
        let requests = plan(&backfill, &PlanLimits::default());
        assert!(matches!(&requests[..], [Request::Bulk { items, .. }] if items.len() == 2500));
    }

    #[test]
    fn a_partition_larger_than_a_request_is_split_in_order() {
        let items: Vec<_> = (0..1200)
            .map(|i| item(i, "big", "Task", Priority::Payment))
            .collect();
        let requests = plan(&items, &PlanLimits::default());
        let flat: Vec<usize> = requests
            .iter()
            .flat_map(|r| match r {
                Request::Graphs(g) => g.concat(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(flat, (0..1200).collect::<Vec<_>>());
        assert_eq!(requests.len(), 3);
    }
}
