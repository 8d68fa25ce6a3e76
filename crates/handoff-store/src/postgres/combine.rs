//! Group commit for pings on PostgreSQL: the pings of the requests waiting at the same moment
//! are stored by ONE statement, so one commit (and one WAL flush) answers them all.
//!
//! Why: a phone sends one fix a request, and on PostgreSQL each commit of a transaction that
//! notifies (every ping adds a change, and the change feed notifies the other nodes) takes
//! the server's global notify lock until its commit is flushed, so such commits run one at a
//! time, each a WAL flush long. One statement a request bounded a 1,000-team race at about
//! 1,200 pings a second with the server half idle (docs/benchmarks.md). SQLite's writer
//! already groups its commits this way (`sqlite/writer.rs`).
//!
//! How: requests queue on a channel; [`WORKERS`] tasks each take the first request waiting and
//! every other one already queued behind it (up to [`MAX_GROUP_REQUESTS`] requests or about
//! [`MAX_GROUP_ROWS`] pings), store them with [`write::insert_pings`] (whose outcomes are in
//! batch order, so each request gets back its own slice) and only then answer each. When idle
//! a request is stored alone at once; under load the groups grow by themselves. A ping that
//! repeats one of an earlier request in the same group is that request's duplicate, as if the
//! two had committed one after the other.
//!
//! A group that fails for any reason but the database being unreachable (which fails every
//! request in it alike, and each caller answers 503) is retried one request at a time, so that
//! one request's bad row cannot fail the others. The work runs in the workers' tasks, so a
//! caller that stops waiting cancels nothing: what was sent is stored, or not, as a whole.

use std::sync::Arc;

use sqlx_postgres::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::write;
use crate::error::{Result, StoreError};
use crate::{Inserted, NewPing};

/// Statements in flight at once (each on its own connection of the pool).
const WORKERS: usize = 4;
/// At most this many requests share one statement.
const MAX_GROUP_REQUESTS: usize = 256;
/// A worker stops taking requests once its group holds this many pings (one request may
/// exceed it alone).
const MAX_GROUP_ROWS: usize = 10_000;
/// Requests that may wait for a worker before callers are slowed down (back-pressure).
const QUEUE_CAPACITY: usize = 4096;

/// What one request gets back: its outcomes, and the newest change of the statement.
type Stored = Result<(Vec<Inserted>, Option<i64>)>;

/// One request waiting for a worker.
struct Pending {
    batch: Vec<NewPing>,
    reply: oneshot::Sender<Stored>,
}

/// The queue into the workers; cheap to clone. The workers end once every copy is dropped.
#[derive(Clone)]
pub(super) struct Combiner {
    sender: mpsc::Sender<Pending>,
}

impl Combiner {
    /// Starts the workers on the current runtime.
    pub(super) fn spawn(pool: &PgPool) -> Combiner {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), Arc::clone(&receiver)));
        }
        Combiner { sender }
    }

    /// Stores `batch` (possibly in one statement with other requests); returns after the
    /// commit. As [`write::insert_pings`].
    pub(super) async fn insert(&self, batch: Vec<NewPing>) -> Stored {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending { batch, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// One worker: takes a group, stores it, answers it, until the queue closes.
async fn work(pool: PgPool, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut rows = first.batch.len();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_REQUESTS && rows < MAX_GROUP_ROWS {
                match receiver.try_recv() {
                    Ok(next) => {
                        rows += next.batch.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        store(&pool, group).await;
    }
}

/// Stores one group and answers each of its requests.
async fn store(pool: &PgPool, mut group: Vec<Pending>) {
    if group.len() == 1 {
        let alone = group.remove(0);
        let stored = write::insert_pings(pool, &alone.batch).await;
        // The caller may have stopped waiting: nobody to tell, and nothing to undo.
        let _ = alone.reply.send(stored);
        return;
    }
    let lengths: Vec<usize> = group.iter().map(|p| p.batch.len()).collect();
    let mut replies = Vec::with_capacity(group.len());
    let mut all = Vec::with_capacity(lengths.iter().sum());
    for pending in group {
        all.extend(pending.batch);
        replies.push(pending.reply);
    }
    match write::insert_pings(pool, &all).await {
        Ok((outcomes, change)) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, n) in replies.into_iter().zip(lengths) {
                let _ = reply.send(Ok((outcomes.by_ref().take(n).collect(), change)));
            }
        }
        Err(e) if e.is_retryable() || matches!(e, StoreError::Closed) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(_) => {
            let mut all = all.into_iter();
            for (reply, n) in replies.into_iter().zip(lengths) {
                let batch: Vec<NewPing> = all.by_ref().take(n).collect();
                let _ = reply.send(write::insert_pings(pool, &batch).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::postgres::testing::TestSchema;
    use crate::suite::{at, ping};

    /// A group of `batches` as the workers would take it, and the answers it will get.
    fn group(batches: Vec<Vec<NewPing>>) -> (Vec<Pending>, Vec<oneshot::Receiver<Stored>>) {
        batches
            .into_iter()
            .map(|batch| {
                let (reply, answer) = oneshot::channel();
                (Pending { batch, reply }, answer)
            })
            .unzip()
    }

    async fn answers(answers: Vec<oneshot::Receiver<Stored>>) -> Vec<Stored> {
        let mut out = Vec::new();
        for a in answers {
            out.push(a.await.unwrap_or(Err(StoreError::Closed)));
        }
        out
    }

    #[tokio::test]
    async fn a_group_is_one_statement_and_each_request_gets_its_own_outcomes() -> Result<()> {
        let Some(db) = TestSchema::create("postgres::combine::one_statement").await? else {
            return Ok(());
        };
        let s = db.store().await?;
        // Forty phones of one relay each send a fix; the last request resends phone 0's fix
        // and repeats one of its own.
        let mut batches: Vec<Vec<NewPing>> = (0..40)
            .map(|d| vec![ping("race", &format!("phone-{d}"), at(10))])
            .collect();
        batches.push(vec![
            ping("race", "phone-0", at(10)),
            ping("race", "phone-0", at(11)),
            ping("race", "phone-0", at(11)),
        ]);
        let (pending, replies) = group(batches);
        store(&s.pool, pending).await;
        let answers = answers(replies).await;
        let mut changes = std::collections::BTreeSet::new();
        for (i, answer) in answers.iter().enumerate() {
            let (outcomes, change) = answer.as_ref().map_err(Clone::clone)?;
            changes.insert(*change);
            if i < 40 {
                assert!(
                    matches!(outcomes[..], [Inserted::New { .. }]),
                    "{i}: {outcomes:?}"
                );
            } else {
                assert!(
                    matches!(
                        outcomes[..],
                        [
                            Inserted::Duplicate,
                            Inserted::New { .. },
                            Inserted::Duplicate
                        ]
                    ),
                    "{outcomes:?}"
                );
            }
        }
        // One statement: the 41 pings stored are one run of one event, so one change, and every
        // request was told the same newest change.
        assert_eq!(changes.len(), 1, "{changes:?}");
        let feed = s.changes_since(0, 100).await?;
        assert_eq!(feed.len(), 1, "{feed:?}");
        assert_eq!(s.pings_after("race", 0, 1_000).await?.len(), 41);
        Ok(())
    }

    #[tokio::test]
    async fn one_bad_request_fails_alone_and_the_rest_of_its_group_is_stored() -> Result<()> {
        let Some(db) = TestSchema::create("postgres::combine::bad_request").await? else {
            return Ok(());
        };
        let s = db.store().await?;
        // PostgreSQL refuses a NUL in text: the statement of the whole group fails.
        let (pending, replies) = group(vec![
            vec![ping("race", "phone-1", at(10))],
            vec![ping("race", "phone\0bad", at(10))],
            vec![
                ping("race", "phone-2", at(10)),
                ping("race", "phone-2", at(15)),
            ],
        ]);
        store(&s.pool, pending).await;
        let answers = answers(replies).await;
        assert!(matches!(
            answers[0].as_ref().map(|a| &a.0[..]),
            Ok([Inserted::New { .. }])
        ));
        assert!(answers[1].is_err(), "{:?}", answers[1]);
        assert!(matches!(
            answers[2].as_ref().map(|a| &a.0[..]),
            Ok([Inserted::New { .. }, Inserted::New { .. }])
        ));
        let stored = s.pings_after("race", 0, 100).await?;
        let devices: Vec<&str> = stored.iter().map(|p| p.device_id.as_str()).collect();
        assert_eq!(devices, ["phone-1", "phone-2", "phone-2"]);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_callers_at_once_each_get_their_commit() -> Result<()> {
        let Some(db) = TestSchema::create("postgres::combine::many_callers").await? else {
            return Ok(());
        };
        let s = Arc::new(db.store().await?);
        // 500 requests at once, every fix sent twice by different requests: each key is
        // stored once, and exactly one of its two senders is told it is new.
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let key = i % 250;
                    s.insert_pings(vec![ping("race", &format!("phone-{}", key % 12), at(key))])
                        .await
                })
            })
            .collect();
        let mut new = 0;
        for task in tasks {
            let outcomes = task.await.map_err(|e| StoreError::Task(e.to_string()))??;
            new += outcomes
                .iter()
                .filter(|o| matches!(o, Inserted::New { .. }))
                .count();
        }
        assert_eq!(new, 250);
        assert_eq!(s.pings_after("race", 0, 1_000).await?.len(), 250);
        Ok(())
    }
}
