//! The workloads. Each worker owns one sender and one recipient mailbox, so workers never
//! race for the same inbox; every downloaded byte is checked against what was sent.

use crate::payload;
use crate::stats::{OpSummary, Samples};
use bytes::Bytes;
use futures::StreamExt;
use mesh_client::MeshClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Senders only; the inboxes are drained and verified after the clock stops.
    Send,
    /// Send, list the inbox, download and verify, acknowledge.
    RoundTrip,
    /// Large messages in chunks, streamed up and down and verified byte for byte.
    Chunked,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// One or more nodes; worker i sends through node i and receives through node i+1.
    pub urls: Vec<String>,
    pub workload: Workload,
    pub size: usize,
    pub chunk_size: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub count: Option<u64>,
    pub senders: Vec<String>,
    pub recipients: Vec<String>,
    pub workflow: String,
    pub password: String,
    pub shared_key: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub workload: String,
    pub target: String,
    pub concurrency: usize,
    pub message_size: usize,
    pub seconds: f64,
    pub messages: u64,
    pub messages_per_s: f64,
    pub api_calls: u64,
    pub api_calls_per_s: f64,
    pub bytes_per_s: f64,
    /// Bytes sent per second of time spent sending (chunked: the upload bandwidth of
    /// one large message, comparable with the disk's sequential write yardstick).
    pub upload_bytes_per_s: f64,
    pub errors: u64,
    pub lost: u64,
    pub corrupt: u64,
    pub ops: BTreeMap<&'static str, OpSummary>,
}

#[derive(Default)]
struct WorkerResult {
    samples: Samples,
    sent: u64,
    received: u64,
    bytes: u64,
    upload_secs: f64,
    errors: u64,
    corrupt: u64,
}

fn client(plan: &Plan, http: &reqwest::Client, mailbox: &str, node: usize) -> MeshClient {
    MeshClient::with_http(
        http.clone(),
        &plan.urls[node % plan.urls.len()],
        mailbox,
        &plan.password,
        &plan.shared_key,
    )
}

pub async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    anyhow::ensure!(plan.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(!plan.urls.is_empty(), "need a server URL");
    anyhow::ensure!(
        !plan.senders.is_empty() && !plan.recipients.is_empty(),
        "need mailboxes"
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency * 2)
        .timeout(Duration::from_secs(300))
        .build()?;
    // One request before the clock starts: a server may set itself up on first use (the
    // NHS sandbox builds its store lazily, and requests racing that first build lose
    // their messages), and the benchmark measures steady state, not start-up.
    for (i, url) in plan.urls.iter().enumerate() {
        client(&plan, &http, &plan.recipients[0], i)
            .inbox_page(None)
            .await
            .map_err(|e| anyhow::anyhow!("warm-up request to {url} failed: {e}"))?;
    }
    let plan = Arc::new(plan);
    let started = Instant::now();
    let deadline = started + plan.duration;
    let per_worker = plan.count.map(|c| c.div_ceil(plan.concurrency as u64));
    let mut tasks = Vec::new();
    for w in 0..plan.concurrency {
        let plan = plan.clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let sender = client(&plan, &http, &plan.senders[w % plan.senders.len()], w);
            let recipient = client(
                &plan,
                &http,
                &plan.recipients[w % plan.recipients.len()],
                w + 1,
            );
            match plan.workload {
                Workload::Chunked => {
                    chunked(&plan, w as u32, &sender, &recipient, deadline, per_worker).await
                }
                _ => messages(&plan, w as u32, &sender, &recipient, deadline, per_worker).await,
            }
        }));
    }
    let mut total = WorkerResult::default();
    for t in tasks {
        let r = t.await?;
        total.samples.merge(r.samples);
        total.sent += r.sent;
        total.received += r.received;
        total.bytes += r.bytes;
        total.upload_secs += r.upload_secs;
        total.errors += r.errors;
        total.corrupt += r.corrupt;
    }
    let seconds = started.elapsed().as_secs_f64();
    let calls = total.samples.calls() as u64;
    // What was sent but never arrived, after the drain: lost.
    let mut drained = WorkerResult::default();
    if plan.workload != Workload::Chunked {
        for r in plan.recipients.iter().take(plan.concurrency) {
            drain(&client(&plan, &http, r, 0), &mut drained).await;
        }
    }
    let received = total.received + drained.received;
    let messages = if plan.workload == Workload::Send {
        total.sent
    } else {
        total.received
    };
    Ok(Outcome {
        workload: format!("{:?}", plan.workload),
        target: plan.urls.join(" "),
        concurrency: plan.concurrency,
        message_size: plan.size,
        seconds,
        messages,
        messages_per_s: messages as f64 / seconds,
        api_calls: calls,
        api_calls_per_s: calls as f64 / seconds,
        bytes_per_s: total.bytes as f64 / seconds,
        upload_bytes_per_s: if total.upload_secs > 0.0 {
            total.bytes as f64 / total.upload_secs
        } else {
            0.0
        },
        errors: total.errors + drained.errors,
        lost: total.sent.saturating_sub(received),
        corrupt: total.corrupt + drained.corrupt,
        ops: total.samples.summary(),
    })
}

fn more(deadline: Instant, done: u64, limit: Option<u64>) -> bool {
    match limit {
        Some(n) => done < n,
        None => Instant::now() < deadline,
    }
}

async fn timed<T, E>(
    samples: &mut Samples,
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let t = Instant::now();
    let r = f.await;
    if r.is_ok() {
        samples.record(op, t.elapsed());
    }
    r
}

async fn messages(
    plan: &Plan,
    worker: u32,
    sender: &MeshClient,
    recipient: &MeshClient,
    deadline: Instant,
    limit: Option<u64>,
) -> WorkerResult {
    let mut r = WorkerResult::default();
    let to = recipient.mailbox().to_string();
    let list_path = recipient.mx("/inbox?max_results=100");
    let mut seq = 0u64;
    while more(deadline, seq, limit) {
        seq += 1;
        let data = Bytes::from(payload::generate(worker, seq, plan.size));
        let len = data.len() as u64;
        match timed(
            &mut r.samples,
            "send",
            sender.send(&to, &plan.workflow, data),
        )
        .await
        {
            Ok(_) => {
                r.sent += 1;
                r.bytes += len;
            }
            Err(_) => {
                r.errors += 1;
                continue;
            }
        }
        if plan.workload != Workload::RoundTrip {
            continue;
        }
        let ids = match timed(
            &mut r.samples,
            "list",
            recipient.inbox_page(Some(&list_path)),
        )
        .await
        {
            Ok((ids, _)) => ids,
            Err(_) => {
                r.errors += 1;
                continue;
            }
        };
        for id in ids {
            receive(recipient, &id, &mut r, true).await;
        }
    }
    r
}

/// Downloads, verifies and acknowledges one message.
async fn receive(recipient: &MeshClient, id: &str, r: &mut WorkerResult, time_it: bool) {
    let t = Instant::now();
    let Ok(data) = recipient.download(id).await else {
        r.errors += 1;
        return;
    };
    if time_it {
        r.samples.record("download", t.elapsed());
    }
    if !payload::verify(&data) {
        r.corrupt += 1;
    }
    let t = Instant::now();
    match recipient.acknowledge(id).await {
        Ok(()) => {
            if time_it {
                r.samples.record("ack", t.elapsed());
            }
            r.received += 1;
        }
        Err(_) => r.errors += 1,
    }
}

/// Receives whatever is left in an inbox (not timed).
async fn drain(recipient: &MeshClient, r: &mut WorkerResult) {
    loop {
        let Ok((ids, _)) = recipient.inbox_page(None).await else {
            r.errors += 1;
            return;
        };
        if ids.is_empty() {
            return;
        }
        for id in ids {
            receive(recipient, &id, r, false).await;
        }
    }
}

async fn chunked(
    plan: &Plan,
    worker: u32,
    sender: &MeshClient,
    recipient: &MeshClient,
    deadline: Instant,
    limit: Option<u64>,
) -> WorkerResult {
    let mut r = WorkerResult::default();
    let total = plan.size.div_ceil(plan.chunk_size).max(1) as u32;
    let mut seq = 0u64;
    // A chunked message always completes once started, so a time-bound run does at least one.
    while seq == 0 || more(deadline, seq, limit) {
        seq += 1;
        let stream_id = (u64::from(worker) << 32) | seq;
        let mut id = String::new();
        let mut failed = false;
        for n in 1..=total {
            let start = (n as usize - 1) * plan.chunk_size;
            let len = plan.chunk_size.min(plan.size - start);
            let pieces = piece_stream(stream_id, start, len);
            let body = reqwest::Body::wrap_stream(pieces);
            let t = Instant::now();
            let res = if n == 1 {
                sender
                    .send_chunk1(recipient.mailbox(), &plan.workflow, body, total)
                    .await
                    .map(|i| id = i)
            } else {
                sender.send_chunk(&id, n, total, body).await
            };
            match res {
                Ok(()) => {
                    r.samples.record("chunk_upload", t.elapsed());
                    r.upload_secs += t.elapsed().as_secs_f64();
                    r.bytes += len as u64;
                }
                Err(_) => {
                    r.errors += 1;
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }
        r.sent += 1;
        let mut check = payload::StreamCheck::new(stream_id, PIECE);
        for n in 1..=total {
            let t = Instant::now();
            let path = if n == 1 {
                recipient.mx(&format!("/inbox/{id}"))
            } else {
                recipient.mx(&format!("/inbox/{id}/{n}"))
            };
            let resp = recipient
                .request(reqwest::Method::GET, &path)
                .header("accept-encoding", "identity")
                .send()
                .await;
            let Ok(resp) = resp else {
                r.errors += 1;
                failed = true;
                break;
            };
            if !resp.status().is_success() {
                r.errors += 1;
                failed = true;
                break;
            }
            let mut body = resp.bytes_stream();
            while let Some(piece) = body.next().await {
                match piece {
                    Ok(b) => check.feed(&b, plan.size as u64),
                    Err(_) => {
                        r.errors += 1;
                        failed = true;
                        break;
                    }
                }
            }
            r.samples.record("chunk_download", t.elapsed());
        }
        if failed {
            continue;
        }
        if !check.ok || check.seen != plan.size as u64 {
            r.corrupt += 1;
        }
        match recipient.acknowledge(&id).await {
            Ok(()) => r.received += 1,
            Err(_) => r.errors += 1,
        }
    }
    r
}

const PIECE: usize = 1024 * 1024;

/// The 1 MiB pieces covering bytes `start..start+len` of a large message, by block index.
fn piece_plan(start: usize, len: usize) -> Vec<(u64, usize)> {
    debug_assert_eq!(start % PIECE, 0, "chunk sizes are whole MiB");
    let first = (start / PIECE) as u64;
    let n = len.div_ceil(PIECE);
    (0..n)
        .map(|k| (first + k as u64, PIECE.min(len - k * PIECE)))
        .collect()
}

/// The upload body of one chunk, generated block by block as it is sent, so a large
/// message is never held whole; the downloader regenerates the same blocks to compare.
fn piece_stream(
    stream_id: u64,
    start: usize,
    len: usize,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter(piece_plan(start, len))
        .map(move |(i, n)| Ok(payload::block(stream_id, i, n)))
}
