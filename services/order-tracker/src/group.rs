//! Group membership and offsets: the rebalance callbacks, commits, and leaving the group at
//! shutdown. The rules that make the tracker at-least-once live here and only here.
//!
//! # At-least-once, stated once
//!
//! - librdkafka never stores an offset by itself (`enable.auto.offset.store=false`, fixed in
//!   `service_runtime::kafka`). The run loop stores a message's offset ([`store_handled`]) only
//!   after the message is fully handled: its order counted and printed, or its dead-letter copy
//!   acknowledged by the broker. The background auto-commit (every second) commits only stored
//!   offsets.
//! - So a committed offset never passes a message that was not handled. A crash replays at most
//!   the messages handled since the last commit; those are redeliveries, recognised by
//!   `order_id` in a bounded memory ([`crate::stats::SeenOrders`]) when the same process sees
//!   them again, and never counted twice there.
//! - Rebalances happen only inside `recv()`, i.e. between messages, so the message in hand is
//!   always finished before a partition can be taken away. On revocation the stored offsets are
//!   committed synchronously before the partitions are released, so the next owner starts
//!   exactly after the last handled message. Lost partitions (session expired) are not
//!   committed: another member may already own them.
//! - On shutdown ([`commit_leave_close`]) the tracker has stopped taking messages; it commits
//!   synchronously (`event="final_commit"`), unsubscribes so that librdkafka revokes its
//!   partitions and sends LeaveGroup (the others rebalance at once instead of waiting for a
//!   session timeout; `event="left_group"`), then closes the consumer
//!   (`event="consumer_closed"`). Each step has a deadline inside the shutdown budget
//!   (`SHUTDOWN_TIMEOUT_SECS`, see [`crate::stopping`]) and logs its real outcome: a failed or
//!   timed-out commit, a leave or close that timed out, each says so under its own event. A
//!   commit that did not complete is harmless: the next owner starts at the last one that did.

use crate::config::StartFrom;
use crate::metrics::TrackerMetrics;
use crate::stopping::{Stopping, on_own_thread};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use service_runtime::health::Readiness;
use service_runtime::kafka::ErrorLog;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Offsets this tracker stored, by partition: what a commit will write.
pub type StoredOffsets = Arc<Mutex<BTreeMap<i32, i64>>>;

/// Rebalance and commit handling; see the module header for why it is shaped so.
pub struct TrackerContext {
    start_from: StartFrom,
    first_assignment_done: AtomicBool,
    readiness: Readiness,
    metrics: TrackerMetrics,
    stored: StoredOffsets,
    errors: ErrorLog,
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
        stored: StoredOffsets,
    ) -> Self {
        TrackerContext {
            start_from,
            first_assignment_done: AtomicBool::new(false),
            readiness,
            metrics,
            stored,
            errors: ErrorLog::default(),
        }
    }
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

/// `orders/0@12 orders/3@40`
pub fn describe_offsets(topic: &str, stored: &StoredOffsets) -> String {
    let Ok(stored) = stored.lock() else {
        return "unknown".into();
    };
    if stored.is_empty() {
        return "none".into();
    }
    stored
        .iter()
        .map(|(partition, offset)| format!("{topic}/{partition}@{offset}"))
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
                let result = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                match result {
                    Ok(()) => info!(
                        event = "partitions_assigned",
                        partitions = %describe_partitions(partitions),
                        "partitions assigned: {}",
                        describe_partitions(partitions)
                    ),
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
                if lost {
                    warn!(
                        event = "partitions_lost",
                        partitions = %describe_partitions(partitions),
                        "partitions lost (session expired); not committing, another member owns them"
                    );
                } else {
                    // Commit what was handled before letting the partitions go, so the next
                    // owner starts right after it.
                    if let Err(err) = off_the_runtime(|| commit_stored(consumer)) {
                        warn!(event = "revoke_commit_failed", error = %err, "commit on revocation failed");
                    }
                }
                let result = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    error!(event = "unassign_failed", error = %err, "cannot release the revoked partitions");
                }
                if let Ok(mut stored) = self.stored.lock() {
                    for element in partitions.elements() {
                        stored.remove(&element.partition());
                    }
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
            Err(err) => warn!(
                event = "commit_failed",
                error = %err,
                "offset commit failed; will retry on the next commit"
            ),
        }
    }
}

/// Stores the offset after `message`, which has been fully handled, for the next commit.
pub fn store_handled(
    consumer: &StreamConsumer<TrackerContext>,
    stored: &StoredOffsets,
    message: &BorrowedMessage<'_>,
) {
    match consumer.store_offset_from_message(message) {
        Ok(()) => {
            if let Ok(mut stored) = stored.lock() {
                stored.insert(message.partition(), message.offset() + 1);
            }
        }
        // The partition was taken away meanwhile; its next owner re-reads.
        Err(err) => debug!(error = %err, "offset not stored"),
    }
}

/// Commits the stored offsets synchronously; "nothing stored since the last commit" is success.
fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>) -> KafkaResult<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        result => result,
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
/// releases it) and send LeaveGroup; the callbacks are served by polling, so the consumer is
/// polled until its assignment is empty or `limit` has passed. A message fetched meanwhile is
/// not handled and its offset not stored: the next owner reads it. Closing the consumer alone
/// also leaves, but a close that races an in-flight commit was seen to finish without sending
/// LeaveGroup. librdkafka sends LeaveGroup from its own thread; while a JoinGroup is pending it
/// holds the LeaveGroup back until the join answers, and the close below waits for that.
async fn leave_group(
    consumer: Arc<StreamConsumer<TrackerContext>>,
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
        // Serves the revocation callback; any message that arrives is left unhandled.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
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

/// Closes the consumer once this is the last handle to it (a step that timed out may still hold
/// one). librdkafka's close waits for the group to let the member go, which can be never while
/// the coordinator is unreachable: the caller runs this on its own thread with a deadline.
fn close(mut consumer: Arc<StreamConsumer<TrackerContext>>) {
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
    consumer: StreamConsumer<TrackerContext>,
    manual: bool,
    offsets: String,
    stopping: &Stopping,
) {
    let consumer = Arc::new(consumer);

    // Up to a quarter of the budget, leaving half for leaving and closing.
    let limit = stopping.deadline_for(0.25, 0.5);
    let committing = consumer.clone();
    match on_own_thread("final-commit", limit, move || commit_stored(&*committing)).await {
        Some(Ok(())) => {
            stopping.completed("final_commit");
            info!(
                event = "final_commit",
                offsets = %offsets,
                "final commit done: {offsets}"
            )
        }
        Some(Err(err)) => warn!(
            event = "final_commit_failed",
            error = %err,
            offsets = %offsets,
            "final commit failed; the next owner re-reads from the previous commit"
        ),
        None => warn!(
            event = "final_commit_timed_out",
            timeout_ms = limit.as_millis() as u64,
            offsets = %offsets,
            "final commit not confirmed within {} ms; the next owner re-reads from the last \
             confirmed commit",
            limit.as_millis()
        ),
    }

    // Up to half the budget, leaving a fifth for closing. The leave runs as its own task so
    // that a revocation callback blocked inside librdkafka cannot hold this clock.
    let limit = stopping.deadline_for(0.5, 0.2);
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
    match on_own_thread("consumer-close", limit, move || close(consumer)).await {
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
