//! `mesh-bench`: drives any MESH server with real `NHSMESH` tokens and verifies every byte.
//!
//! `run` measures one workload against one URL (a table, then one JSON line);
//! `yardstick` measures the disk; `report` turns collected runs into JSON, markdown and a
//! PNG chart; `fixtures` writes the mailbox and workflow files the runs expect.
//! It only ever talks to the URL it is given, and stops by itself.

mod load;
mod payload;
mod report;
mod stats;
mod yardstick;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "mesh-bench",
    version,
    about = "Load generator and benchmark reporter for MESH servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against a server.
    Run(RunArgs),
    /// Measure the disk: sequential write and 1 KiB append+fdatasync.
    Yardstick {
        /// Directory on the disk to measure.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 512)]
        mib: u64,
        #[arg(long, default_value_t = 3.0)]
        fsync_seconds: f64,
    },
    /// Write latest.json, latest.md and latest.png from collected runs.
    Report {
        /// Runs, one JSON object per line (the last line `run` prints).
        #[arg(long)]
        runs: PathBuf,
        #[arg(long)]
        yardstick: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
        /// A TrueType font for the chart (default: DejaVu Sans from the system).
        #[arg(long)]
        font: Option<PathBuf>,
    },
    /// Write mailboxes.jsonl and workflows.jsonl for `--pairs` sender/recipient pairs.
    Fixtures {
        #[arg(long, default_value_t = 64)]
        pairs: usize,
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long, default_value = "password")]
        password: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of the server (scheme and host only). Repeat it for the nodes of a
    /// cluster: worker i sends through node i and receives through node i+1, so every
    /// message crosses nodes.
    #[arg(long, required = true)]
    url: Vec<String>,
    #[arg(long, value_enum, default_value = "round-trip")]
    workload: load::Workload,
    /// Message size in bytes (suffixes K, M, G: binary).
    #[arg(long, default_value = "1K", value_parser = parse_size)]
    size: usize,
    /// Chunk size for the chunked workload (whole MiB).
    #[arg(long, default_value = "20M", value_parser = parse_size)]
    chunk_size: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to run, in seconds (ignored with --count).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Send exactly this many messages instead.
    #[arg(long)]
    count: Option<u64>,
    /// Mailbox pairs from `fixtures` (BENCHS0001/BENCHR0001 …); worker i uses pair i.
    #[arg(long, default_value_t = 64)]
    pairs: usize,
    #[arg(long, default_value = "BENCH")]
    workflow: String,
    #[arg(long, default_value = "password")]
    password: String,
    #[arg(long, default_value = "TestKey")]
    shared_key: String,
    /// Name of the server in the output.
    #[arg(long, default_value = "server")]
    label: String,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1024),
        Some('M' | 'm') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G' | 'g') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s}: {e}"))
}

fn sender(i: usize) -> String {
    format!("BENCHS{:04}", i + 1)
}

fn recipient(i: usize) -> String {
    format!("BENCHR{:04}", i + 1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => {
            anyhow::ensure!(a.pairs > 0, "--pairs must be at least 1");
            anyhow::ensure!(
                a.chunk_size % (1024 * 1024) == 0,
                "--chunk-size must be whole MiB"
            );
            let plan = load::Plan {
                urls: a
                    .url
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
                workload: a.workload,
                size: a.size,
                chunk_size: a.chunk_size,
                concurrency: a.concurrency,
                duration: Duration::from_secs_f64(a.duration),
                count: a.count,
                senders: (0..a.pairs).map(sender).collect(),
                recipients: (0..a.pairs).map(recipient).collect(),
                workflow: a.workflow,
                password: a.password,
                shared_key: a.shared_key,
            };
            let outcome = load::run(plan).await?;
            let mut v = serde_json::to_value(&outcome)?;
            v["label"] = serde_json::json!(a.label);
            eprintln!("{}", human(&v));
            println!("{v}");
            if outcome.lost > 0 || outcome.corrupt > 0 {
                anyhow::bail!(
                    "lost {} and corrupted {} messages",
                    outcome.lost,
                    outcome.corrupt
                );
            }
        }
        Command::Yardstick {
            dir,
            mib,
            fsync_seconds,
        } => {
            let y = yardstick::measure(&dir, mib, fsync_seconds)?;
            println!("{}", serde_json::to_string(&y)?);
        }
        Command::Report {
            runs,
            yardstick,
            out_dir,
            font,
        } => {
            let table = report::write(&runs, &yardstick, &out_dir, font.as_deref())?;
            println!("{table}");
        }
        Command::Fixtures {
            pairs,
            out_dir,
            password,
        } => {
            std::fs::create_dir_all(&out_dir)?;
            let mut mailboxes = String::new();
            for i in 0..pairs {
                for id in [sender(i), recipient(i)] {
                    mailboxes.push_str(
                        &serde_json::json!({
                            "mailbox_id": id, "mailbox_name": id, "ods_code": "X26",
                            "org_code": "X26", "password": password,
                        })
                        .to_string(),
                    );
                    mailboxes.push('\n');
                }
            }
            let workflow = serde_json::json!({
                "workflow_id": "BENCH",
                "senders": (0..pairs).map(sender).collect::<Vec<_>>(),
                "receivers": (0..pairs).map(recipient).collect::<Vec<_>>(),
            });
            std::fs::write(out_dir.join("mailboxes.jsonl"), mailboxes)?;
            std::fs::write(out_dir.join("workflows.jsonl"), format!("{workflow}\n"))?;
        }
    }
    Ok(())
}

/// The human-readable table for one run.
fn human(v: &serde_json::Value) -> String {
    let g = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "{} {} on {} (concurrency {}): {:.0} messages in {:.1} s = {:.1} msg/s, {:.1} API calls/s, {:.1} MiB/s; errors {}, lost {}, corrupt {}\n",
        v["label"].as_str().unwrap_or(""),
        v["workload"].as_str().unwrap_or(""),
        v["target"].as_str().unwrap_or(""),
        g("concurrency"),
        g("messages"),
        g("seconds"),
        g("messages_per_s"),
        g("api_calls_per_s"),
        g("bytes_per_s") / 1048576.0,
        g("errors"),
        g("lost"),
        g("corrupt"),
    );
    out.push_str("  operation        count    p50 ms    p90 ms    p99 ms    max ms\n");
    if let Some(ops) = v["ops"].as_object() {
        for (op, o) in ops {
            let h = |k: &str| o[k].as_f64().unwrap_or(0.0);
            out.push_str(&format!(
                "  {:<14} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                op,
                h("count"),
                h("p50_ms"),
                h("p90_ms"),
                h("p99_ms"),
                h("max_ms")
            ));
        }
    }
    out
}
