//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time and, with `synchronous=FULL`, pays one fsync per commit.
//! So one thread owns the write connection; requests queue on a channel and the writer drains
//! whatever is waiting (up to [`MAX_BATCH_REQUESTS`] requests or about [`MAX_BATCH_ROWS`] rows)
//! into ONE transaction, commits, and only then answers every request in it. Under load many
//! requests share one fsync; when idle a request is committed alone at once.
//!
//! Each request runs inside its own savepoint, so a request that fails (a conflict) is rolled
//! back alone and the others in the group still commit. A failed commit fails them all.
//!
//! After each commit the writer runs the store's `on_commit` hook (which publishes the newest
//! change to subscribers): only then is the commit visible to every reader, so a subscriber
//! woken by it finds the new rows.
//!
//! When the queue closes (the store is closed or dropped) the writer checkpoints the WAL into
//! the database file and truncates it, so that after a clean stop the `.db` file alone holds
//! everything (a copy of it is a complete backup).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};

/// At most this many requests share one transaction.
pub(super) const MAX_BATCH_REQUESTS: usize = 64;
/// The writer stops draining once a transaction holds this many rows (one request may exceed it).
pub(super) const MAX_BATCH_ROWS: usize = 10_000;
/// Requests that may wait for the writer before senders are slowed down (back-pressure).
const QUEUE_CAPACITY: usize = 1024;

/// One write request, type-erased so that the queue carries every kind of write.
pub(super) trait Task: Send {
    /// Rows this request writes, for the batch cap.
    fn rows(&self) -> usize;
    /// Runs the work inside the request's savepoint; `true` if it succeeded (keep it).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the fate of the transaction is known.
    fn finish(self: Box<Self>, committed: Result<()>);
}

/// A write whose result `T` goes back over a oneshot.
struct Job<T, W> {
    rows: usize,
    work: Option<W>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, W> Task for Job<T, W>
where
    T: Send,
    W: FnOnce(&Connection) -> Result<T> + Send,
{
    fn rows(&self) -> usize {
        self.rows
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Task("a write request ran twice".to_owned())),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        // The request's own error wins; otherwise its value stands only if the commit did.
        let answer = match (self.outcome, committed) {
            (Some(Err(e)), _) | (_, Err(e)) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::Task("a write request was never run".to_owned())),
        };
        // The caller may have given up waiting (its future was dropped): nobody to tell.
        let _ = self.reply.send(answer);
    }
}

/// The handle on the writer thread: the queue's sending end and the thread to join.
pub(super) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn Task>>>,
    thread: Option<JoinHandle<Result<()>>>,
    commits: Arc<AtomicU64>,
}

/// What the writer runs on its connection after each successful commit.
pub(super) type OnCommit = Box<dyn FnMut(&Connection) + Send>;

impl Writer {
    /// Starts the writer thread, which takes ownership of `conn`.
    pub(super) fn spawn(conn: Connection, on_commit: OnCommit) -> Result<Writer> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        let thread_commits = Arc::clone(&commits);
        let thread = std::thread::Builder::new()
            .name("handoff-store-writer".to_owned())
            .spawn(move || run(conn, receiver, &thread_commits, on_commit))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            commits,
        })
    }

    /// Queues `work` and waits until its transaction has committed.
    pub(super) async fn submit<T, W>(&self, rows: usize, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            rows,
            work: Some(work),
            outcome: None,
            reply,
        };
        sender
            .send(Box::new(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Transactions committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Requests waiting in the queue (for tests that need a known backlog).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.sender
            .as_ref()
            .map_or(0, |s| s.max_capacity() - s.capacity())
    }

    /// Closes the queue and waits for the writer to finish what was queued and checkpoint the
    /// WAL. Blocking.
    ///
    /// # Errors
    /// When the writer thread panicked, or the final checkpoint failed.
    pub(super) fn stop(&mut self) -> Result<()> {
        drop(self.sender.take());
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| StoreError::Task("the writer thread panicked".to_owned()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Joining is quick: the writer only finishes the batch in hand and what is queued.
        let _ = self.stop();
    }
}

fn run(
    mut conn: Connection,
    mut receiver: mpsc::Receiver<Box<dyn Task>>,
    commits: &AtomicU64,
    mut on_commit: OnCommit,
) -> Result<()> {
    while let Some(first) = receiver.blocking_recv() {
        let mut rows = first.rows();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS && rows < MAX_BATCH_ROWS {
            match receiver.try_recv() {
                Ok(task) => {
                    rows += task.rows();
                    batch.push(task);
                }
                Err(_) => break,
            }
        }
        let committed = commit_batch(&mut conn, &mut batch);
        if committed.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
            on_commit(&conn);
        }
        for task in batch {
            task.finish(committed.clone());
        }
    }
    checkpoint(&conn)
}

/// Copies every committed page of the WAL into the database file and truncates the WAL to
/// zero bytes. Waits (the busy timeout) for readers still inside a read transaction; fails
/// rather than leaving part of the WAL behind.
pub(super) fn checkpoint(conn: &Connection) -> Result<()> {
    // TRUNCATE answers (busy, frames in the WAL, frames checkpointed); busy = 1 when a reader
    // or another writer kept it from finishing.
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Err(StoreError::Invalid(format!(
            "the WAL checkpoint could not finish ({done} of {log} frames copied): another \
             connection is still reading or writing the database"
        )));
    }
    Ok(())
}

/// Runs every task of the batch in its own savepoint of one transaction, then commits.
fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Task>]) -> Result<()> {
    // IMMEDIATE takes the write lock up front, so a busy database fails here (or waits out
    // the busy timeout) rather than half-way through the batch.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for task in batch.iter_mut() {
        let mut savepoint = tx.savepoint()?;
        if task.run(&savepoint) {
            savepoint.commit()?;
        } else {
            savepoint.rollback()?;
            savepoint.finish()?;
        }
    }
    tx.commit()?;
    Ok(())
}
