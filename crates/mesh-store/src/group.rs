//! Group commit for the SQLite writer: one task owns the write connection, takes every
//! write that is waiting, runs them in one transaction (each in its own savepoint, so one
//! failing write does not undo the others) and commits once. One fsync then covers the
//! whole batch, and no caller hears "done" before the commit that contains its write.
//!
//! Under load the batch grows by itself: while one commit is being synced, the next
//! writes queue up. Alone, a write commits immediately.

use crate::error::{Result, StoreError};
use crate::meta::{AckOutcome, ExpiryOutcome, PurgeOutcome, PutChunkOutcome};
use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

/// What a write job returns.
#[derive(Debug)]
pub enum Reply {
    Done,
    Flag(bool),
    Put(PutChunkOutcome),
    Ack(AckOutcome),
    Keys(Vec<String>),
    Count(u64),
    Expired(ExpiryOutcome),
    Purged(PurgeOutcome),
    Action(crate::operator::ActionOutcome),
}

/// A write: runs against the writer connection inside the batch transaction.
pub type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Reply>> + Send>;

struct Request {
    job: Job,
    reply: oneshot::Sender<Result<Reply>>,
}

pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// Most writes in one transaction: bounds how long the writer lock is held.
const MAX_BATCH: usize = 512;

impl Writer {
    pub fn start(conn: SqliteConnection) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(conn, rx));
        Writer { tx }
    }

    /// Runs `job` in the next batch; returns once that batch is committed (or failed).
    pub async fn write(&self, job: Job) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { job, reply })
            .await
            .map_err(|_| StoreError::Commit("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Commit("the writer stopped during the write".into()))?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics_batch(batch.len());
        let (jobs, replies): (Vec<Job>, Vec<_>) =
            batch.into_iter().map(|r| (r.job, r.reply)).unzip();
        let results = commit_batch(&mut conn, jobs).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
    let _ = conn.close().await;
}

fn metrics_batch(n: usize) {
    tracing::trace!(writes = n, "group commit");
}

async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(&mut *conn).await?;
    Ok(())
}

async fn commit_batch(conn: &mut SqliteConnection, jobs: Vec<Job>) -> Vec<Result<Reply>> {
    let n = jobs.len();
    let all_failed = |why: String| {
        (0..n)
            .map(|_| Err(StoreError::Commit(why.clone())))
            .collect()
    };
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        return all_failed(e.to_string());
    }
    let mut results = Vec::with_capacity(n);
    for job in jobs {
        if let Err(e) = exec(conn, "SAVEPOINT job").await {
            let _ = exec(conn, "ROLLBACK").await;
            return all_failed(e.to_string());
        }
        let result = job(conn).await;
        let undo = if result.is_ok() {
            "RELEASE job"
        } else {
            "ROLLBACK TO job"
        };
        let mut step = exec(conn, undo).await;
        if result.is_err() && step.is_ok() {
            step = exec(conn, "RELEASE job").await;
        }
        if let Err(e) = step {
            let _ = exec(conn, "ROLLBACK").await;
            return all_failed(e.to_string());
        }
        results.push(result);
    }
    match exec(conn, "COMMIT").await {
        Ok(()) => results,
        Err(e) => {
            let _ = exec(conn, "ROLLBACK").await;
            all_failed(e.to_string())
        }
    }
}
