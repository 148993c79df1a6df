//! `openspine events …`: the events service of a running server, through its admin API
//! (ops listener, admin token), for operators and for scripts.
//!
//! * `tail` prints events as JSON lines as they are accepted (`--from SEQ` to start after
//!   an event number, `--type T` for one type), until interrupted.
//! * `publish FILE` publishes the CloudEvent in FILE (`-` for standard input) as the
//!   operator, with the checks an HTTP publisher meets.

use crate::admin::OpsClient;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;

#[derive(Args)]
pub struct EventsCliArgs {
    #[command(flatten)]
    ops: OpsClient,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print events live as JSON lines (`{"seq", "publisher", "received_at", "event"}`).
    Tail {
        /// Only events of this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Start after this event number (0: from the first event kept).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Stop after printing this many (default: never).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Publish one CloudEvent from a JSON file (`-` reads standard input).
    Publish { file: PathBuf },
}

pub async fn run(args: EventsCliArgs) -> anyhow::Result<()> {
    let api = args.ops.api()?;
    match args.command {
        EventsCommand::Tail {
            event_type,
            from,
            count,
        } => {
            let mut after = from;
            let mut printed = 0u64;
            loop {
                let mut query = vec![
                    ("after", after.to_string()),
                    ("wait_secs", "30".to_string()),
                ];
                if let Some(t) = &event_type {
                    query.push(("type", t.clone()));
                }
                let page = api
                    .call(reqwest::Method::GET, "/admin/v1/events", &query)
                    .await?;
                for item in page["events"].as_array().into_iter().flatten() {
                    println!("{item}");
                    printed += 1;
                    if count.is_some_and(|c| printed >= c) {
                        return Ok(());
                    }
                }
                after = page["next"].as_i64().unwrap_or(after);
            }
        }
        EventsCommand::Publish { file } => {
            let mut body = Vec::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut body)?;
            } else {
                body =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            }
            let answer = api
                .call_with(reqwest::Method::POST, "/admin/v1/events", &[], Some(body))
                .await?;
            println!("{answer}");
            Ok(())
        }
    }
}
