//! `openspine`: the OpenSpine server binary. Thin on purpose: it reads configuration,
//! opens the store, and hands over to `mesh-server`.

mod admin;
mod config_file;
mod events_cli;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use mesh_server::config::{LifecycleConfig, RateLimit};
use mesh_server::tls::{TlsFiles, TlsReloader};
use mesh_server::{AppState, DirectorySource, ServerConfig};
use mesh_store::{redact_url, BackendSpec, PgOptions, S3Options, Store, StoreConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "openspine",
    version,
    about = "OpenSpine: NHS Spine platform services (MESH, the OAuth2 front door)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every enabled service on one listener: MESH, and the front door when an app
    /// registry is given (or with --demo).
    Serve(Box<ServeArgs>),
    /// Check a configuration without serving: loads the mailbox and workflow files, the
    /// TLS files and the admin token exactly as `serve` would, prints what it found and
    /// every warning, and exits non-zero on the first error (with its file and line).
    /// Takes the same options and environment variables as `serve`.
    CheckConfig(Box<ServeArgs>),
    /// Operate a running server through its admin API (its --ops-listen address): find,
    /// expire, redeliver or remove messages, watch inbox depths, reload.
    Admin(admin::AdminArgs),
    /// The events service of a running server (its ops listener and admin token): `tail`
    /// prints events live as JSON lines, `publish FILE` publishes a CloudEvent.
    Events(events_cli::EventsCliArgs),
    /// Write a throwaway CA, a server certificate and client certificates (PEM) for
    /// trying mutual TLS locally. Not for production.
    DevCerts(DevCertsArgs),
    /// Register a development app with the front door: writes an RSA key pair, its JWKS
    /// and a line of the app registry, and prints a signed client assertion with the curl
    /// command that exchanges it for a token. Run again for a fresh assertion.
    DevApp(DevAppArgs),
}

#[derive(Args)]
struct DevAppArgs {
    /// The app's name (letters, digits, '-' and '_').
    name: String,
    /// Directory holding the apps (one folder each) and their registry, apps.jsonl.
    #[arg(long, default_value = "./dev-apps")]
    dir: PathBuf,
    /// The token URL the assertion is for: exactly the URL the curl calls.
    #[arg(long, default_value = "http://127.0.0.1:8700/oauth2/token")]
    token_url: String,
}

#[derive(Args)]
struct DevCertsArgs {
    /// Directory to write the PEM files into.
    #[arg(long, default_value = "./certs")]
    out: PathBuf,
    /// Host names and IP addresses the server certificate is valid for.
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    hosts: Vec<String>,
    /// Subject CN of a client certificate to issue (repeatable).
    #[arg(long = "client", default_values_t = ["x26abc1.x26.api.mesh-client.nhs.uk".to_string()])]
    clients: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// A configuration file (TOML, see openspine.example.toml). Flags and environment
    /// variables override what it says.
    #[arg(long, env = "OPENSPINE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "OPENSPINE_LISTEN", default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// Directory for the embedded store (SQLite metadata and payload files).
    #[arg(long, env = "OPENSPINE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Serve MESH under /messageexchange (on by default; `--mesh false` serves the other
    /// enabled services alone).
    #[arg(long, env = "OPENSPINE_MESH", default_value_t = true, action = clap::ArgAction::Set, value_parser = boolish())]
    mesh: bool,
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
    /// Demo data for every service: MESH's demo mailboxes (X26ABC1-3, password `password`)
    /// and workflows; the front door's demo app (openspine-demo-app, whose key is public).
    #[arg(long, env = "OPENSPINE_DEMO", value_parser = boolish())]
    demo: bool,
    /// Every service behaves as its NHS sandbox: MESH's admin endpoints on, no workflow
    /// permissions, token replay or clock checks; the front door without quotas.
    #[arg(long, env = "OPENSPINE_SANDBOX", value_parser = boolish())]
    sandbox: bool,
    /// Allowed clock difference for token timestamps, in seconds (0 turns the check off).
    #[arg(long, env = "OPENSPINE_CLOCK_SKEW_SECS")]
    clock_skew_secs: Option<u64>,
    /// Accept a token more than once (turns replay protection off).
    #[arg(long, env = "OPENSPINE_ALLOW_TOKEN_REUSE", value_parser = boolish())]
    allow_token_reuse: bool,
    /// Do not check that senders and recipients are registered for the workflow.
    #[arg(long, env = "OPENSPINE_NO_WORKFLOW_PERMISSIONS", value_parser = boolish())]
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
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Reloaded on SIGHUP.
    #[arg(long, env = "OPENSPINE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM). Reloaded on SIGHUP.
    #[arg(long, env = "OPENSPINE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require client certificates issued by a CA in this bundle (PEM).
    #[arg(long, env = "OPENSPINE_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// With --client-ca: also accept clients that present no certificate.
    #[arg(long, env = "OPENSPINE_CLIENT_CERT_OPTIONAL", requires = "client_ca", value_parser = boolish())]
    client_cert_optional: bool,
    /// Largest request head (request line plus headers), in bytes.
    #[arg(long, env = "OPENSPINE_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Seconds a client has to send a whole request head (and finish a TLS handshake).
    #[arg(long, env = "OPENSPINE_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    header_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request is abandoned.
    #[arg(long, env = "OPENSPINE_BODY_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    body_idle_timeout_secs: u64,
    /// Connections served at once; more are refused.
    #[arg(long, env = "OPENSPINE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a response may wait for the client to read any of it before the
    /// connection is closed (a client that stops reading would hold its slot forever).
    #[arg(long, env = "OPENSPINE_SEND_STALL_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    send_stall_timeout_secs: u64,
    /// Largest inbox page a client may ask for (`max_results`).
    #[arg(long, env = "OPENSPINE_MAX_PAGE_SIZE", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(10..))]
    max_page_size: u32,
    /// Requests per second each mailbox may make, sustained (0 turns rate limiting off).
    #[arg(long, env = "OPENSPINE_RATE_LIMIT", default_value_t = 500)]
    rate_limit: u32,
    /// Requests a mailbox may make in a burst above the sustained rate.
    #[arg(long, env = "OPENSPINE_RATE_BURST", default_value_t = 1000)]
    rate_burst: u32,
    /// Keep metadata in PostgreSQL (`postgres://user@host:port/db`) instead of SQLite in
    /// the data directory; every node given the same URL shares it. Put the password in
    /// the environment variable, not on the command line. Never logged.
    #[arg(long, env = "OPENSPINE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Connections to PostgreSQL this node holds at most.
    #[arg(long, env = "OPENSPINE_DATABASE_POOL", default_value_t = 16)]
    database_pool: u32,
    /// Seconds a request waits for a PostgreSQL connection (or a statement runs) before
    /// it fails with a MESH 5xx that clients retry.
    #[arg(long, env = "OPENSPINE_DATABASE_TIMEOUT_SECS", default_value_t = 5)]
    database_timeout_secs: u64,
    /// Keep payloads in an S3-compatible object store (`s3://bucket/prefix`) or a shared
    /// directory (`file:///path`) instead of the data directory. S3 credentials come from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "OPENSPINE_BLOB_URL")]
    blob_url: Option<String>,
    /// Endpoint of a self-hosted S3 store (Garage, Ceph, MinIO), e.g. `http://10.0.0.5:3900`.
    #[arg(long, env = "OPENSPINE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region (Garage calls its own `garage`).
    #[arg(long, env = "OPENSPINE_S3_REGION")]
    s3_region: Option<String>,
    /// Address buckets as `bucket.host` (AWS style) instead of `host/bucket`, which
    /// self-hosted stores expect and is the default.
    #[arg(long, env = "OPENSPINE_S3_VIRTUAL_HOSTED", value_parser = boolish())]
    s3_virtual_hosted: bool,
    /// Seconds between sweeps for payloads that no message refers to (one node sweeps
    /// at a time, under a lease kept in the store).
    #[arg(long, env = "OPENSPINE_GC_INTERVAL_SECS", default_value_t = 600)]
    gc_interval_secs: u64,
    /// A payload is swept only when older than this many seconds, so an upload still in
    /// flight on some node is never taken. Must exceed the longest chunk upload.
    #[arg(long, env = "OPENSPINE_GC_MIN_AGE_SECS", default_value_t = 3600)]
    gc_min_age_secs: u64,
    /// Seconds a message may wait in its inbox, not acknowledged, before it expires and
    /// its sender gets a non-delivery report (0: never expire). MESH: 5 days.
    #[arg(long, env = "OPENSPINE_INBOX_EXPIRY_SECS", default_value_t = 432_000,
          value_parser = clap::value_parser!(u64).range(..=MAX_PERIOD_SECS))]
    inbox_expiry_secs: u64,
    /// Seconds after a message's last state change (acknowledged, expired, report
    /// acknowledged) before it is deleted with its payload (0: keep forever). MESH: 30 days.
    #[arg(long, env = "OPENSPINE_RETENTION_SECS", default_value_t = 2_592_000,
          value_parser = clap::value_parser!(u64).range(..=MAX_PERIOD_SECS))]
    retention_secs: u64,
    /// Seconds a chunked upload may stay incomplete before it is deleted (0: never).
    #[arg(long, env = "OPENSPINE_UPLOAD_TIMEOUT_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(..=MAX_PERIOD_SECS))]
    upload_timeout_secs: u64,
    /// Seconds the event log keeps an entry (0: forever).
    #[arg(long, env = "OPENSPINE_EVENT_LOG_RETENTION_SECS", default_value_t = 604_800,
          value_parser = clap::value_parser!(u64).range(..=MAX_PERIOD_SECS))]
    event_log_retention_secs: u64,
    /// Seconds between lifecycle sweeps (expiry, reports, retention). Every node sweeps;
    /// the store makes sure only one acts on a given message.
    #[arg(long, env = "OPENSPINE_LIFECYCLE_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    lifecycle_interval_secs: u64,
    /// Messages per lifecycle transaction.
    #[arg(long, env = "OPENSPINE_LIFECYCLE_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    lifecycle_batch: u32,
    /// Serve metrics, health, readiness and the admin API on this address (plain HTTP,
    /// no client certificate): keep it on loopback or a management network. Off unless
    /// set; the MESH port does not serve /metrics.
    #[arg(long, env = "OPENSPINE_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// A file holding the admin API's bearer token (one line). Without a token, from
    /// here or OPENSPINE_ADMIN_TOKEN, the admin API is off.
    #[arg(long, env = "OPENSPINE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// The admin API's bearer token itself (prefer --admin-token-file). Never logged.
    #[arg(
        long = "admin-token",
        env = "OPENSPINE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// MiB of disk the embedded store keeps in reserve (reserve.bin in the data
    /// directory), given back when the disk runs low so that reads and acknowledgements
    /// keep working while sends are refused (0: watch free space only).
    #[arg(long, env = "OPENSPINE_DISK_RESERVE_MIB", default_value_t = 64)]
    disk_reserve_mib: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "OPENSPINE_LOG_JSON", value_parser = boolish())]
    log_json: bool,
    #[command(flatten)]
    frontdoor: frontdoor::settings::FrontDoorArgs,
    #[command(flatten)]
    events: events_server::settings::EventsArgs,
}

fn main() -> std::process::ExitCode {
    // The configuration file becomes environment variables before clap reads them, and
    // before any thread exists (setting the environment is not thread-safe).
    if let Some(path) = config_file::path_from_args() {
        let command = Cli::command();
        let serve = command
            .find_subcommand("serve")
            .cloned()
            .unwrap_or_else(|| clap::Command::new("serve"));
        if let Err(e) = config_file::apply(&path, &serve) {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with every cause, for an operator reading a service log; no
            // backtrace, which says nothing about a configuration mistake.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::CheckConfig(args) => check_config(&args),
        Command::Admin(args) => admin::run(args).await,
        Command::Events(args) => events_cli::run(args).await,
        Command::DevCerts(args) => {
            let made = mesh_server::devcerts::generate(&args.out, &args.hosts, &args.clients)?;
            println!("CA:          {}", made.ca.display());
            println!(
                "server:      {} {}",
                made.server_cert.display(),
                made.server_key.display()
            );
            for (cn, cert, key) in &made.clients {
                println!("client {cn}: {} {}", cert.display(), key.display());
            }
            Ok(())
        }
        Command::DevApp(args) => dev_app(&args),
    }
}

fn dev_app(args: &DevAppArgs) -> anyhow::Result<()> {
    let app = frontdoor::devapp::make(&args.dir, &args.name, &args.token_url)?;
    let base = args
        .token_url
        .strip_suffix("/oauth2/token")
        .unwrap_or(&args.token_url);
    if app.created {
        println!("app {} registered:", args.name);
    } else {
        println!("app {} (already registered):", args.name);
    }
    println!("  client id:    {}", app.client_id);
    println!("  private key:  {}", app.private_key.display());
    println!("  public keys:  {} (kid {})", app.jwks.display(), app.kid);
    println!("  registry:     {}", app.registry.display());
    println!();
    println!("Serve with it (a running server reloads the registry on SIGHUP):");
    println!(
        "  openspine serve --demo --frontdoor-registry {}",
        app.registry.display()
    );
    println!();
    println!("A client assertion, valid for 5 minutes and usable once:");
    println!("  {}", app.assertion);
    println!();
    println!("Exchange it for an access token:");
    println!(
        "  curl -s -X POST {} -d grant_type=client_credentials -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d client_assertion={}",
        args.token_url, app.assertion
    );
    println!();
    println!("Then call the Hello World API with it:");
    println!(
        "  curl -s {base}/hello-world/hello/application -H \"Authorization: Bearer <access_token>\""
    );
    Ok(())
}

/// Switches set by environment variable take true/false, yes/no, on/off or 1/0 (any case),
/// as the README promises; anything else is refused rather than read as "off".
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

/// The longest lifecycle period accepted: a century. Longer is a typo, and would overflow
/// date arithmetic.
const MAX_PERIOD_SECS: u64 = 100 * 366 * 86_400;

/// A period in seconds, where 0 means "off".
fn secs(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n))
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

/// The server's settings from the command line and environment.
fn server_config(args: &ServeArgs) -> ServerConfig {
    let mut config = ServerConfig {
        shared_key: args.shared_key.clone(),
        max_chunk_size: args.max_chunk_size,
        max_message_size: args.max_message_size,
        max_chunks: args.max_chunks,
        env: args.env.clone(),
        max_page_size: args.max_page_size,
        max_header_bytes: args.max_header_bytes,
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_idle_timeout: Duration::from_secs(args.body_idle_timeout_secs.max(1)),
        max_connections: args.max_connections.max(1),
        send_stall_timeout: Duration::from_secs(args.send_stall_timeout_secs),
        rate_limit: (args.rate_limit > 0).then_some(RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst.max(1),
        }),
        lifecycle: LifecycleConfig {
            inbox_expiry: secs(args.inbox_expiry_secs),
            retention: secs(args.retention_secs),
            upload_timeout: secs(args.upload_timeout_secs),
            log_retention: secs(args.event_log_retention_secs),
            interval: Duration::from_secs(args.lifecycle_interval_secs),
            batch: args.lifecycle_batch,
        },
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
    config
}

/// The admin token from its file or the environment; an empty one is refused rather than
/// accepted (an empty bearer token would match an empty header).
fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match (&args.admin_token_file, &args.admin_token) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, Some(t)) => Some(t.trim().to_string()),
        (None, None) => None,
    };
    match token {
        Some(t) if t.len() < 16 => anyhow::bail!(
            "the admin token must be at least 16 characters (it guards every message)"
        ),
        other => Ok(other),
    }
}

fn directory_source(args: &ServeArgs) -> DirectorySource {
    DirectorySource {
        mailboxes: args.mailboxes.clone(),
        workflows: args.workflows.clone(),
        demo: args.demo,
    }
}

fn load_tls(args: &ServeArgs) -> anyhow::Result<Option<TlsReloader>> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(
            TlsReloader::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
                client_cert_optional: args.client_cert_optional,
            })
            .context("loading the TLS certificate and key")?,
        )),
        _ => Ok(None),
    }
}

/// Settings that work but expose the service: said at every start, and by check-config.
fn risky_settings(args: &ServeArgs) -> Vec<String> {
    let mut warnings = Vec::new();
    let exposed = !args.listen.ip().is_loopback();
    if args.shared_key == mesh_server::config::DEFAULT_SHARED_KEY && (exposed || !args.sandbox) {
        warnings.push(format!(
            "the shared key is the public default ({}): anyone who has read the MESH \
             documentation can make tokens for any mailbox whose password they guess; set \
             OPENSPINE_SHARED_KEY",
            mesh_server::config::DEFAULT_SHARED_KEY
        ));
    }
    if args.sandbox && exposed {
        warnings.push(format!(
            "--sandbox on {} (not a loopback address): the sandbox has no replay or clock \
             checks and lets anyone reset every mailbox; keep it on 127.0.0.1",
            args.listen
        ));
    }
    if args.tls_cert.is_none() && exposed {
        warnings.push(format!(
            "plain HTTP on {} (not a loopback address): tokens and messages cross the \
             network unencrypted; use --tls-cert and --tls-key, or a TLS proxy in front on \
             the same host",
            args.listen
        ));
    }
    warnings
}

fn check_config(args: &ServeArgs) -> anyhow::Result<()> {
    let config = server_config(args);
    let admin = admin_token(args)?;
    let directory = if args.mesh {
        Some(
            mesh_server::directory::load(&directory_source(args))
                .context("loading mailboxes and workflows")?,
        )
    } else {
        None
    };
    let tls = load_tls(args)?;
    match &directory {
        Some(d) => println!(
            "MESH: on, mailboxes: {}, workflows: {}",
            d.mailbox_count(),
            d.workflow_count()
        ),
        None => println!("MESH: off"),
    }
    println!(
        "listen: {} ({}{})",
        args.listen,
        if tls.is_some() { "HTTPS" } else { "plain HTTP" },
        if args.client_ca.is_some() {
            ", mutual TLS"
        } else {
            ""
        }
    );
    println!(
        "mode: {}",
        if config.sandbox { "sandbox" } else { "service" }
    );
    println!(
        "ops listener: {}; admin API: {}",
        args.ops_listen
            .map_or_else(|| "off".to_string(), |a| a.to_string()),
        if admin.is_some() {
            "on"
        } else {
            "off (no admin token)"
        }
    );
    if args.frontdoor.enabled(args.demo) {
        let config = args.frontdoor.config(
            args.demo,
            args.sandbox,
            tls.is_some(),
            Duration::from_secs(60),
        );
        let registry =
            frontdoor::FrontDoor::registry_from(&config).context("loading the app registry")?;
        println!("front door: on, {} apps", registry.len());
    } else {
        println!("front door: off (no --frontdoor-registry)");
        if !args.mesh && !args.events.enabled(args.demo) {
            anyhow::bail!("no service is enabled: MESH is off and the front door has no registry");
        }
    }
    if args.events.enabled(args.demo) {
        args.events
            .config(args.sandbox, "http://localhost")
            .map_err(anyhow::Error::msg)?;
        println!(
            "events: on{}; MESH deliveries from {}; queues {}; webhooks {}",
            if args.sandbox { " (sandbox)" } else { "" },
            args.events
                .events_mesh_mailbox
                .as_deref()
                .unwrap_or("nobody (off)"),
            args.events.events_nats_url.as_deref().unwrap_or("off"),
            if args.events.events_webhooks {
                "on"
            } else {
                "off"
            }
        );
    } else {
        println!("events: off");
    }
    let mut warnings: Vec<String> = directory
        .as_ref()
        .map(|d| d.warnings().to_vec())
        .unwrap_or_default();
    warnings.extend(risky_settings(args));
    for w in &warnings {
        println!("warning: {w}");
    }
    println!(
        "configuration OK{}",
        if warnings.is_empty() {
            String::new()
        } else {
            format!(" ({} warnings)", warnings.len())
        }
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    for warning in risky_settings(&args) {
        tracing::warn!("{warning}");
    }
    let tls = load_tls(&args)?;
    let platform = server_config(&args);
    let admin_api = args.mesh && admin_token(&args)?.is_some();
    let mesh = if args.mesh {
        Some(start_mesh(&args, &tls).await?)
    } else {
        None
    };
    // The one coordination store of the process: MESH's when MESH runs (the SQLite file
    // beside its database, or the coord_* tables of the shared PostgreSQL), else the
    // same store opened on its own.
    let (coord, _dir_lock) = match &mesh {
        Some(state) => (state.store().meta.coordination(), None),
        None => open_coordination(&args).await?,
    };
    let front_door = if args.frontdoor.enabled(args.demo) {
        let config = args.frontdoor.config(
            args.demo,
            args.sandbox,
            tls.is_some(),
            platform.body_idle_timeout,
        );
        let fd =
            frontdoor::FrontDoor::new(config, coord.clone()).context("loading the app registry")?;
        frontdoor::register_metrics();
        tracing::info!(apps = fd.registry().len(), "front door ready");
        Some(fd)
    } else {
        None
    };
    let events = if args.events.enabled(args.demo) {
        Some(
            start_events(
                &args,
                &tls,
                mesh.as_ref(),
                coord.clone(),
                front_door.is_some(),
            )
            .await?,
        )
    } else {
        None
    };
    if mesh.is_none() && front_door.is_none() && events.is_none() {
        anyhow::bail!(
            "no service is enabled: MESH is off (--mesh false), the front door has no \
             registry (--frontdoor-registry FILE, --frontdoor or --demo) and the events \
             service is off (--events)"
        );
    }
    spawn_reload_on_hangup(mesh.clone(), tls.clone(), front_door.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_task = match args.ops_listen {
        Some(addr) => {
            let ops = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the ops listener {addr}"))?;
            tracing::info!(
                ops_listen = %ops.local_addr()?,
                admin_api,
                "ops listener ready"
            );
            let mut services = Vec::new();
            services.extend(mesh.as_ref().map(mesh_server::ops::service_ops));
            services.extend(front_door.as_ref().map(frontdoor::FrontDoor::service_ops));
            services.extend(events.as_ref().map(events_server::Events::service_ops));
            // Every service's admin routes sit behind MESH's admin token check (without
            // MESH, there is no admin API yet).
            let others = spine_http::routes(
                events
                    .iter()
                    .map(|ev| events_server::admin::router(ev.clone())),
            );
            let admin = spine_http::routes(mesh.iter().map(|state| {
                mesh_server::ops::admin_router(state.clone(), tls.clone(), others.clone())
            }));
            let app = spine_http::ops::router(services, admin);
            let config = platform.listener("ops");
            Some(tokio::spawn(async move {
                spine_http::serve(ops, app, &config, None, async {
                    let _ = ops_stopped.await;
                })
                .await
            }))
        }
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        mesh = mesh.is_some(),
        frontdoor = front_door.is_some(),
        events = events.is_some(),
        sandbox = args.sandbox,
        tls = tls.is_some(),
        mutual_tls = args.client_ca.is_some(),
        "OpenSpine ready"
    );
    // One listener for every enabled service, each under its NHS base path.
    let config = platform.listener("api");
    let events_routes = events.map(|ev| {
        let api = events_server::api::router(ev.clone());
        // Outside the sandbox every call but health passes the front door's checks.
        let api = match (&front_door, args.sandbox) {
            (Some(fd), false) => {
                frontdoor::bearer::layer(fd.clone(), events_server::Events::protected(), api)
            }
            _ => api,
        };
        events_server::api::layers(
            api.merge(events_server::api::open_router(ev)),
            platform.body_idle_timeout,
        )
    });
    let app = spine_http::routes(
        mesh.map(mesh_server::router)
            .into_iter()
            .chain(front_door.map(frontdoor::router))
            .chain(events_routes),
    );
    spine_http::serve(listener, app, &config, tls, shutdown_signal()).await?;
    let _ = ops_stop.send(());
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens the events store (SQLite in the data directory, or the `ev_*` tables of
/// `--database-url`), starts the dispatcher and, with MESH, the relay of MESH's events.
async fn start_events(
    args: &ServeArgs,
    tls: &Option<TlsReloader>,
    mesh: Option<&AppState>,
    coord: std::sync::Arc<dyn spine_store::Coordination>,
    front_door: bool,
) -> anyhow::Result<events_server::Events> {
    if !args.sandbox && !front_door {
        anyhow::bail!(
            "the events service needs the front door for its tokens: give \
             --frontdoor-registry FILE (or --demo), or run it with --sandbox"
        );
    }
    let public = args.frontdoor.public_base_url.clone().unwrap_or_else(|| {
        format!(
            "{}://{}",
            if tls.is_some() { "https" } else { "http" },
            args.listen
        )
    });
    let config = args
        .events
        .config(args.sandbox, &public)
        .map_err(anyhow::Error::msg)?;
    let store: std::sync::Arc<dyn events_store::EventStore> = match &args.database_url {
        Some(url) if url.starts_with("postgres") => std::sync::Arc::new(
            events_store::PgEventStore::connect(url, args.database_pool.max(1))
                .await
                .with_context(|| format!("opening the events store {}", redact_url(url)))?,
        ),
        _ => std::sync::Arc::new(
            events_store::SqliteEventStore::open(&args.data_dir)
                .await
                .with_context(|| {
                    format!("opening the events store in {}", args.data_dir.display())
                })?,
        ),
    };
    let mailboxes = mesh.map(|state| {
        std::sync::Arc::new(mesh_server::events::MeshMailboxes(state.clone()))
            as std::sync::Arc<dyn spine_events::Mailboxes>
    });
    let skip = config.mesh_mailbox.clone();
    let events = events_server::Events::new(config, store, coord, mailboxes);
    events_server::metrics::register();
    if !args.sandbox {
        events.spawn_dispatcher();
        events.spawn_retention();
        if let Some(state) = mesh {
            mesh_server::events::spawn_relay(state.clone(), events.publisher("mesh"), skip);
        }
    }
    tracing::info!(sandbox = args.sandbox, "events service ready");
    Ok(events)
}

/// Opens MESH's store, sweeps what a crash left, loads the mailboxes and starts MESH's
/// background workers: everything MESH needs before its router can serve.
async fn start_mesh(args: &ServeArgs, tls: &Option<TlsReloader>) -> anyhow::Result<AppState> {
    let mut config = server_config(args);
    config.admin_token = admin_token(args)?;
    let source = directory_source(args);
    let store_config = StoreConfig {
        inline_max: args.inline_max,
        ..StoreConfig::default()
    };
    let spec = backend_spec(args);
    let metadata = match &args.database_url {
        Some(url) => redact_url(url),
        None => format!("sqlite {}", args.data_dir.join("mesh.db").display()),
    };
    let payloads = match &args.blob_url {
        Some(url) => url.clone(),
        None => format!("files {}", args.data_dir.join("chunks").display()),
    };
    let store = Store::open(&args.data_dir, &spec, &store_config)
        .await
        .with_context(|| {
            format!("opening the store (metadata: {metadata}; payloads: {payloads})")
        })?;
    if !store.is_shared() {
        // Crash leftovers, before listening: only payloads older than the minimum age,
        // as on every later sweep. The data-directory lock already keeps a second
        // process out; the age rule means even a mistake there cannot take an upload
        // in flight.
        match store
            .collect_garbage(Duration::from_secs(args.gc_min_age_secs))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed payloads left unreferenced by a crash"),
            Err(e) => tracing::warn!(error = %e, "payload garbage collection failed"),
        }
    }
    spawn_garbage_collector(
        store.clone(),
        Duration::from_secs(args.gc_interval_secs.max(1)),
        Duration::from_secs(args.gc_min_age_secs),
    );
    let mut state =
        AppState::new(config, store, source).context("loading mailboxes and workflows")?;
    if args.database_url.is_none() || args.blob_url.is_none() {
        let guard = mesh_store::DiskGuard::open(&args.data_dir, args.disk_reserve_mib << 20)
            .with_context(|| format!("watching the disk of {}", args.data_dir.display()))?;
        state = state.with_disk_guard(std::sync::Arc::new(guard));
    }
    mesh_server::metrics::register_families();
    let directory = state.directory();
    for warning in directory.warnings() {
        tracing::warn!("{warning}");
    }
    if directory.mailbox_count() == 0 {
        tracing::warn!("no mailboxes configured: pass --mailboxes FILE or --demo");
    }
    mesh_server::lifecycle::spawn(state.clone());
    mesh_server::watch::spawn(state.clone(), tls.clone());
    tracing::info!(
        metadata = %metadata,
        payloads = %payloads,
        mailboxes = directory.mailbox_count(),
        workflows = directory.workflow_count(),
        sandbox = state.config().sandbox,
        "MESH ready"
    );
    Ok(state)
}

fn backend_spec(args: &ServeArgs) -> BackendSpec {
    let timeout = Duration::from_secs(args.database_timeout_secs.max(1));
    BackendSpec {
        database_url: args.database_url.clone(),
        blob_url: args.blob_url.clone(),
        s3: S3Options {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            path_style: !args.s3_virtual_hosted,
        },
        pg: PgOptions {
            max_connections: args.database_pool.max(1),
            acquire_timeout: timeout,
            statement_timeout: timeout.max(Duration::from_secs(30)),
        },
    }
}

/// The coordination store without MESH: the coord_* tables of `--database-url`, or
/// `coordination.db` in the data directory (locked to this process, as MESH locks it).
/// The lock, when there is one, is held for as long as the caller keeps it.
async fn open_coordination(
    args: &ServeArgs,
) -> anyhow::Result<(
    std::sync::Arc<dyn spine_store::Coordination>,
    Option<spine_store::DirLock>,
)> {
    match &args.database_url {
        Some(url) if url.starts_with("postgres") => {
            let coord = spine_store::PgCoordination::connect(url, args.database_pool.max(1))
                .await
                .with_context(|| format!("opening the coordination store {}", redact_url(url)))?;
            Ok((std::sync::Arc::new(coord), None))
        }
        _ => {
            let lock = spine_store::DirLock::acquire(&args.data_dir)?;
            let path = args.data_dir.join("coordination.db");
            let coord = spine_store::SqliteCoordination::open(&path)
                .await
                .with_context(|| format!("opening the coordination store {}", path.display()))?;
            Ok((std::sync::Arc::new(coord), Some(lock)))
        }
    }
}

/// Sweeps payloads that no message refers to, every `interval`, on whichever node holds
/// the store's `payload-gc` lease. The lease outlives an interval, so one node keeps it
/// while it lives and another takes over within two intervals when it dies.
fn spawn_garbage_collector(store: Store, interval: Duration, min_age: Duration) {
    let holder = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match store
                .meta
                .try_lease("payload-gc", &holder, interval * 2)
                .await
            {
                Ok(true) => match store.collect_garbage(min_age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed unreferenced payloads"),
                    Err(e) => tracing::warn!(error = %e, "payload garbage collection failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not take the garbage-collection lease"),
            }
        }
    });
}

/// SIGHUP re-reads the TLS certificate and key (a rotation needs no restart) and the
/// mailbox and workflow files. A file that fails to load leaves the running one in use.
fn spawn_reload_on_hangup(
    mesh: Option<AppState>,
    tls: Option<TlsReloader>,
    front_door: Option<frontdoor::FrontDoor>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: reload needs a restart");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                    Err(e) => {
                        metrics::counter!("mesh_reload_errors_total", "service" => "mesh", "what" => "tls")
                            .increment(1);
                        tracing::error!(error = %e, "TLS reload failed: keeping the previous certificate")
                    }
                }
            }
            if let Some(state) = &mesh {
                match state.reload_directory() {
                    Ok(()) => tracing::info!("mailboxes and workflows reloaded"),
                    Err(e) => {
                        metrics::counter!("mesh_reload_errors_total", "service" => "mesh", "what" => "directory")
                            .increment(1);
                        tracing::error!(error = %e, "directory reload failed: keeping the previous one")
                    }
                }
            }
            if let Some(fd) = &front_door {
                match fd.reload() {
                    Ok(n) => tracing::info!(apps = n, "app registry reloaded"),
                    Err(e) => {
                        metrics::counter!("frontdoor_reload_errors_total", "service" => "frontdoor", "what" => "registry")
                            .increment(1);
                        tracing::error!(error = %e, "app registry reload failed: keeping the previous one")
                    }
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (mesh, tls, front_door);
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
