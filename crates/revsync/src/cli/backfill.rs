//! `revsync backfill`: pull 2Checkout order history through the REST API into the ledger and
//! the outbox (backfill priority). `revsync serve` (or any running instance on the same
//! store) writes the result to Salesforce.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use revsync::backfill::{Backfill, BackfillOptions, Progress, RestClient};
use revsync::config::Config;
use revsync::flows::Flows;
use revsync::store::Store;
use twocheckout::signature::SecretKey;

#[derive(Args)]
pub struct BackfillArgs {
    /// First order date to pull (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_date)]
    pub since: NaiveDate,
    /// Last order date to pull (YYYY-MM-DD, inclusive; default: today).
    #[arg(long, value_parser = parse_date)]
    pub until: Option<NaiveDate>,
    /// Orders per REST page (at most 200).
    #[arg(long, default_value_t = 200)]
    pub page_size: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// The REST client from `[twocheckout]` (merchant_code, secret_key, api_url).
pub fn rest_client(config: &Config) -> anyhow::Result<RestClient> {
    let code = config
        .twocheckout
        .merchant_code
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .context("config key `twocheckout.merchant_code` is not set (needed for the REST API)")?;
    let keys = config
        .notification_keys()
        .context("the REST API is authenticated with twocheckout.secret_key")?;
    let key: SecretKey = keys
        .secret_keys
        .into_iter()
        .next()
        .context("config key `twocheckout.secret_key` is not set")?;
    Ok(RestClient::new(
        &config.twocheckout.api_url,
        code,
        key,
        Duration::from_secs(60),
    )?)
}

/// The store and flows of `config`.
pub async fn engine(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<Flows>)> {
    let store = revsync::store::open(&config.store.url, &revsync::app::open_options(config))
        .await
        .with_context(|| format!("cannot open the store {}", config.store.url))?;
    let flows = Flows::new(&config.flows).context("flow mapping")?;
    Ok((Arc::new(store), Arc::new(flows)))
}

/// A progress bar on a terminal (rate and ETA), nothing otherwise.
pub fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} orders  {{per_sec}}  ETA {{eta}}  {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

pub async fn run(config: &Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let client = rest_client(config)?;
    let (store, flows) = engine(config).await?;
    let job = Backfill::new(store, flows, client);
    let bar = progress_bar("backfill");
    let mut on_progress = |p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("{} changed", p.changed));
    };
    let options = BackfillOptions {
        since: args.since,
        until: args.until,
        page_size: args.page_size,
    };
    let report = job
        .run(&options, &mut on_progress)
        .await
        .context("backfill stopped (pages already committed stay; running again is safe)")?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "backfill: {} orders in {} pages — {} new or changed in the ledger, {} already known; {} Salesforce writes queued (backfill priority)",
            report.orders, report.pages, report.changed, report.unchanged, report.intents
        );
        for e in &report.invalid {
            println!("  skipped: {e}");
        }
    }
    Ok(if report.invalid.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
