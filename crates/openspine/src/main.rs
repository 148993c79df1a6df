//! `openspine`: the OpenSpine server binary. Thin on purpose: it reads configuration,
//! opens the store, and hands over to `mesh-server`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mesh_server::{AppState, DirectorySource, ServerConfig};
use mesh_store::{Store, StoreConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "openspine",
    version,
    about = "OpenSpine: NHS Spine platform services (MESH first)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the MESH API.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OPENSPINE_LISTEN", default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// Directory for the embedded store (SQLite metadata and payload files).
    #[arg(long, env = "OPENSPINE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Mailboxes, one JSON object per line (MESH sandbox `mailboxes.jsonl` format).
    #[arg(long, env = "OPENSPINE_MAILBOXES")]
    mailboxes: Option<PathBuf>,
    /// Workflows, one JSON object per line (MESH sandbox `workflows.jsonl` format).
    #[arg(long, env = "OPENSPINE_WORKFLOWS")]
    workflows: Option<PathBuf>,
    /// The environment's HMAC shared key. Never logged.
    #[arg(
        long,
        env = "OPENSPINE_SHARED_KEY",
        default_value = "TestKey",
        hide_default_value = true,
        hide_env_values = true
    )]
    shared_key: String,
    /// Load the MESH sandbox's demo mailboxes (X26ABC1-3, password `password`) and workflows.
    #[arg(long, env = "OPENSPINE_DEMO")]
    demo: bool,
    /// Behave as the NHS MESH sandbox: admin endpoints on; no workflow permissions, token
    /// replay or clock checks.
    #[arg(long, env = "OPENSPINE_SANDBOX")]
    sandbox: bool,
    /// Allowed clock difference for token timestamps, in seconds (0 turns the check off).
    #[arg(long, env = "OPENSPINE_CLOCK_SKEW_SECS")]
    clock_skew_secs: Option<u64>,
    /// Accept a token more than once (turns replay protection off).
    #[arg(long, env = "OPENSPINE_ALLOW_TOKEN_REUSE")]
    allow_token_reuse: bool,
    /// Do not check that senders and recipients are registered for the workflow.
    #[arg(long, env = "OPENSPINE_NO_WORKFLOW_PERMISSIONS")]
    no_workflow_permissions: bool,
    /// Largest request body (one chunk, or a whole single-chunk message), in bytes.
    #[arg(long, env = "OPENSPINE_MAX_CHUNK_SIZE", default_value_t = 100_000_000)]
    max_chunk_size: u64,
    /// Largest message, summed over its chunks, in bytes.
    #[arg(
        long,
        env = "OPENSPINE_MAX_MESSAGE_SIZE",
        default_value_t = 20_000_000_000
    )]
    max_message_size: u64,
    /// Most chunks one message may have.
    #[arg(long, env = "OPENSPINE_MAX_CHUNKS", default_value_t = 10_000)]
    max_chunks: u32,
    /// Chunks up to this many bytes are stored inside the metadata database.
    #[arg(long, env = "OPENSPINE_INLINE_MAX", default_value_t = 16 * 1024)]
    inline_max: usize,
    /// Environment name reported by the ping endpoints.
    #[arg(long, env = "OPENSPINE_ENV", default_value = "local")]
    env: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "OPENSPINE_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENSPINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colour codes only on a terminal: logs sent to a file or a collector stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    let mut config = ServerConfig {
        shared_key: args.shared_key,
        max_chunk_size: args.max_chunk_size,
        max_message_size: args.max_message_size,
        max_chunks: args.max_chunks,
        env: args.env,
        ..ServerConfig::default()
    };
    if args.sandbox {
        config = config.sandbox();
    }
    if let Some(secs) = args.clock_skew_secs {
        config.clock_window = (secs > 0).then(|| Duration::from_secs(secs));
    }
    if args.allow_token_reuse {
        config.replay_check = false;
    }
    if args.no_workflow_permissions {
        config.enforce_workflows = false;
    }
    let source = DirectorySource {
        mailboxes: args.mailboxes,
        workflows: args.workflows,
        demo: args.demo,
    };
    let store_config = StoreConfig {
        inline_max: args.inline_max,
        ..StoreConfig::default()
    };
    let store = Store::open_embedded(&args.data_dir, &store_config)
        .await
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    match store.collect_garbage().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed payloads left unreferenced by a crash"),
        Err(e) => tracing::warn!(error = %e, "payload garbage collection failed"),
    }
    let state = AppState::new(config, store, source).context("loading mailboxes and workflows")?;
    let directory = state.directory();
    if directory.mailbox_count() == 0 {
        tracing::warn!("no mailboxes configured: pass --mailboxes FILE or --demo");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %args.data_dir.display(),
        mailboxes = directory.mailbox_count(),
        workflows = directory.workflow_count(),
        sandbox = state.config().sandbox,
        "MESH server ready"
    );
    mesh_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (what service managers send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
