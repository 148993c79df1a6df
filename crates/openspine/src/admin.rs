//! `openspine admin …`: the admin API of a running server (its ops listener), from a
//! shell, as tables for people or JSON for scripts.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

/// Where the admin API is and the token for it (shared by `admin` and `events`).
#[derive(Args)]
pub struct OpsClient {
    /// The server's ops listener (its --ops-listen address).
    #[arg(
        long,
        env = "OPENSPINE_ADMIN_URL",
        default_value = "http://127.0.0.1:8701"
    )]
    url: String,
    /// A file holding the admin token.
    #[arg(long, env = "OPENSPINE_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The admin token (prefer --token-file).
    #[arg(long, env = "OPENSPINE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl OpsClient {
    pub(crate) fn api(&self) -> anyhow::Result<Api> {
        Ok(Api {
            // Never through a proxy from the environment: the ops listener is local or on
            // a management network, and the bearer token must not go to a third party.
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(90))
                .build()?,
            base: self.url.clone(),
            token: token(self)?,
        })
    }
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    ops: OpsClient,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// One message by id: its record and every logged change.
    Message { id: String },
    /// Search messages, newest first.
    Search {
        /// Sender or recipient mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        /// uploading, accepted, acknowledged, undeliverable or error.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        local_id: Option<String>,
        /// Sent at or after (RFC 3339, e.g. 2026-12-04T09:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Sent before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Continue after this id (the `next` of the previous page).
        #[arg(long)]
        before: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Expire a message waiting in an inbox now; its sender gets a non-delivery report.
    Expire { id: String },
    /// Put a message that left its inbox (acknowledged, expired, failed) back into it.
    Redeliver { id: String },
    /// Delete a message, its record and its payload, for good.
    Remove { id: String },
    /// The loaded mailboxes with their waiting messages.
    Mailboxes,
    /// The deepest inboxes.
    Inboxes {
        #[arg(long, default_value_t = 10)]
        top: u32,
    },
    /// The loaded workflows.
    Workflows,
    /// Re-read the mailbox and workflow files and the TLS files (as SIGHUP does).
    Reload,
}

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        self.call_with(method, path, query, None).await
    }

    /// The same, with a JSON body.
    pub(crate) async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/cloudevents+json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url} (is the server running with --ops-listen?)"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = body["error"].as_str().unwrap_or("no reason given");
            match body.get("validationErrors") {
                Some(fields) => bail!("{status}: {why}: {fields}"),
                None => bail!("{status}: {why}"),
            }
        }
        Ok(body)
    }
}

fn token(args: &OpsClient) -> anyhow::Result<String> {
    match (&args.token_file, &args.token) {
        (Some(path), _) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string()),
        (None, Some(t)) => Ok(t.trim().to_string()),
        (None, None) => {
            bail!("an admin token is needed: --token-file FILE or OPENSPINE_ADMIN_TOKEN")
        }
    }
}

/// A message id as the path needs it: only the characters ids have, so that nothing typed
/// (`../mailboxes`, `ID/../OTHER`) can reach another endpoint.
fn message_id(id: &str) -> anyhow::Result<String> {
    let id = id.trim().to_ascii_uppercase();
    if !mesh_protocol::ids::plausible(&id) {
        bail!("{id:?} is not a message id (letters, digits, _ and - only)");
    }
    Ok(id)
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let api = args.ops.api()?;
    use reqwest::Method;
    let (body, render): (Value, fn(&Value) -> String) = match &args.command {
        AdminCommand::Message { id } => (
            api.call(
                Method::GET,
                &format!("/admin/v1/messages/{}", message_id(id)?),
                &[],
            )
            .await?,
            render_message,
        ),
        AdminCommand::Search {
            mailbox,
            workflow,
            status,
            local_id,
            since,
            until,
            before,
            limit,
        } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("mailbox", mailbox),
                ("workflow", workflow),
                ("status", status),
                ("local_id", local_id),
                ("since", since),
                ("until", until),
                ("before", before),
            ] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            (
                api.call(Method::GET, "/admin/v1/messages", &q).await?,
                render_search,
            )
        }
        AdminCommand::Expire { id } => (
            api.call(
                Method::POST,
                &format!("/admin/v1/messages/{}/expire", message_id(id)?),
                &[],
            )
            .await?,
            render_outcome,
        ),
        AdminCommand::Redeliver { id } => (
            api.call(
                Method::POST,
                &format!("/admin/v1/messages/{}/redeliver", message_id(id)?),
                &[],
            )
            .await?,
            render_outcome,
        ),
        AdminCommand::Remove { id } => (
            api.call(
                Method::DELETE,
                &format!("/admin/v1/messages/{}", message_id(id)?),
                &[],
            )
            .await?,
            render_outcome,
        ),
        AdminCommand::Mailboxes => (
            api.call(Method::GET, "/admin/v1/mailboxes", &[]).await?,
            render_mailboxes,
        ),
        AdminCommand::Inboxes { top } => (
            api.call(
                Method::GET,
                "/admin/v1/inboxes",
                &[("top", top.to_string())],
            )
            .await?,
            render_inboxes,
        ),
        AdminCommand::Workflows => (
            api.call(Method::GET, "/admin/v1/workflows", &[]).await?,
            render_workflows,
        ),
        AdminCommand::Reload => (
            api.call(Method::POST, "/admin/v1/reload", &[]).await?,
            render_outcome,
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", render(&body));
    }
    Ok(())
}

/// A value as table text: strings bare, nothing as "-".
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The cells of one item: each field a JSON pointer into it (`/sender/mailbox_id`).
fn row(item: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .map(|f| cell(item.pointer(f).unwrap_or(&Value::Null)))
        .collect()
}

/// One row per item of the array `list`.
fn rows(body: &Value, list: &str, fields: &[&str]) -> Vec<Vec<String>> {
    body[list]
        .as_array()
        .map(|items| items.iter().map(|item| row(item, fields)).collect())
        .unwrap_or_default()
}

const MESSAGE_FIELDS: [&str; 7] = [
    "/message_id",
    "/status",
    "/sender/mailbox_id",
    "/recipient/mailbox_id",
    "/workflow_id",
    "/metadata/local_id",
    "/created",
];

const MESSAGE_HEADER: [&str; 7] = [
    "MESSAGE ID",
    "STATUS",
    "FROM",
    "TO",
    "WORKFLOW",
    "LOCAL ID",
    "SENT",
];

fn render_message(body: &Value) -> String {
    let mut out = String::new();
    let m = &body["message"];
    if m.is_null() {
        out.push_str("record: deleted (purged or removed); history below\n");
    } else {
        out.push_str(&table(&MESSAGE_HEADER, vec![row(m, &MESSAGE_FIELDS)]));
        out.push_str(&format!(
            "type {}  chunks {}  size {}  expires {}  downloaded {}\n",
            cell(&m["message_type"]),
            cell(&m["total_chunks"]),
            cell(&m["file_size"]),
            cell(&m["expires"]),
            cell(&m["downloaded"]),
        ));
    }
    out.push_str("\nhistory:\n");
    let history = rows(body, "history", &["/seq", "/at", "/change", "/status"]);
    out.push_str(&table(&["SEQ", "AT", "CHANGE", "STATUS"], history));
    out
}

fn render_search(body: &Value) -> String {
    let mut out = table(&MESSAGE_HEADER, rows(body, "messages", &MESSAGE_FIELDS));
    if let Some(next) = body["next"].as_str() {
        out.push_str(&format!("more: --before {next}\n"));
    }
    out
}

fn render_outcome(body: &Value) -> String {
    let mut parts: Vec<String> = body
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}: {}", cell(v))).collect())
        .unwrap_or_default();
    parts.sort();
    format!("{}\n", parts.join("\n"))
}

fn render_mailboxes(body: &Value) -> String {
    let fields = [
        "/mailbox_id",
        "/mailbox_name",
        "/ods_code",
        "/active",
        "/waiting",
        "/oldest_waiting_age_secs",
    ];
    table(
        &[
            "MAILBOX",
            "NAME",
            "ODS",
            "ACTIVE",
            "WAITING",
            "OLDEST AGE (S)",
        ],
        rows(body, "mailboxes", &fields),
    )
}

fn render_inboxes(body: &Value) -> String {
    let fields = [
        "/mailbox_id",
        "/waiting",
        "/oldest_waiting",
        "/oldest_waiting_age_secs",
    ];
    table(
        &["MAILBOX", "WAITING", "OLDEST WAITING", "AGE (S)"],
        rows(body, "inboxes", &fields),
    )
}

fn render_workflows(body: &Value) -> String {
    let fields = ["/workflow_id", "/senders", "/receivers"];
    table(
        &["WORKFLOW", "SENDERS", "RECEIVERS"],
        rows(body, "workflows", &fields),
    )
}
