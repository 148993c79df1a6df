//! `openspine events …`: the events service of a running server, through its admin API
//! (ops listener, admin token), for operators and for scripts.
//!
//! * `tail` prints events as JSON lines as they are accepted (`--from SEQ` to start after
//!   an event number, `--type T` for one type), until interrupted.
//! * `publish FILE` publishes the CloudEvent in FILE (`-` for standard input) as the
//!   operator, with the checks an HTTP publisher meets.
//! * `dead-letters [--subscription ID]` prints deliveries given up on, with their events;
//!   `replay SUBSCRIPTION` puts that subscription's back in its queue.

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
    /// Print dead letters (deliveries given up on) as JSON lines, oldest event first:
    /// `{"subscription", "seq", "attempts", "last_error", "failed_at", "event"}`.
    DeadLetters {
        /// Only this subscription's.
        #[arg(long)]
        subscription: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put a subscription's dead letters back in its queue, in event order, to be
    /// delivered as if new (once its endpoint works again).
    Replay { subscription: String },
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
        EventsCommand::DeadLetters {
            subscription,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(id) = subscription {
                query.push(("subscription", id));
            }
            let page = api
                .call(
                    reqwest::Method::GET,
                    "/admin/v1/events/dead-letters",
                    &query,
                )
                .await?;
            for item in page["dead_letters"].as_array().into_iter().flatten() {
                println!("{item}");
            }
            Ok(())
        }
        EventsCommand::Replay { subscription } => {
            let answer = api
                .call(
                    reqwest::Method::POST,
                    "/admin/v1/events/dead-letters/replay",
                    &[("subscription", subscription)],
                )
                .await?;
            println!("{answer}");
            Ok(())
        }
    }
}
