//! Group commit for an embedded SQLite database: one task owns the write connection, takes every
//! write that is waiting, runs them in one transaction (each in its own savepoint, so one
//! failing write does not undo the others) and commits once. One fsync then covers the
//! whole batch, and no caller hears "done" before the commit that contains its write.
//!
//! Under load the batch grows by itself: while one commit is being synced, the next
//! writes queue up. Alone, a write commits immediately.

//!
//! The writer is generic in what a job returns (`R`): each service has its own replies.

use crate::error::{Result, StoreError};
use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

/// A write: runs against the writer connection inside the batch transaction.
pub type Job<R> =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<R>> + Send>;

struct Request<R> {
    job: Job<R>,
    reply: oneshot::Sender<Result<R>>,
}

/// The handle writes are sent through; the task behind it stops when every handle is
/// dropped, after committing what was queued.
pub struct Writer<R> {
    tx: mpsc::Sender<Request<R>>,
}

/// Most writes in one transaction: bounds how long the writer lock is held.
const MAX_BATCH: usize = 512;

impl<R: Send + 'static> Writer<R> {
    /// Hands `conn` to a new writer task.
    pub fn start(conn: SqliteConnection) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(conn, rx));
        Writer { tx }
    }

    /// Runs `job` in the next batch; returns once that batch is committed (or failed).
    pub async fn write(&self, job: Job<R>) -> Result<R> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { job, reply })
            .await
            .map_err(|_| StoreError::Commit("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Commit("the writer stopped during the write".into()))?
    }
}

async fn run<R>(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request<R>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics_batch(batch.len());
        let (jobs, replies): (Vec<Job<R>>, Vec<_>) =
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

async fn commit_batch<R>(conn: &mut SqliteConnection, jobs: Vec<Job<R>>) -> Vec<Result<R>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions;

    fn insert(n: i64, fail: bool) -> Job<i64> {
        Box::new(move |c: &mut SqliteConnection| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (n) VALUES (?)")
                    .bind(n)
                    .execute(&mut *c)
                    .await?;
                if fail {
                    return Err(StoreError::Corrupt(format!("job {n} failed after writing")));
                }
                Ok(n)
            })
        })
    }

    #[tokio::test]
    async fn a_failing_write_undoes_only_itself_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = opts.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let writer = std::sync::Arc::new(Writer::start(conn));
        // Queued together, so that most of them share a batch.
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let w = writer.clone();
                tokio::spawn(async move { w.write(insert(n, n % 3 == 1)).await })
            })
            .collect();
        for (n, t) in tasks.into_iter().enumerate() {
            let result = t.await.unwrap();
            if n % 3 == 1 {
                assert!(matches!(result, Err(StoreError::Corrupt(_))), "{n}");
            } else {
                assert_eq!(result.unwrap(), n as i64);
            }
        }
        drop(writer);
        // What a new connection sees is what was committed, and only that.
        let mut check = opts.connect().await.unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&mut check)
            .await
            .unwrap();
        let expected: Vec<i64> = (0..20).filter(|n| n % 3 != 1).collect();
        assert_eq!(rows, expected);
    }
}
