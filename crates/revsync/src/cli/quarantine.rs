//! `revsync quarantine`: refused deliveries, kept so that nothing is lost. After fixing a
//! wrong key in the config, `admit` re-verifies an entry with the current keys and, if it
//! now passes, appends it to the event log exactly as if it had just arrived.

use std::process::ExitCode;

use clap::Subcommand;
use revsync::config::Config;
use revsync::ingest::admit_quarantined;
use revsync::store::{EventLog, QuarantineStatus};

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined requests, newest first.
    #[command(after_help = "Example:\n  revsync quarantine list --status held --limit 20")]
    List {
        /// held, admitted, discarded or all.
        #[arg(long, default_value = "held")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one entry with its raw body.
    Show { id: i64 },
    /// Re-verify entries with the current keys and admit those that now pass.
    #[command(
        after_help = "Example:\n  revsync quarantine admit 17\n  revsync quarantine admit --all"
    )]
    Admit {
        /// Entry ids to admit.
        ids: Vec<i64>,
        /// Admit every held entry that passes.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub async fn run(config: &Config, cmd: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let store =
        revsync::store::open(&config.store.url, &revsync::app::open_options(config)).await?;
    match cmd {
        QuarantineCommand::List { status, limit } => {
            let status = match status.as_str() {
                "all" => None,
                "held" => Some(QuarantineStatus::Held),
                "admitted" => Some(QuarantineStatus::Admitted),
                "discarded" => Some(QuarantineStatus::Discarded),
                other => anyhow::bail!("unknown status `{other}` (held, admitted, discarded, all)"),
            };
            let entries = store.list_quarantine(status, limit).await?;
            if entries.is_empty() {
                println!("quarantine is empty");
            }
            for e in entries {
                println!(
                    "{:>6}  {}  {:<9} {:<4} {:>7}B  {}",
                    e.id,
                    e.received_at.to_datetime().format("%Y-%m-%d %H:%M:%S"),
                    e.status.as_str(),
                    e.path_kind,
                    e.body.len(),
                    e.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id } => {
            let e = store
                .quarantined(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no quarantine entry {id}"))?;
            println!("id:           {}", e.id);
            println!("received:     {}", e.received_at.to_datetime());
            println!("kind:         {}", e.path_kind);
            println!("content type: {}", e.content_type);
            println!("from:         {}", e.remote_addr.as_deref().unwrap_or("-"));
            println!("status:       {}", e.status.as_str());
            println!("reason:       {}", e.reason);
            if e.truncated {
                println!("(body truncated to the size limit)");
            }
            println!("body:\n{}", String::from_utf8_lossy(&e.body));
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Admit { ids, all } => {
            let keys = config.notification_keys()?;
            let ids = if all {
                store
                    .list_quarantine(Some(QuarantineStatus::Held), i64::MAX)
                    .await?
                    .into_iter()
                    .map(|e| e.id)
                    .collect()
            } else if ids.is_empty() {
                anyhow::bail!("name the entries to admit, or --all");
            } else {
                ids
            };
            let mut refused = 0;
            for id in ids {
                match admit(&store, &keys, id).await {
                    Ok(line) => println!("{id}: {line}"),
                    Err(reason) => {
                        refused += 1;
                        println!("{id}: still refused: {reason}");
                    }
                }
            }
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

async fn admit(
    store: &dyn EventLog,
    keys: &revsync::config::NotificationKeys,
    id: i64,
) -> Result<String, String> {
    let appended = admit_quarantined(store, keys, id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "admitted as event {}{}",
        appended.event_id,
        if appended.new_event {
            ""
        } else {
            " (already in the log from a resend)"
        }
    ))
}
