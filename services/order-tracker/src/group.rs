//! Group membership and offsets: the rebalance callbacks, commits, and leaving the group at
//! shutdown. The rules that make the tracker at-least-once live here and only here.
//!
//! # At-least-once, and exact windows, stated once
//!
//! - librdkafka never stores or commits an offset by itself (`enable.auto.offset.store=false`,
//!   `enable.auto.commit=false`, both fixed in `service_runtime::kafka`). The tracker commits
//!   explicitly, at checkpoints, and each commit carries the partition's window watermark and
//!   the latest window not closed there yet in its metadata ([`crate::checkpoints`]).
//! - The run loop records a message in the book ([`crate::checkpoints::Book::handled`]) only
//!   after it is fully handled: its order counted and printed, or its dead-letter copy
//!   acknowledged by the broker. Window parts that end with it are sent to the stats topic.
//! - **Checkpoint** (every second, from the run loop): once every part sent so far is
//!   acknowledged, each partition is committed at the highest offset no window part straddles
//!   ([`crate::windows::PartitionWindows::checkpoint`]), which is never past an unhandled
//!   message. So a committed offset never passes a message that was not handled, nor an order
//!   whose part is not on the stats topic. It lags the last handled message by at most one
//!   part span (`WINDOW_PART_SPAN_OFFSETS`), or a window and its grace at low rates: a crash
//!   replays that much. A replay rebuilds the same parts under the same keys (see
//!   [`crate::windows`]); the per-process duplicate memory recognises redeliveries for the
//!   printed lines and statistics, but never decides window counts.
//! - **Handover** (revocation, shutdown): this tracker stops reading the partition, so it ends
//!   every open part there ([`crate::checkpoints::Book::hand_over`]), sends them, waits for
//!   their acknowledgements, and commits synchronously right after the last handled message:
//!   the next owner starts exactly there, with no replay. If the acknowledgements or the commit
//!   do not come, nothing (or an older checkpoint) is committed, and the next owner replays and
//!   rewrites those parts under the same keys.
//! - Rebalances happen inside the fetcher's `poll` ([`crate::fetching`]), and a revocation
//!   first waits until the run loop has handled every message fetched before it, so the book is
//!   complete when a partition is taken away. If that takes longer than
//!   [`crate::fetching::DRAIN_LIMIT`], the revoked partitions' messages still waiting are
//!   dropped unhandled (not counted, not committed: their next owner reads them), those of the
//!   partitions kept are handled as usual, and the callback goes on. Lost partitions (session
//!   expired) are not committed: another member may already own them.
//! - Commits leave in the order their offsets were decided: a checkpoint is built and handed to
//!   librdkafka (which sends commits in order) under the book's lock, and a hand-over takes a
//!   partition out of the book under the same lock before it commits, so a checkpoint decided
//!   before a hand-over never lands after it and moves the offset back. A quiet checkpoint's
//!   synchronous commit leaves out, before each attempt, the partitions handed over meanwhile.
//! - **Not covered:** a tracker whose session expired while it kept running (a long pause)
//!   does not know it lost its partitions until its next poll, and may still publish parts
//!   meanwhile, or a part whose acknowledgement it stopped waiting for may land late. If the
//!   new owner has meanwhile rewritten the same key with more orders, the stale record can be
//!   the last one for that key. Only Kafka transactions fence such a zombie; tansu, the test
//!   broker, accepts transactions but shows aborted records to `read_committed` readers, so the
//!   tracker does not rely on them.
//! - On shutdown ([`commit_leave_close`]) the tracker has stopped taking messages; it hands
//!   over every partition (`event="final_commit"`; a refused commit is sent again within its
//!   deadline, and a partition revoked meanwhile is committed by its revocation, see
//!   `TrackerContext::commit_final`), unsubscribes so that librdkafka revokes its
//!   partitions and sends LeaveGroup (the others rebalance at once instead of waiting for a
//!   session timeout; `event="left_group"`), then closes the consumer
//!   (`event="consumer_closed"`). Each step has a deadline inside the shutdown budget
//!   (`SHUTDOWN_TIMEOUT_SECS`, see [`crate::stopping`]) and logs its real outcome: a failed or
//!   timed-out commit, a leave or close that timed out, each says so under its own event. A
//!   commit that did not complete is harmless: the next owner starts at the last one that did.

use crate::checkpoints::{Carried, SharedBook, decode_metadata, describe_commits};
use crate::config::StartFrom;
use crate::fetching::{DRAIN_LIMIT, Pipeline, report_drain};
use crate::metrics::TrackerMetrics;
use crate::stopping::{FINAL_COMMIT, LEAVE_GROUP, Stopping, on_own_thread};
use crate::window_stats::{Acked, StatsPublisher};
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use service_runtime::health::Readiness;
use service_runtime::kafka::ErrorLog;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// How long a handover at revocation waits for its window parts to be acknowledged.
const REVOKE_ACK_LIMIT: Duration = Duration::from_secs(10);

/// How long a refused synchronous commit (the final one, a quiet partition's) waits before it
/// is sent again.
const COMMIT_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How long the assignment callback waits for the committed offsets' metadata.
const COMMITTED_LIMIT: Duration = Duration::from_secs(10);

/// Rebalance and commit handling; see the module header for why it is shaped so.
pub struct TrackerContext {
    start_from: StartFrom,
    first_assignment_done: AtomicBool,
    readiness: Readiness,
    metrics: TrackerMetrics,
    book: SharedBook,
    publisher: Arc<StatsPublisher>,
    pipeline: Arc<Pipeline>,
    errors: ErrorLog,
    final_commit: Mutex<FinalCommit>,
}

impl std::fmt::Debug for TrackerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerContext")
            .field("start_from", &self.start_from)
            .finish_non_exhaustive()
    }
}

impl TrackerContext {
    pub fn new(
        start_from: StartFrom,
        readiness: Readiness,
        metrics: TrackerMetrics,
        book: SharedBook,
        publisher: Arc<StatsPublisher>,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        TrackerContext {
            start_from,
            first_assignment_done: AtomicBool::new(false),
            readiness,
            metrics,
            book,
            publisher,
            pipeline,
            errors: ErrorLog::default(),
            final_commit: Mutex::default(),
        }
    }

    /// Starts owning the assigned `partitions`, each resumed at its commit with what that
    /// commit carried (nothing when it starts from `START_FROM`'s beginning or end instead).
    fn take_over<C: Consumer<TrackerContext>>(
        &self,
        consumer: &C,
        partitions: &TopicPartitionList,
        from_commit: bool,
    ) {
        let mut resumed: BTreeMap<i32, Option<(i64, Carried)>> = partitions
            .elements()
            .iter()
            .map(|element| (element.partition(), None))
            .collect();
        if from_commit {
            match off_the_runtime(|| {
                consumer.committed_offsets(partitions.clone(), COMMITTED_LIMIT)
            }) {
                Ok(committed) => {
                    for element in committed.elements() {
                        if let Offset::Offset(offset) = element.offset() {
                            resumed.insert(
                                element.partition(),
                                Some((offset, decode_metadata(element.metadata()))),
                            );
                        }
                    }
                }
                Err(err) => warn!(
                    event = "watermark_unknown",
                    error = %err,
                    "cannot read the committed watermarks; replayed orders are judged without \
                     one (none is called late)"
                ),
            }
        }
        if let Ok(mut book) = self.book.lock() {
            let now = Utc::now();
            for (partition, committed) in resumed {
                book.take_over(partition, committed, now);
            }
        }
    }

    /// Hands over `partitions` (every owned one for `None`): ends their window parts, sends
    /// them, waits up to `ack_limit` for every part sent so far to be acknowledged, then
    /// commits synchronously right after each partition's last handled message. Blocking.
    ///
    /// With `retry_until`, the shutdown's final commit ([`TrackerContext::commit_final`]): a
    /// refused commit is sent again until then. Without, one attempt (a revocation: inside the
    /// rebalance callback the group cannot move on, so an attempt again would meet the same
    /// refusal).
    pub fn hand_over<C: Consumer<TrackerContext>>(
        &self,
        consumer: &C,
        partitions: Option<&[i32]>,
        ack_limit: Duration,
        retry_until: Option<Instant>,
    ) -> HandOver {
        let handed = match self.book.lock() {
            Ok(mut book) => book.hand_over(partitions),
            Err(_) => return HandOver::NotAcked(Acked::Failed(0)),
        };
        let (parts, commits) = match handed {
            Ok(handed) => handed,
            Err(err) => return HandOver::Failed(err),
        };
        self.publisher.publish_all(&parts, &self.metrics);
        if commits.count() == 0 {
            return HandOver::Nothing;
        }
        match self.publisher.wait_acked(ack_limit) {
            Acked::All => {}
            other => return HandOver::NotAcked(other),
        }
        if let Some(deadline) = retry_until {
            return self.commit_final(consumer, commits, deadline);
        }
        let described = describe_commits(&commits);
        match consumer.commit(&commits, CommitMode::Sync) {
            Ok(()) => HandOver::Committed(described),
            Err(err) => HandOver::Failed(err),
        }
    }

    /// The final commit: `commits`, synchronously, sent again every 200 ms while refused and
    /// `deadline` leaves room. Its partitions are already out of the book, so a revocation
    /// meanwhile (the group may be rebalancing: that is why a commit is refused) takes its
    /// partitions' entries from [`FinalCommit`] and commits them itself
    /// ([`TrackerContext::revoke_final`]); each attempt here sends only what is left. Entries
    /// still pending when the deadline passes stay there, for the revocation when the tracker
    /// leaves the group to try once more.
    fn commit_final<C: Consumer<TrackerContext>>(
        &self,
        consumer: &C,
        commits: TopicPartitionList,
        deadline: Instant,
    ) -> HandOver {
        let all = commits.count();
        if let Ok(mut slot) = self.final_commit.lock() {
            *slot = FinalCommit {
                pending: Some(commits),
                uncommitted_any: false,
            };
        }
        let mut attempt = 0u32;
        loop {
            let Ok(mut slot) = self.final_commit.lock() else {
                return HandOver::TakenUncommitted;
            };
            let pending = slot.pending.clone().unwrap_or_default();
            if pending.count() == 0 {
                return if slot.uncommitted_any {
                    HandOver::TakenUncommitted
                } else {
                    HandOver::CommittedByRevocations
                };
            }
            attempt += 1;
            // Under the lock: a revocation waits for this attempt's answer (see FinalCommit).
            match consumer.commit(&pending, CommitMode::Sync) {
                Ok(()) => {
                    slot.pending = None;
                    let described = describe_commits(&pending);
                    return HandOver::Committed(if pending.count() == all {
                        described
                    } else {
                        format!("{described}; the others were revoked meanwhile (see their line)")
                    });
                }
                Err(err) if Instant::now() + COMMIT_RETRY_PAUSE >= deadline => {
                    return HandOver::Failed(err);
                }
                Err(err) => {
                    drop(slot);
                    warn!(
                        event = "final_commit_retry",
                        attempt,
                        error = %err,
                        "final commit refused ({err}); sending it again in {} ms",
                        COMMIT_RETRY_PAUSE.as_millis()
                    );
                    std::thread::sleep(COMMIT_RETRY_PAUSE);
                }
            }
        }
    }

    /// A revocation during (or after) the final commit: takes the entries of `revoked` out of
    /// [`FinalCommit`] and, unless the partitions were `lost`, commits them (one attempt: inside
    /// the callback the group cannot move on). Waits for a final commit attempt in flight.
    fn revoke_final<C: Consumer<TrackerContext>>(&self, consumer: &C, revoked: &[i32], lost: bool) {
        let Ok(mut slot) = self.final_commit.lock() else {
            return;
        };
        let Some(pending) = slot.pending.take() else {
            return;
        };
        let (taken, kept) = match (
            only_partitions(&pending, revoked),
            only_partitions(&pending, &except(&pending, revoked)),
        ) {
            (Ok(taken), Ok(kept)) => (taken, kept),
            _ => return,
        };
        slot.pending = Some(kept);
        if taken.count() == 0 {
            return;
        }
        if lost {
            slot.uncommitted_any = true;
            return;
        }
        let described = describe_commits(&taken);
        match consumer.commit(&taken, CommitMode::Sync) {
            Ok(()) => info!(
                event = "revoke_commit",
                offsets = %described,
                "handed over at {described} (the final commit's, revoked while it waited)"
            ),
            Err(err) => {
                slot.uncommitted_any = true;
                warn!(
                    event = "revoke_commit_failed",
                    error = %err,
                    "the final commit's offsets for the revoked partitions not committed \
                     ({err}); the next owner re-reads from the previous commit"
                )
            }
        }
    }
}

/// The partition numbers of `partitions` (the tracker reads one topic).
fn partition_numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// How a handover ended.
#[derive(Debug)]
pub enum HandOver {
    /// Committed at these offsets (`orders/0@12 ...`).
    Committed(String),
    /// Those partitions were started from `START_FROM`, not a commit, and no message was
    /// handled in them since: nothing to commit.
    Nothing,
    /// The window parts were not all acknowledged: nothing committed.
    NotAcked(Acked),
    /// The commit failed.
    Failed(KafkaError),
    /// The final commit was refused until none of its partitions was this member's any more,
    /// and not every one was committed by its revocation: at least one was lost (a refusal for
    /// an ended generation makes librdkafka drop them as lost) or its revocation's commit
    /// failed. Each revocation says what it did in its own line.
    TakenUncommitted,
    /// Every partition of the final commit was revoked while it waited, and its revocation
    /// committed it (see that `revoke_commit` line).
    CommittedByRevocations,
}

/// The shutdown's final commit while it is being made ([`TrackerContext::commit_final`]): the
/// entries not committed yet. A revocation meanwhile commits its partitions' entries itself, and
/// a loss drops them, under this lock, which the final commit holds while a commit of its is in
/// flight: so this member never commits a partition after its revocation let it go.
#[derive(Debug, Default)]
struct FinalCommit {
    pending: Option<TopicPartitionList>,
    /// A partition was taken from it and not committed: lost, or its revocation's commit failed.
    uncommitted_any: bool,
}

/// `orders[0,2,4]`
pub fn describe_partitions(list: &TopicPartitionList) -> String {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for element in list.elements() {
        by_topic
            .entry(element.topic().to_string())
            .or_default()
            .push(element.partition());
    }
    if by_topic.is_empty() {
        return "none".into();
    }
    by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl ClientContext for TrackerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }

    /// librdkafka's statistics, every `statistics.interval.ms`: consumer lag per partition.
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_consumer_lag(&statistics);
    }
}

impl ConsumerContext for TrackerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.pipeline.rebalancing();
        self.metrics.rebalances.inc();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let first = !self.first_assignment_done.swap(true, Ordering::SeqCst);
                let start = match (&self.start_from, first) {
                    (StartFrom::Earliest, true) => Some(Offset::Beginning),
                    (StartFrom::Latest, true) => Some(Offset::End),
                    _ => None,
                };
                if let Some(offset) = start
                    && let Err(err) = partitions.set_all_offsets(offset)
                {
                    warn!(error = %err, "cannot set the START_FROM offsets");
                }
                self.take_over(consumer, partitions, start.is_none());
                let result = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                match &result {
                    Ok(()) => {
                        self.pipeline.own(&partition_numbers(partitions));
                        info!(
                            event = "partitions_assigned",
                            partitions = %describe_partitions(partitions),
                            "partitions assigned: {}",
                            describe_partitions(partitions)
                        );
                    }
                    Err(err) => error!(
                        event = "assign_failed",
                        error = %err,
                        "cannot take the assigned partitions"
                    ),
                }
                self.metrics
                    .assigned_partitions
                    .set(consumer.assignment().map_or(0, |a| a.count() as i64));
                self.readiness.set(true);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                let revoked = partition_numbers(partitions);
                // Lost partitions too: a lost partition may come straight back, and what was
                // fetched of it before must not be counted into its new ownership.
                report_drain(self.pipeline.drain(&revoked, DRAIN_LIMIT), "revocation");
                if lost {
                    warn!(
                        event = "partitions_lost",
                        partitions = %describe_partitions(partitions),
                        "partitions lost (session expired); not committing, another member owns them"
                    );
                    if let Ok(mut book) = self.book.lock() {
                        book.forget(&revoked);
                    }
                    self.revoke_final(consumer, &revoked, true);
                } else {
                    // Hand over before letting the partitions go, so that the next owner
                    // starts right after the last handled message.
                    match off_the_runtime(|| {
                        self.hand_over(consumer, Some(&revoked), REVOKE_ACK_LIMIT, None)
                    }) {
                        HandOver::Committed(offsets) => info!(
                            event = "revoke_commit",
                            offsets = %offsets,
                            "handed over at {offsets}"
                        ),
                        HandOver::Nothing => {}
                        HandOver::NotAcked(acked) => warn!(
                            event = "revoke_commit_skipped",
                            acked = ?acked,
                            "window parts not acknowledged ({acked:?}); not committing, the next \
                             owner replays from the last checkpoint"
                        ),
                        HandOver::Failed(err) => warn!(
                            event = "revoke_commit_failed",
                            error = %err,
                            "commit on revocation failed; the next owner replays from the last \
                             checkpoint"
                        ),
                        // Only the final commit ends so.
                        HandOver::TakenUncommitted | HandOver::CommittedByRevocations => {}
                    }
                    // Partitions the final commit took out of the book are committed here.
                    self.revoke_final(consumer, &revoked, false);
                }
                let result = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                // Handed over (or lost) either way: whatever librdkafka still returns of them is
                // not this tracker's to handle (see `fetching`).
                self.pipeline.disown(&revoked);
                if let Err(err) = result {
                    error!(event = "unassign_failed", error = %err, "cannot release the revoked partitions");
                }
                self.metrics
                    .assigned_partitions
                    .set(consumer.assignment().map_or(0, |a| a.count() as i64));
                info!(
                    event = "partitions_revoked",
                    partitions = %describe_partitions(partitions),
                    "partitions revoked: {}",
                    describe_partitions(partitions)
                );
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                warn!(event = "rebalance_failed", error = %code, "rebalance failed; releasing all partitions");
                let _ = consumer.unassign();
                self.pipeline.disown(&self.pipeline.owned());
                self.readiness.set(false);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(
                event = "offsets_committed",
                partitions = %describe_partitions(offsets),
                "offsets committed"
            ),
            // Nothing stored since the last commit: normal when idle.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                warn!(
                    event = "commit_failed",
                    error = %err,
                    "offset commit failed; a checkpoint's is sent again by the next one, a \
                     synchronous commit's fate is logged by the step that sent it"
                );
                let partitions: Vec<i32> =
                    offsets.elements().iter().map(|e| e.partition()).collect();
                if let Ok(mut book) = self.book.lock() {
                    book.commit_failed(&partitions);
                }
            }
        }
    }
}

/// Commits `commits` and waits for the outcome, retrying a failed commit until `limit` has
/// passed (a commit refused during a rebalance succeeds once it is over). Before each attempt
/// it leaves out the partitions `book` no longer owns: a revocation may have handed them over
/// (and committed further) meanwhile. Blocking. The outcome is logged by `commit_callback` too.
pub fn commit_synchronously<C: Consumer<TrackerContext>>(
    consumer: &C,
    book: &SharedBook,
    commits: &TopicPartitionList,
    limit: Duration,
) -> KafkaResult<()> {
    let deadline = Instant::now() + limit;
    loop {
        let owned = book.lock().map(|book| book.owned()).unwrap_or_default();
        let still_owned = only_partitions(commits, &owned)?;
        if still_owned.count() == 0 {
            return Ok(());
        }
        match consumer.commit(&still_owned, CommitMode::Sync) {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() + COMMIT_RETRY_PAUSE >= deadline => {
                return Err(err);
            }
            Err(err) => {
                warn!(event = "commit_failed", error = %err, "commit failed; retrying");
                std::thread::sleep(COMMIT_RETRY_PAUSE);
            }
        }
    }
}

/// The partitions of `commits` that `partitions` does not name.
fn except(commits: &TopicPartitionList, partitions: &[i32]) -> Vec<i32> {
    commits
        .elements()
        .iter()
        .map(|element| element.partition())
        .filter(|partition| !partitions.contains(partition))
        .collect()
}

/// The entries of `commits` for `partitions`, with their offsets and metadata.
fn only_partitions(
    commits: &TopicPartitionList,
    partitions: &[i32],
) -> KafkaResult<TopicPartitionList> {
    let mut kept = TopicPartitionList::new();
    for element in commits.elements() {
        if partitions.contains(&element.partition()) {
            kept.add_partition_offset(element.topic(), element.partition(), element.offset())?;
            if let Some(mut added) = kept.find_partition(element.topic(), element.partition()) {
                added.set_metadata(element.metadata());
            }
        }
    }
    Ok(kept)
}

/// Commits a checkpoint without waiting; the outcome is logged by `commit_callback`.
pub fn commit_checkpoint(consumer: &BaseConsumer<TrackerContext>, commits: &TopicPartitionList) {
    if commits.count() == 0 {
        return;
    }
    debug!(event = "checkpoint", offsets = %describe_commits(commits), "checkpoint");
    if let Err(err) = consumer.commit(commits, CommitMode::Async) {
        warn!(event = "commit_failed", error = %err, "checkpoint commit not sent");
    }
}

/// How leaving the group ended.
enum Leave {
    /// The assignment is empty: revoked (and committed) by our callback, unsubscribed.
    Done,
    /// Partitions were still assigned when the deadline passed.
    TimedOut,
    /// librdkafka refused to release the partitions.
    Failed(KafkaError),
}

/// Leaves the consumer group now, so that the remaining trackers rebalance at once instead of
/// waiting for this member's session to time out. With a manual assignment (`START_FROM` with
/// explicit offsets) there is no group to leave: the partitions are released.
///
/// Unsubscribing makes librdkafka revoke the assignment (our rebalance callback commits and
/// releases it) and send LeaveGroup; the callbacks are served by the fetcher's polls, so this
/// waits until the assignment is empty or `limit` has passed. A message fetched meanwhile is
/// dropped unhandled and its offset not stored: the next owner reads it. Closing the consumer
/// alone also leaves, but a close that races an in-flight commit was seen to finish without
/// sending LeaveGroup. librdkafka sends LeaveGroup from its own thread; while a JoinGroup is
/// pending it holds the LeaveGroup back until the join answers, and the close below waits for
/// that.
async fn leave_group(
    consumer: Arc<BaseConsumer<TrackerContext>>,
    manual: bool,
    limit: Duration,
) -> Leave {
    let result = if manual {
        consumer.unassign()
    } else {
        consumer.unsubscribe();
        Ok(())
    };
    if let Err(err) = result {
        return Leave::Failed(err);
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if consumer.assignment().is_ok_and(|a| a.count() == 0) {
            return Leave::Done;
        }
        if tokio::time::Instant::now() >= deadline {
            return Leave::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a blocking librdkafka call from the rebalance callback without stalling the async
/// runtime: on a runtime worker the worker's other tasks move elsewhere meanwhile (so shutdown's
/// clocks keep running); on any other thread the call simply runs.
fn off_the_runtime<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle)
            if matches!(
                handle.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::MultiThread
            ) =>
        {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Closes the consumer once this is the last handle to it (the fetcher lets go of its handle
/// within one poll once stopped; a step that timed out may still hold one). librdkafka's close
/// waits for the group to let the member go, which can be never while the coordinator is
/// unreachable: the caller runs this on its own thread with a deadline.
fn close(mut consumer: Arc<BaseConsumer<TrackerContext>>) {
    loop {
        match Arc::try_unwrap(consumer) {
            Ok(owned) => return drop(owned),
            Err(shared) => {
                consumer = shared;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The consumer's shutdown steps, in order, each with a deadline inside `stopping`'s budget and
/// logged under its own `event` with what really happened: the final commit (`final_commit`,
/// `final_commit_failed`, `final_commit_timed_out`), leaving the group (`left_group`,
/// `leave_group_failed`, `leave_group_timed_out`), closing the consumer (`consumer_closed`,
/// `consumer_close_timed_out`). Every blocking librdkafka call runs on a thread of its own.
pub async fn commit_leave_close(
    consumer: Arc<BaseConsumer<TrackerContext>>,
    pipeline: &Arc<Pipeline>,
    manual: bool,
    stopping: &Stopping,
) {
    // Up to three quarters of the budget, leaving a fifth for leaving and closing. A commit
    // sent while this member's JoinGroup is pending (another member has just left or joined)
    // is answered only after the join, since a broker answers a connection's requests in
    // order; tansu holds a join for half the session timeout (5 s by default), and a final
    // commit given a quarter of the budget timed out behind it when two trackers stopped a
    // second apart (`pipeline-tests --test shutdown`). Leaving needs no more than tens of
    // milliseconds once the join is answered, and cannot happen before. Up to 60% of this
    // share waits for the window parts' acknowledgements.
    let limit = stopping.deadline_for(FINAL_COMMIT);
    let committing = consumer.clone();
    let ack_limit = limit.mul_f64(0.6);
    let retry_until = Instant::now() + limit;
    let handed = on_own_thread("final-commit", limit, move || {
        committing
            .context()
            .hand_over(&*committing, None, ack_limit, Some(retry_until))
    })
    .await;
    match handed {
        Some(HandOver::Committed(offsets)) => {
            stopping.completed("final_commit");
            info!(
                event = "final_commit",
                offsets = %offsets,
                "final commit done: {offsets}"
            )
        }
        Some(HandOver::Nothing) => {
            stopping.completed("final_commit");
            info!(
                event = "final_commit",
                offsets = "none",
                "final commit: nothing handled since the last assignment, nothing to commit"
            )
        }
        Some(HandOver::NotAcked(acked)) => warn!(
            event = "final_commit_failed",
            acked = ?acked,
            "window parts not acknowledged within {} ms ({acked:?}); not committing, the next \
             owner replays from the last checkpoint",
            ack_limit.as_millis()
        ),
        Some(HandOver::Failed(err)) => warn!(
            event = "final_commit_failed",
            error = %err,
            "final commit failed ({err}); the revocation on leaving the group tries it once \
             more, else the next owner re-reads from the previous commit"
        ),
        Some(HandOver::TakenUncommitted) => warn!(
            event = "final_commit_failed",
            error = "partitions taken",
            "final commit refused until the group took the partitions from this member, and not \
             all were committed at their revocation (see partitions_lost, revoke_commit_failed); \
             the next owner of those re-reads from the previous commit"
        ),
        Some(HandOver::CommittedByRevocations) => {
            stopping.completed("final_commit");
            info!(
                event = "final_commit",
                offsets = "none",
                "final commit: every partition was revoked while it waited, and committed at \
                 its revocation (see the revoke_commit lines)"
            )
        }
        None => warn!(
            event = "final_commit_timed_out",
            timeout_ms = limit.as_millis() as u64,
            "final commit not confirmed within {} ms; the next owner re-reads from the last \
             confirmed commit",
            limit.as_millis()
        ),
    }

    // Up to half the budget, leaving a tenth for closing. The leave runs as its own task so
    // that a revocation callback blocked inside librdkafka cannot hold this clock.
    let limit = stopping.deadline_for(LEAVE_GROUP);
    let leaving = tokio::spawn(leave_group(consumer.clone(), manual, limit));
    let abort = leaving.abort_handle();
    let leave = match tokio::time::timeout(limit + Duration::from_millis(200), leaving).await {
        Ok(Ok(leave)) => leave,
        Ok(Err(_)) | Err(_) => {
            abort.abort();
            Leave::TimedOut
        }
    };
    match (leave, manual) {
        (Leave::Done, false) => {
            stopping.completed("leave_group");
            info!(
                event = "left_group",
                "left the consumer group: partitions released, LeaveGroup requested"
            )
        }
        (Leave::Done, true) => {
            stopping.completed("leave_group");
            info!(
                event = "partitions_released",
                "manually assigned partitions released (no group to leave)"
            )
        }
        (Leave::TimedOut, _) => warn!(
            event = "leave_group_timed_out",
            timeout_ms = limit.as_millis() as u64,
            "partitions still assigned after {} ms; closing without having left the group",
            limit.as_millis()
        ),
        (Leave::Failed(err), _) => warn!(
            event = "leave_group_failed",
            error = %err,
            "cannot release the partitions; closing without having left the group"
        ),
    }

    // The rest of the budget. Closing waits for librdkafka to finish with the group.
    let limit = stopping.remaining();
    let fetcher = pipeline.clone();
    let closing = move || {
        fetcher.stop();
        close(consumer)
    };
    match on_own_thread("consumer-close", limit, closing).await {
        Some(()) => {
            stopping.completed("consumer_close");
            info!(event = "consumer_closed", "consumer closed")
        }
        None => warn!(
            event = "consumer_close_timed_out",
            timeout_ms = limit.as_millis() as u64,
            "consumer not closed within {} ms (librdkafka is still waiting for the group); \
             exiting without a clean close",
            limit.as_millis()
        ),
    }
}
