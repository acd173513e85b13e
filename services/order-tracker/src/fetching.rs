//! The fetcher: a thread of its own that polls the consumer and decodes each message, ahead of
//! the run loop, which handles what it hands over in order.
//!
//! Why a second thread: decoding and validating an order is the largest single part of the
//! tracker's per-message work (about two fifths of the run loop's time catching up, with
//! librdkafka's polling another tenth), and it needs nothing but the message's bytes. So the
//! fetcher polls and decodes while the run loop counts, deduplicates, checks alerts, prints and
//! writes dead letters for the messages before. Each message is still handled once, in the
//! order librdkafka returned it, by the one run loop; only [`Order::decode`] moved.
//!
//! # The rule it keeps
//!
//! The at-least-once and exact-window rules ([`crate::group`]) need the book to have recorded
//! every message fetched before a rebalance callback runs: a revocation commits right after the
//! last message the book knows of, and a message fetched before it but counted after it would
//! be counted here *and* by the next owner. librdkafka runs the callbacks inside `poll`, which
//! is now the fetcher's, while the run loop may still have fetched messages to handle. So a
//! revocation (or a loss) first calls [`Pipeline::drain`]: it hands over the batch the fetcher
//! has in hand and waits until the run loop has handled every message fetched so far. (An
//! assignment needs no wait: nothing fetched can be of a partition that is only now assigned,
//! since its revocation drained.) Handling a message is bounded (a dead-letter write gives up
//! within its retry window), but the drain waits at most [`DRAIN_LIMIT`] all the same, sending
//! included; past it, the messages fetched so far *of the revoked partitions* are dropped
//! unhandled (neither counted nor committed, so their next owner reads them) and the callback
//! goes on. The messages of partitions this tracker keeps are handled as usual: dropping those
//! would let a later commit of the same partition pass them. The same holds once the run loop
//! has stopped: the drain does not wait, and nothing more is handled anyway.
//!
//! After a revocation, librdkafka may still return messages of the revoked partitions that it
//! had fetched before (catching up on tansu, a tracker got over a thousand of them within two
//! seconds, and handled each a second time after its next owner). So the fetcher drops any
//! message of a partition this tracker does not own, as the callbacks last left it
//! ([`Pipeline::own`], [`Pipeline::disown`]): unhandled and never stored, its next owner reads
//! it. The callbacks run inside the fetcher's `poll`, so a message polled after a revocation
//! is judged by the ownership that revocation left. (One case this does not cover: a partition
//! revoked and assigned back to this same tracker before librdkafka's older messages of it are
//! polled. Those would be handled once more, a re-read rather than a loss.)
//!
//! While a callback runs the fetcher does not poll, so the queue may fill behind it: the
//! callback clears the "caught up" mark first ([`Pipeline::rebalancing`]), and the quiet-partition
//! rule (see `Book::tick`) waits for the next poll that finds the queue empty.
//!
//! # What the fetcher does not change
//!
//! - Polling continues while the run loop works, but the hand-over channel is bounded
//!   ([`BATCHES_IN_FLIGHT`] batches of at most [`BATCH`] messages), so a run loop that is held
//!   up (a dead-letter write retrying) holds the fetcher up once those are full, and
//!   librdkafka's `max.poll.interval.ms` still notices a wedged tracker.
//! - Offsets: nothing is stored or committed here; the run loop records handled messages in
//!   the book, and checkpoints and hand-overs commit from it as before.
//! - Shutdown: the run loop stops taking batches ([`Pipeline::loop_stopped`]); the fetcher then
//!   only serves callbacks (leaving the group needs the revocation served) and drops what it
//!   fetches, until [`Pipeline::stop`], just before the consumer is closed.
//! - If the fetcher thread ends any other way (a panic), the channel closes and the run loop
//!   stops with a failure, so that the tracker is restarted rather than left ready and idle.

use order_contract::{Decoder, Order, RejectReason};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// At most this many messages already waiting in librdkafka's queue are decoded into one batch
/// before it is handed to the run loop, which then handles them one after the other (a batch
/// is only ever what is already waiting, so this costs no latency). Each hand-over may wake the
/// run loop, a few microseconds of system time: catching up 1,000,000 orders on tansu, batches
/// of 256 (4 in flight) ran 9% faster than batches of 64 (16 in flight), and 1,024 (2 in
/// flight) no faster than 256, at 1-2 MB more (8 alternated runs each).
pub const BATCH: usize = 256;

/// Batches fetched and not yet taken by the run loop, at most: with [`BATCH`], how far the
/// fetcher reads ahead (these, one being filled and one being handled: about 4,600 messages,
/// about 2 MB of decoded orders).
///
/// Why 16: on 2 cores the fetcher, the run loop, librdkafka's broker thread and the broker
/// take turns, and with 4 batches the two sides mostly waited for each other (catching up
/// 1,000,000 orders, the run loop parked about 2,600 times and the fetcher about 1,400, for
/// 3,900 batches). On an AMD EPYC (Zen 5), 5 alternated catch-ups of 1,000,000 orders on
/// tansu each: 4 in flight 751,414 orders/s (median), 16 in flight 816,338, 32 in flight
/// 833,980, for 2-4 MB more peak RSS (54 MB median at 4, 56 at 16 and 32).
pub const BATCHES_IN_FLIGHT: usize = 16;

/// How long a rebalance callback waits for the run loop to handle what was fetched before it.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long the fetcher pauses after a consumer error before it polls again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How long one poll waits for a message, and so how soon an idle fetcher sees
/// [`Pipeline::stop`].
const POLL_WAIT: Duration = Duration::from_millis(100);

/// One fetched message, decoded.
#[derive(Debug)]
pub struct Fetched {
    pub partition: i32,
    pub offset: i64,
    /// Kafka's timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub decoded: Result<Order, Rejected>,
}

/// A message that is not an order: why, and the whole message (key, value and headers), which
/// its dead-letter copy keeps.
#[derive(Debug)]
pub struct Rejected {
    pub reason: RejectReason,
    pub message: OwnedMessage,
}

impl Fetched {
    /// Decodes `message` with `decoder`, refusing values over `max_order_bytes`.
    pub fn decode(
        message: &BorrowedMessage<'_>,
        decoder: &mut Decoder,
        max_order_bytes: usize,
    ) -> Fetched {
        Fetched {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            decoded: decoder
                .decode(message.payload(), max_order_bytes)
                .map_err(|reason| Rejected {
                    reason,
                    message: message.detach(),
                }),
        }
    }
}

/// Messages fetched together, numbered in the order they were fetched (from 1).
#[derive(Debug)]
pub struct Batch {
    pub number: u64,
    pub messages: Vec<Fetched>,
}

/// What the fetcher, the rebalance callbacks and the run loop share.
#[derive(Debug)]
pub struct Pipeline {
    /// Fetched and not yet sent (the fetcher's batch in hand); a callback running inside
    /// `poll` sends it before it waits. Batch numbers are taken under this lock, together with
    /// the batch, so that [`Pipeline::caught_up`] never misses one in between.
    in_hand: Mutex<Vec<Fetched>>,
    /// The sending end; taken when the fetcher thread ends, which closes the channel.
    sender: Mutex<Option<mpsc::Sender<Batch>>>,
    /// The number of the last batch taken from the hand to be sent.
    sent: AtomicU64,
    /// The number of the last batch the run loop is done with (handled or dropped), and how
    /// many drains wait for it to change (so that settling wakes nobody when none waits).
    settled: Mutex<Settled>,
    settled_changed: Condvar,
    /// Messages to drop unhandled: a drain gave up on them ([`Pipeline::discarded`]).
    discards: Mutex<Vec<Discard>>,
    /// The highest batch number any discard reaches: a batch above it is never dropped, which
    /// the run loop can tell without a lock.
    discard_through: AtomicU64,
    loop_stopped: AtomicBool,
    stop: AtomicBool,
    /// The fetcher's last poll found librdkafka's queue empty.
    idle: AtomicBool,
    /// What the run loop is done with, back to the fetcher ([`Pipeline::recycle`]).
    returned: Mutex<Returned>,
    /// The partitions this tracker owns, as the rebalance callbacks last left them, and a
    /// version that changes with them (so that the fetcher reads the list only then).
    owned: Mutex<Vec<i32>>,
    owned_version: AtomicU64,
}

/// The fetcher's copy of [`Pipeline::owned`].
#[derive(Debug, Default)]
struct OwnedCopy {
    version: u64,
    partitions: Vec<i32>,
    /// Whether a dropped message was logged since the assignment last changed.
    reported: bool,
}

/// Handed back by the run loop: emptied batches, to be filled again, and handled orders, to be
/// freed on the fetcher's thread, which allocated them.
#[derive(Debug, Default)]
struct Returned {
    batches: Vec<Vec<Fetched>>,
    orders: Vec<Order>,
}

#[derive(Debug, Default)]
struct Settled {
    number: u64,
    waiting: usize,
}

/// The messages of `partitions` in batches up to `through`.
#[derive(Debug)]
struct Discard {
    through: u64,
    partitions: Vec<i32>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The run loop has handled every message fetched so far: it had this many batches left
    /// when the drain began, and finished them in `waited`.
    Handled { batches: u64, waited: Duration },
    /// The run loop has stopped: what was still fetched is dropped unhandled.
    LoopStopped,
    /// The run loop did not finish in time: what was still fetched of the revoked partitions
    /// is dropped unhandled.
    TimedOut,
}

impl Pipeline {
    /// A pipeline and the receiving end the run loop takes batches from.
    pub fn new() -> (Arc<Pipeline>, mpsc::Receiver<Batch>) {
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let pipeline = Pipeline {
            in_hand: Mutex::new(Vec::with_capacity(BATCH)),
            sender: Mutex::new(Some(sender)),
            sent: AtomicU64::new(0),
            settled: Mutex::new(Settled::default()),
            settled_changed: Condvar::new(),
            discards: Mutex::new(Vec::new()),
            discard_through: AtomicU64::new(0),
            loop_stopped: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            returned: Mutex::new(Returned::default()),
            owned: Mutex::new(Vec::new()),
            owned_version: AtomicU64::new(0),
        };
        (Arc::new(pipeline), receiver)
    }

    /// Starts the fetcher thread: it polls `consumer` until [`Pipeline::stop`].
    pub fn start<C: ConsumerContext + 'static>(
        self: &Arc<Self>,
        consumer: Arc<BaseConsumer<C>>,
        max_order_bytes: usize,
    ) -> std::io::Result<()> {
        let pipeline = self.clone();
        std::thread::Builder::new()
            .name("fetcher".into())
            .spawn(move || pipeline.fetch(&consumer, max_order_bytes))
            .map(drop)
    }

    fn fetch<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, max_order_bytes: usize) {
        /// Closes the channel when the fetcher ends, by a stop or by a panic.
        struct CloseOnExit<'a>(&'a Pipeline);
        impl Drop for CloseOnExit<'_> {
            fn drop(&mut self) {
                if let Ok(mut sender) = self.0.sender.lock() {
                    sender.take();
                }
            }
        }
        let _close = CloseOnExit(self);
        // Reuses the item lists of the orders the run loop hands back.
        let mut decoder = Decoder::default();
        let mut handed_back = Vec::new();
        let mut owned = OwnedCopy::default();
        while !self.stop.load(Ordering::Acquire) {
            // Waits for the first message of a batch, then takes those already waiting.
            let mut wait = POLL_WAIT;
            loop {
                match consumer.poll(wait) {
                    Some(Ok(message)) => {
                        self.idle.store(false, Ordering::Release);
                        if self.loop_stopped.load(Ordering::Acquire) {
                            if self.stop.load(Ordering::Acquire) {
                                return;
                            }
                            continue; // unhandled and never stored: the next owner reads it
                        }
                        if !self.owns(&mut owned, message.partition()) {
                            continue; // revoked: unhandled and never stored, as above
                        }
                        let fetched = Fetched::decode(&message, &mut decoder, max_order_bytes);
                        drop(message);
                        let full = self.in_hand.lock().map_or(true, |mut in_hand| {
                            in_hand.push(fetched);
                            in_hand.len() >= BATCH
                        });
                        if full {
                            break;
                        }
                        wait = Duration::ZERO;
                    }
                    Some(Err(err)) => {
                        warn!(event = "consumer_error", error = %err, "consumer error");
                        // As librdkafka retries by itself: no need to ask again at once.
                        self.send_in_hand();
                        std::thread::sleep(ERROR_PAUSE);
                        break;
                    }
                    None => {
                        // librdkafka's queue is empty: nothing fetched waits beyond the batch
                        // in hand, which goes to the run loop now. Set on every empty poll,
                        // not only after a whole wait: under a steady flow the queue empties
                        // between messages, and quiet partitions must be told then.
                        self.idle.store(true, Ordering::Release);
                        break;
                    }
                }
            }
            self.send_in_hand();
            self.take_back_orders(&mut handed_back, &mut decoder);
        }
    }

    /// Sends the batch in hand to the run loop (waiting for room), or drops it once the run
    /// loop has stopped. Only the fetcher's thread sends (a callback served elsewhere, by the
    /// close at shutdown, comes after the run loop stopped), so batches arrive in number order.
    fn send_in_hand(&self) {
        let Some((number, messages)) = self.take_in_hand() else {
            return;
        };
        let sender = self.sender.lock().ok().and_then(|sender| sender.clone());
        let sent =
            sender.is_some_and(|sender| sender.blocking_send(Batch { number, messages }).is_ok());
        if !sent {
            self.settle(number); // the run loop is gone: nobody will
        }
    }

    /// The batch in hand, numbered, unless it is empty or the run loop has stopped (then it is
    /// dropped). A fresh batch of full size takes its place, so that filling it never
    /// reallocates.
    fn take_in_hand(&self) -> Option<(u64, Vec<Fetched>)> {
        let mut in_hand = self.in_hand.lock().ok()?;
        if in_hand.is_empty() {
            return None;
        }
        if self.loop_stopped.load(Ordering::Acquire) {
            in_hand.clear();
            return None;
        }
        let number = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        let emptied = self
            .returned
            .lock()
            .ok()
            .and_then(|mut returned| returned.batches.pop());
        let fresh = emptied.unwrap_or_else(|| Vec::with_capacity(BATCH));
        Some((number, std::mem::replace(&mut *in_hand, fresh)))
    }

    /// Hands back what the run loop is done with: a batch it emptied, for the fetcher to fill
    /// again, and the orders it handled, whose item lists the fetcher decodes the next orders
    /// into (`order_contract::Decoder`) and whose rest it frees.
    ///
    /// Why: the fetcher allocates every order it decodes (and every batch). Freed on the run
    /// loop's thread, glibc returns that memory to the fetcher's arena through its slow paths
    /// (a locked arena, bins to sort) on both sides: catching up, a seventh of the run loop's
    /// time went to `free` and a sixth of the fetcher's to `malloc`. Reused or freed where they
    /// were allocated, they cost next to nothing. (Measured with glibc's allocator; every binary
    /// has used jemalloc since 46e3dee, `service_runtime::allocator`, which was not measured
    /// without this recycling.)
    ///
    /// `orders` is emptied and keeps its room, for the next batch's orders: no list is
    /// allocated on one thread and freed on the other either.
    pub fn recycle(&self, mut emptied: Vec<Fetched>, orders: &mut Vec<Order>) {
        // Empty already; a message left in it would be handed over a second time.
        emptied.clear();
        if let Ok(mut returned) = self.returned.lock() {
            // At most `BATCHES_IN_FLIGHT` batches are in flight, so at most that many come back
            // at a time; the fetcher takes the orders back before it takes its next batch.
            returned.batches.push(emptied);
            returned.orders.append(orders);
        }
    }

    /// Takes back, on the fetcher's thread, the orders the run loop has handed back: their item
    /// lists go to `decoder` for the next orders, the rest is freed here.
    /// `handed_back` is the fetcher's own list, empty, swapped with the shared one so that both
    /// keep their room and the lock is held only for the swap.
    fn take_back_orders(&self, handed_back: &mut Vec<Order>, decoder: &mut Decoder) {
        if let Ok(mut returned) = self.returned.lock() {
            std::mem::swap(&mut returned.orders, handed_back);
        }
        for order in handed_back.drain(..) {
            decoder.recycle(order);
        }
    }

    /// As [`Pipeline::send_in_hand`], but waiting for room only until `deadline`: `false` if
    /// the batch in hand is still there then.
    fn send_in_hand_by(&self, deadline: Instant) -> bool {
        loop {
            let Some(sender) = self.sender.lock().ok().and_then(|sender| sender.clone()) else {
                self.send_in_hand(); // closed: settles and drops
                return true;
            };
            match sender.try_reserve() {
                Ok(permit) => {
                    if let Some((number, messages)) = self.take_in_hand() {
                        permit.send(Batch { number, messages });
                    }
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    self.send_in_hand();
                    return true;
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    if self.in_hand.lock().is_ok_and(|in_hand| in_hand.is_empty()) {
                        return true;
                    }
                    if Instant::now() >= deadline {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Called by a rebalance callback before anything else: the fetcher does not poll while
    /// the callback runs, so it is not caught up any more (see the module header).
    pub fn rebalancing(&self) {
        self.idle.store(false, Ordering::Release);
    }

    /// Called by a revocation (or loss) of `revoked` before it touches the book: see the module
    /// header. Blocking, at most `limit` in all (the callbacks run inside the fetcher's `poll`).
    pub fn drain(&self, revoked: &[i32], limit: Duration) -> Drained {
        let started = Instant::now();
        let deadline = started + limit;
        let drained = self.wait_for_run_loop(started, deadline);
        match drained {
            Drained::Handled { .. } => {}
            Drained::LoopStopped | Drained::TimedOut => {
                self.discard(revoked);
                if let Ok(mut in_hand) = self.in_hand.lock() {
                    in_hand.retain(|fetched| !revoked.contains(&fetched.partition));
                }
            }
        }
        drained
    }

    fn wait_for_run_loop(&self, started: Instant, deadline: Instant) -> Drained {
        if !self.send_in_hand_by(deadline) {
            return Drained::TimedOut;
        }
        let sent = self.sent.load(Ordering::Acquire);
        let Ok(mut settled) = self.settled.lock() else {
            return Drained::TimedOut;
        };
        let batches = sent.saturating_sub(settled.number);
        settled.waiting += 1;
        let drained = loop {
            if settled.number >= sent {
                break Drained::Handled {
                    batches,
                    waited: started.elapsed(),
                };
            }
            if self.loop_stopped.load(Ordering::Acquire) {
                break Drained::LoopStopped;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Drained::TimedOut;
            }
            settled = match self.settled_changed.wait_timeout(settled, left) {
                Ok((settled, _)) => settled,
                Err(_) => return Drained::TimedOut,
            };
        };
        settled.waiting -= 1;
        drained
    }

    /// Marks the messages of `partitions` fetched so far to be dropped unhandled.
    fn discard(&self, partitions: &[i32]) {
        let through = self.sent.load(Ordering::Acquire);
        let settled = self.settled.lock().map_or(0, |settled| settled.number);
        if let Ok(mut discards) = self.discards.lock() {
            // Discards the run loop is past can go.
            discards.retain(|discard| discard.through > settled);
            discards.push(Discard {
                through,
                partitions: partitions.to_vec(),
            });
        }
        self.discard_through.fetch_max(through, Ordering::AcqRel);
    }

    /// Whether the message of `partition` in batch `number` must be dropped unhandled (a drain
    /// gave up on it). The run loop asks before each message, and again before counting one
    /// whose dead-letter write waited.
    pub fn discarded(&self, number: u64, partition: i32) -> bool {
        if number > self.discard_through.load(Ordering::Acquire) {
            return false;
        }
        self.discards.lock().map_or(true, |discards| {
            discards
                .iter()
                .any(|discard| number <= discard.through && discard.partitions.contains(&partition))
        })
    }

    /// The run loop is done with batch `number` (handled or dropped).
    pub fn settle(&self, number: u64) {
        let waiting = match self.settled.lock() {
            Ok(mut settled) => {
                settled.number = settled.number.max(number);
                settled.waiting > 0
            }
            Err(_) => true,
        };
        if waiting {
            self.settled_changed.notify_all();
        }
    }

    /// Nothing fetched is waiting: the fetcher's last poll found librdkafka's queue empty, it
    /// holds no batch, and the run loop is done with every batch sent (what the quiet-partition
    /// rule needs: see `Book::tick`).
    pub fn caught_up(&self) -> bool {
        if !self.idle.load(Ordering::Acquire) {
            return false;
        }
        // Under the hand's lock, so that a batch cannot be between the hand and `sent`.
        let sent = match self.in_hand.lock() {
            Ok(in_hand) if in_hand.is_empty() => self.sent.load(Ordering::Acquire),
            _ => return false,
        };
        self.settled
            .lock()
            .is_ok_and(|settled| settled.number >= sent)
    }

    /// The run loop takes no more batches: drains stop waiting, and the fetcher drops what it
    /// fetches from now on (it still serves the callbacks, which leaving the group needs).
    pub fn loop_stopped(&self) {
        self.loop_stopped.store(true, Ordering::Release);
        if let Ok(mut in_hand) = self.in_hand.lock() {
            in_hand.clear();
        }
        // Under the lock a drain checks the flag with, so that it cannot miss the wake-up.
        let _settled = self.settled.lock();
        self.settled_changed.notify_all();
    }

    /// `partitions` are this tracker's from now on, besides those it owned: called once they
    /// are assigned (by a rebalance callback, or by hand with `START_FROM`). The fetcher drops
    /// any message of a partition not owned (see the module header).
    pub fn own(&self, partitions: &[i32]) {
        self.change_owned(|owned| {
            owned.extend(partitions);
            owned.sort_unstable();
            owned.dedup();
        });
    }

    /// `partitions` are not this tracker's any more: called by a revocation (or a loss) once
    /// it has handed them over, and with every partition when a failed rebalance releases all.
    pub fn disown(&self, partitions: &[i32]) {
        self.change_owned(|owned| owned.retain(|partition| !partitions.contains(partition)));
    }

    fn change_owned(&self, change: impl FnOnce(&mut Vec<i32>)) {
        if let Ok(mut owned) = self.owned.lock() {
            change(&mut owned);
        }
        self.owned_version.fetch_add(1, Ordering::AcqRel);
    }

    /// The partitions owned now, by [`Pipeline::own`] and [`Pipeline::disown`].
    pub fn owned(&self) -> Vec<i32> {
        self.owned
            .lock()
            .map_or_else(|_| Vec::new(), |owned| owned.clone())
    }

    /// Whether `partition` is owned, by the fetcher's copy of the assignment (read again when
    /// it changed). The first message dropped after each change is logged.
    fn owns(&self, copy: &mut OwnedCopy, partition: i32) -> bool {
        let version = self.owned_version.load(Ordering::Acquire);
        if version != copy.version {
            if let Ok(owned) = self.owned.lock() {
                copy.partitions.clone_from(&owned);
            }
            copy.version = version;
            copy.reported = false;
        }
        if copy.partitions.contains(&partition) {
            return true;
        }
        if !copy.reported {
            copy.reported = true;
            info!(
                event = "unowned_message_dropped",
                partition,
                "librdkafka returned a message of partition {partition}, which this tracker does \
                 not own (any more); dropping such messages unhandled and uncommitted"
            );
        }
        false
    }

    /// The fetcher stops polling and lets go of the consumer (within one poll's wait, or once
    /// the callback it is in returns).
    pub fn stop(&self) {
        self.loop_stopped();
        self.stop.store(true, Ordering::Release);
    }
}

/// Logs how a rebalance callback's drain ended, when it had anything to wait for.
pub fn report_drain(drained: Drained, what: &str) {
    match drained {
        Drained::Handled { batches: 0, .. } | Drained::LoopStopped => {}
        Drained::Handled { batches, waited } => info!(
            event = "fetched_handled_before_rebalance",
            batches,
            waited_ms = waited.as_millis() as u64,
            "the {batches} batch(es) fetched before the {what} were handled first ({} ms)",
            waited.as_millis()
        ),
        Drained::TimedOut => error!(
            event = "drain_timed_out",
            limit_ms = DRAIN_LIMIT.as_millis() as u64,
            "the messages fetched before the {what} were not handled within {} ms; those of \
             the revoked partitions are dropped unhandled and uncommitted (their next owner \
             reads them)",
            DRAIN_LIMIT.as_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetcher_owns_only_the_partitions_the_callbacks_last_left_it() {
        let (pipeline, _batches) = Pipeline::new();
        let mut copy = OwnedCopy::default();
        assert!(
            !pipeline.owns(&mut copy, 0),
            "nothing owned before an assignment"
        );
        pipeline.own(&[0, 1, 2, 3, 4, 5]);
        assert!((0..6).all(|partition| pipeline.owns(&mut copy, partition)));
        // A revocation of 0, 1 and 2: what librdkafka still returns of them is not ours.
        pipeline.disown(&[0, 1, 2]);
        assert!(!pipeline.owns(&mut copy, 2));
        assert!(!pipeline.owns(&mut copy, 0));
        assert!(pipeline.owns(&mut copy, 3));
        // Assigned again (an incremental assignment adds to what is owned).
        pipeline.own(&[0]);
        assert!(pipeline.owns(&mut copy, 0));
        assert_eq!(pipeline.owned(), vec![0, 3, 4, 5]);
        pipeline.disown(&[0, 3, 4, 5]);
        assert!(!(0..6).any(|partition| pipeline.owns(&mut copy, partition)));
    }

    fn fetched(partition: i32, offset: i64) -> Fetched {
        Fetched {
            partition,
            offset,
            timestamp_ms: None,
            decoded: Ok(crate::test_orders::order(
                "c",
                chrono::Utc::now(),
                "EUR",
                &[("A", 1, 100)],
            )),
        }
    }

    /// What the fetcher does with one message it polled: into the batch in hand.
    fn fetch(pipeline: &Pipeline, partition: i32, offset: i64) {
        pipeline
            .in_hand
            .lock()
            .expect("in hand")
            .push(fetched(partition, offset));
    }

    /// What the run loop is done with goes back where it was allocated: the emptied batch is
    /// the next one the fetcher fills, and the handled orders wait for the fetcher, whose
    /// decoder takes their item lists for the next orders.
    #[test]
    fn an_emptied_batch_is_filled_again_and_handled_orders_go_back_to_the_fetchers_decoder() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0, 0);
        pipeline.send_in_hand();
        let mut batch = batches.try_recv().expect("a batch");
        let mut handled: Vec<Order> = batch
            .messages
            .drain(..)
            .filter_map(|fetched| fetched.decoded.ok())
            .collect();
        // Told apart from a fresh list by its capacity.
        handled[0].items.reserve_exact(9);
        let items_capacity = handled[0].items.capacity();
        // Told apart from a fresh batch by its capacity (an address could be reused).
        let mut emptied = batch.messages;
        emptied.reserve_exact(BATCH + 7);
        let emptied_capacity = emptied.capacity();
        assert_ne!(emptied_capacity, BATCH);
        pipeline.recycle(emptied, &mut handled);
        assert!(
            handled.is_empty(),
            "the run loop's list is emptied, keeping its room"
        );

        fetch(&pipeline, 0, 1);
        pipeline.send_in_hand();
        let in_hand = pipeline.in_hand.lock().expect("in hand").capacity();
        assert_eq!(
            in_hand, emptied_capacity,
            "the emptied batch is the one filled next"
        );
        let returned = |pipeline: &Pipeline| {
            let returned = pipeline.returned.lock().expect("returned");
            (returned.batches.len(), returned.orders.len())
        };
        assert_eq!(returned(&pipeline), (0, 1));
        let mut decoder = Decoder::default();
        pipeline.take_back_orders(&mut Vec::new(), &mut decoder);
        assert_eq!(returned(&pipeline), (0, 0));
        let next = decoder
            .decode(Some(&handled_payload()), 64 * 1024)
            .expect("an order");
        assert_eq!(next.items.capacity(), items_capacity);
    }

    fn handled_payload() -> Vec<u8> {
        fetched(0, 0).decoded.expect("an order").to_json()
    }

    #[test]
    fn a_drain_sends_the_batch_in_hand_and_waits_until_the_run_loop_has_handled_it() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0, 0);
        fetch(&pipeline, 1, 0);
        let run_loop = std::thread::spawn({
            let pipeline = pipeline.clone();
            move || {
                let batch = batches.blocking_recv().expect("a batch");
                std::thread::sleep(Duration::from_millis(200));
                pipeline.settle(batch.number);
                (batch.number, batch.messages.len())
            }
        });
        let started = Instant::now();
        let drained = pipeline.drain(&[0], Duration::from_secs(5));
        assert!(
            matches!(drained, Drained::Handled { batches: 1, .. }),
            "{drained:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(run_loop.join().expect("run loop"), (1, 2));
        assert!(!pipeline.discarded(1, 0));
        // Nothing fetched since: the next drain has nothing to wait for.
        assert!(matches!(
            pipeline.drain(&[0], Duration::from_secs(5)),
            Drained::Handled { batches: 0, .. }
        ));
    }

    #[test]
    fn a_drain_that_times_out_drops_only_the_revoked_partitions_messages() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0, 0);
        fetch(&pipeline, 1, 0);
        assert_eq!(
            pipeline.drain(&[0], Duration::from_millis(100)),
            Drained::TimedOut
        );
        let stale = batches.try_recv().expect("sent before waiting");
        assert!(pipeline.discarded(stale.number, 0), "revoked: dropped");
        assert!(
            !pipeline.discarded(stale.number, 1),
            "kept: handled, or a later commit of its partition would pass it"
        );
        // What is fetched after the drain is handled as usual, revoked partition or not (it
        // can only be of a partition assigned again since).
        fetch(&pipeline, 0, 1);
        pipeline.send_in_hand();
        let fresh = batches.try_recv().expect("sent");
        assert!(!pipeline.discarded(fresh.number, 0));
    }

    #[test]
    fn a_drain_is_bounded_even_when_the_channel_is_full_and_keeps_the_kept_partitions_messages() {
        let (pipeline, mut batches) = Pipeline::new();
        for offset in 0..BATCHES_IN_FLIGHT as i64 {
            fetch(&pipeline, 0, offset);
            pipeline.send_in_hand();
        }
        fetch(&pipeline, 0, 100);
        fetch(&pipeline, 1, 100);
        let started = Instant::now();
        assert_eq!(
            pipeline.drain(&[0], Duration::from_millis(200)),
            Drained::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(1), "bounded");
        let in_hand: Vec<(i32, i64)> = pipeline
            .in_hand
            .lock()
            .expect("in hand")
            .iter()
            .map(|f| (f.partition, f.offset))
            .collect();
        assert_eq!(
            in_hand,
            vec![(1, 100)],
            "the revoked partition's message dropped"
        );
        for _ in 0..BATCHES_IN_FLIGHT {
            let batch = batches.try_recv().expect("queued");
            assert!(pipeline.discarded(batch.number, 0));
        }
    }

    #[test]
    fn once_the_run_loop_has_stopped_a_drain_does_not_wait_and_nothing_more_is_sent() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0, 0);
        pipeline.send_in_hand();
        pipeline.loop_stopped();
        let started = Instant::now();
        assert_eq!(
            pipeline.drain(&[0], Duration::from_secs(5)),
            Drained::LoopStopped
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(pipeline.discarded(1, 0), "the unhandled batch is dropped");
        fetch(&pipeline, 0, 1);
        pipeline.send_in_hand();
        assert_eq!(batches.try_recv().map(|batch| batch.number).ok(), Some(1));
        assert!(batches.try_recv().is_err(), "nothing sent after the stop");
    }

    #[test]
    fn caught_up_only_once_every_batch_is_handled_and_the_last_poll_found_nothing() {
        let (pipeline, mut batches) = Pipeline::new();
        pipeline.idle.store(true, Ordering::Release);
        assert!(pipeline.caught_up());
        fetch(&pipeline, 0, 0);
        assert!(!pipeline.caught_up(), "a batch in hand");
        pipeline.send_in_hand();
        assert!(!pipeline.caught_up(), "a batch not handled yet");
        let batch = batches.try_recv().expect("sent");
        pipeline.settle(batch.number);
        assert!(pipeline.caught_up());
        pipeline.rebalancing();
        assert!(
            !pipeline.caught_up(),
            "a callback runs: the queue may fill meanwhile"
        );
    }

    #[test]
    fn a_stopped_fetcher_closes_the_channel_so_the_run_loop_cannot_wait_for_ever() {
        let (pipeline, mut batches) = Pipeline::new();
        // A broker that is not there: the fetcher only ever finds its queue empty.
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "fetcher-test")
            .create()
            .expect("consumer");
        pipeline
            .start(Arc::new(consumer), 1024)
            .expect("fetcher started");
        pipeline.stop();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let closed = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), batches.recv()).await });
        assert!(matches!(closed, Ok(None)), "{closed:?}");
    }
}
