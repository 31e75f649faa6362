//! SOQL query with pagination (reference §2.3). Build the SOQL text with [`crate::soql`].

use crate::client::{Client, Request};
use crate::error::SalesforceError;
use futures::Stream;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// One page of query results.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage<T> {
    /// Total rows matched by the query (all pages).
    pub total_size: u64,
    /// `true` on the last page.
    pub done: bool,
    /// Path of the next page (use verbatim), while `done` is false.
    #[serde(default)]
    pub next_records_url: Option<String>,
    /// Rows of this page (each carries `attributes{type,url}` unless `T` ignores it).
    pub records: Vec<T>,
}

/// Iterates the pages of one query; each page is one API call.
pub struct QueryPager<T> {
    client: Client,
    next: Option<Request>,
    _rows: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> QueryPager<T> {
    /// Fetch the next page; `None` after the last one.
    pub async fn next_page(&mut self) -> Option<Result<QueryPage<T>, SalesforceError>> {
        let req = self.next.take()?;
        let result = self.client.fetch_page::<T>(req).await;
        if let Ok(page) = &result {
            self.next = match (&page.done, &page.next_records_url) {
                (false, Some(url)) => match self.client.next_page_request(url) {
                    Ok(r) => Some(r),
                    Err(e) => return Some(Err(e)),
                },
                _ => None,
            };
        }
        Some(result)
    }

    /// The pages as a stream (stops after the first error).
    pub fn into_stream(self) -> impl Stream<Item = Result<QueryPage<T>, SalesforceError>> {
        futures::stream::unfold((self, false), |(mut pager, failed)| async move {
            if failed {
                return None;
            }
            let item = pager.next_page().await?;
            let failed = item.is_err();
            Some((item, (pager, failed)))
        })
    }
}

impl Client {
    /// Run a query and return only the first page.
    pub async fn query<T: DeserializeOwned>(
        &self,
        soql: &str,
    ) -> Result<QueryPage<T>, SalesforceError> {
        self.fetch_page(self.query_request(soql, false)).await
    }

    /// Fetch a page by its `nextRecordsUrl`.
    pub async fn query_more<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
    ) -> Result<QueryPage<T>, SalesforceError> {
        let req = self.next_page_request(next_records_url)?;
        self.fetch_page(req).await
    }

    /// Run a query and follow `nextRecordsUrl` until `done`, returning every row. Use
    /// [`Client::query_pages`] for large results.
    pub async fn query_all<T: DeserializeOwned>(
        &self,
        soql: &str,
    ) -> Result<Vec<T>, SalesforceError> {
        let mut pager = self.query_pages::<T>(soql);
        let mut rows = Vec::new();
        while let Some(page) = pager.next_page().await {
            rows.extend(page?.records);
        }
        Ok(rows)
    }

    /// Page-at-a-time iteration over a query.
    pub fn query_pages<T: DeserializeOwned>(&self, soql: &str) -> QueryPager<T> {
        QueryPager {
            client: self.clone(),
            next: Some(self.query_request(soql, false)),
            _rows: std::marker::PhantomData,
        }
    }

    /// Like [`Client::query_pages`] but via `/queryAll` (includes deleted/archived rows).
    pub fn query_pages_including_deleted<T: DeserializeOwned>(&self, soql: &str) -> QueryPager<T> {
        QueryPager {
            client: self.clone(),
            next: Some(self.query_request(soql, true)),
            _rows: std::marker::PhantomData,
        }
    }

    fn query_request(&self, soql: &str, include_deleted: bool) -> Request {
        let resource = if include_deleted { "queryAll" } else { "query" };
        self.with_query_options(
            Request::new(Method::GET, self.data_path(resource)).query("q", soql),
        )
    }

    fn next_page_request(&self, next_records_url: &str) -> Result<Request, SalesforceError> {
        if !next_records_url.starts_with("/services/data/") {
            return Err(SalesforceError::decode(
                "query",
                format!("unexpected nextRecordsUrl {next_records_url:?}"),
            ));
        }
        Ok(self.with_query_options(Request::new(Method::GET, next_records_url)))
    }

    fn with_query_options(&self, mut req: Request) -> Request {
        if let Some(n) = self.config().query_batch_size {
            if let Ok(v) = HeaderValue::from_str(&format!("batchSize={n}")) {
                req.headers
                    .push((HeaderName::from_static("sforce-query-options"), v));
            }
        }
        req
    }

    async fn fetch_page<T: DeserializeOwned>(
        &self,
        req: Request,
    ) -> Result<QueryPage<T>, SalesforceError> {
        let resp = self.execute(req).await?.error_for_status()?;
        resp.json("query")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn parses_single_page_fixture() {
        // palominolabs v28 (reference §2.3).
        let body = r#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Product2",
 "url":"/services/data/v28.0/sobjects/Product2/01t50000001L5cTAAS"},
 "Id":"01t50000001L5cTAAS","Name":"GenWatt Diesel 200kW","Description":null}]}"#;
        let page: QueryPage<Value> = serde_json::from_str(body).unwrap();
        assert!(page.done);
        assert_eq!(page.total_size, 1);
        assert_eq!(page.next_records_url, None);
        assert_eq!(page.records[0]["Name"], "GenWatt Diesel 200kW");

        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Product {
            id: String,
            description: Option<String>,
        }
        let page: QueryPage<Product> = serde_json::from_str(body).unwrap();
        assert_eq!(page.records[0].id, "01t50000001L5cTAAS");
        assert_eq!(page.records[0].description, None);
    }

    #[test]
    fn parses_paginated_and_empty_fixtures() {
        let first = r#"{"totalSize":2,"done":false,"nextRecordsUrl":"/services/data/v26.0/query/01gD","records":[{"Id":"a"}]}"#;
        let page: QueryPage<Value> = serde_json::from_str(first).unwrap();
        assert!(!page.done);
        assert_eq!(
            page.next_records_url.as_deref(),
            Some("/services/data/v26.0/query/01gD")
        );
        let empty: QueryPage<Value> =
            serde_json::from_str(r#"{"totalSize":0,"done":true,"records":[]}"#).unwrap();
        assert!(empty.records.is_empty());
    }
}
