//! Operator commands on the running pipeline's state: `rollup`, `replay`, `review`.

use std::process::ExitCode;

use clap::Subcommand;
use revsync::config::Config;
use revsync::store::{DeadLetterStatus, Identity, Micros, SqlStore};

async fn open(config: &Config) -> anyhow::Result<SqlStore> {
    Ok(revsync::store::open(&config.store.url, &revsync::app::open_options(config)).await?)
}

/// `revsync rollup`: recompute every Account's revenue rollups from the ledger now and queue
/// those that changed (a running `serve` writes them; the scheduler does the same on its cron).
pub async fn rollup(config: &Config) -> anyhow::Result<ExitCode> {
    let store = open(config).await?;
    let report = revsync::scheduler::run_rollups(&store, &config.flows).await?;
    println!(
        "{} Accounts with rollups, {} changed and queued for Salesforce{}",
        report.accounts,
        report.enqueued,
        if report.unconverted_orders > 0 {
            format!(
                "; {} orders left out for lack of an FX rate (add them to [flows.fx])",
                report.unconverted_orders
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum ReplayCommand {
    /// List open dead letters with Salesforce's message.
    #[command(after_help = "Example:\n  revsync replay list")]
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put dead letters back in the outbox after fixing the cause (in Salesforce or in the
    /// mapping); a running `serve` writes them again.
    #[command(
        after_help = "Examples:\n  revsync replay dead-letter 12 13\n  revsync replay dead-letter --all"
    )]
    DeadLetter {
        ids: Vec<i64>,
        /// Every open dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub async fn replay(config: &Config, cmd: ReplayCommand) -> anyhow::Result<ExitCode> {
    let store = open(config).await?;
    use revsync::store::Engine;
    match cmd {
        ReplayCommand::List { limit } => {
            let letters = store
                .dead_letters(Some(DeadLetterStatus::Open), limit)
                .await?;
            if letters.is_empty() {
                println!("no open dead letters");
            }
            for d in letters {
                println!(
                    "{:>6}  {}  {} {}  events {:?}\n        {}: {}",
                    d.id,
                    d.created_at.to_datetime().format("%Y-%m-%d %H:%M:%S"),
                    d.intent.sobject,
                    d.intent.key.value(),
                    d.event_ids,
                    d.error_code,
                    d.message
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::DeadLetter { ids, all } => {
            let ids: Vec<i64> = if all {
                store
                    .dead_letters(Some(DeadLetterStatus::Open), i64::MAX)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect()
            } else if ids.is_empty() {
                anyhow::bail!("name the dead letters to replay, or --all");
            } else {
                ids
            };
            let mut failed = 0;
            for id in ids {
                match store.replay_dead_letter(id, Micros::now()).await {
                    Ok(()) => println!("{id}: queued again"),
                    Err(e) => {
                        failed += 1;
                        println!("{id}: {e}");
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Customers held because matching was not sure (between the review and auto-link
    /// thresholds), with the suggested Salesforce records.
    List,
    /// Link the customer to the suggested records (or the ones given) and release its writes.
    #[command(after_help = "Example:\n  revsync review link 77001 --account 001XXXXXXXXXXXXXXX")]
    Link {
        customer: String,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        contact: Option<String>,
    },
    /// Create new records for the customer instead, and release its writes.
    Create { customer: String },
}

pub async fn review(config: &Config, cmd: ReviewCommand) -> anyhow::Result<ExitCode> {
    use revsync::store::Engine;
    let store = open(config).await?;
    match cmd {
        ReviewCommand::List => {
            let held = store.identities_by_source("review").await?;
            if held.is_empty() {
                println!("nothing awaits review");
            }
            for i in held {
                println!(
                    "{}  suggested Account {}  Contact {}",
                    i.customer_key,
                    i.account_id.as_deref().unwrap_or("-"),
                    i.contact_id.as_deref().unwrap_or("-")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ReviewCommand::Link {
            customer,
            account,
            contact,
        } => {
            let held = store.identities(std::slice::from_ref(&customer)).await?;
            let current = held
                .first()
                .filter(|i| i.source == "review")
                .ok_or_else(|| anyhow::anyhow!("customer {customer} is not awaiting review"))?;
            let account = account
                .or_else(|| current.account_id.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("no suggested Account for {customer}: give --account")
                })?;
            decide(
                &store,
                &customer,
                Some(account),
                contact.or(current.contact_id.clone()),
                "matched",
            )
            .await
        }
        ReviewCommand::Create { customer } => {
            let held = store.identities(std::slice::from_ref(&customer)).await?;
            if !held.iter().any(|i| i.source == "review") {
                anyhow::bail!("customer {customer} is not awaiting review");
            }
            decide(&store, &customer, None, None, "operator_create").await
        }
    }
}

async fn decide(
    store: &SqlStore,
    customer: &str,
    account_id: Option<String>,
    contact_id: Option<String>,
    source: &str,
) -> anyhow::Result<ExitCode> {
    use revsync::store::Engine;
    let now = Micros::now();
    store
        .save_identities(
            &[Identity {
                customer_key: customer.to_owned(),
                account_id,
                contact_id,
                source: source.to_owned(),
            }],
            now,
        )
        .await?;
    let released = store.release_partition(customer, now).await?;
    println!("{customer}: {source}; {released} held writes released");
    Ok(ExitCode::SUCCESS)
}
