//! `revsync reconcile`: 2Checkout vs the ledger vs Salesforce, a drift report, and
//! `--repair` (enqueue what fixes Salesforce; never deletes).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use revsync::config::Config;
use revsync::reconcile::{DriftKind, ReconcileOptions, Reconciler, Sides};

use super::backfill::{engine, parse_date, rest_client};

#[derive(Args)]
pub struct ReconcileArgs {
    /// First order date to compare (YYYY-MM-DD; default: 30 days ago).
    #[arg(long, value_parser = parse_date)]
    pub since: Option<NaiveDate>,
    /// Last order date to compare (YYYY-MM-DD, inclusive; default: open).
    #[arg(long, value_parser = parse_date)]
    pub until: Option<NaiveDate>,
    /// Enqueue the writes that fix Salesforce (missing and differing records) and apply
    /// orders the ledger lacks. Nothing is ever deleted.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let rest = rest_client(config)?;
    let (store, flows) = engine(config).await?;
    let credentials = config
        .salesforce_credentials()?
        .context("config key `salesforce.instance_url` is not set: reconcile reads Salesforce")?;
    let sf = salesforce::Client::builder(credentials)
        .api_version(config.salesforce.api_version.clone())
        .request_timeout(Duration::from_secs(config.salesforce.request_timeout_secs))
        .build()
        .context("salesforce client")?;
    let since = args
        .since
        .unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Duration::days(30));
    let options = ReconcileOptions {
        since,
        until: args.until,
        page_size: 200,
        soql_batch: 200,
    };
    let report = Reconciler::new(store, flows, rest, sf)
        .run(&options, args.repair)
        .await
        .context("reconcile failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "reconcile {}..{}: {} orders in 2Checkout, {} in the ledger, {} Opportunities compared",
            since,
            args.until.map_or("today".to_owned(), |u| u.to_string()),
            report.twocheckout_orders,
            report.ledger_orders,
            report.salesforce_compared
        );
        for (sides, label) in [
            (Sides::TwoCheckoutLedger, "2Checkout vs ledger"),
            (Sides::LedgerSalesforce, "ledger vs Salesforce"),
        ] {
            println!(
                "  {label}: {} missing, {} extra, {} differing",
                report.count(sides, DriftKind::Missing),
                report.count(sides, DriftKind::Extra),
                report.count(sides, DriftKind::Differs)
            );
        }
        for d in &report.drift {
            println!("  {}", d.line());
        }
        if let Some(r) = &report.repair {
            println!(
                "repair: {} orders applied to the ledger, {} orders re-sent to Salesforce ({} writes queued; `revsync serve` writes them)",
                r.ledger_orders_applied, r.salesforce_orders, r.intents
            );
        } else if !report.is_clean() {
            println!("run with --repair to queue the fixes (nothing is ever deleted)");
        }
    }
    Ok(if report.is_clean() || report.repair.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
