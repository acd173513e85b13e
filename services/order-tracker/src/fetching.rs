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
//! is now the fetcher's, while the run loop may still have fetched messages to handle. So each
//! rebalance callback first calls [`Pipeline::drain`]: it hands over the batch the fetcher has
//! in hand and waits until the run loop has handled every message fetched so far. Handling a
//! message is bounded (a dead-letter write gives up within its retry window), but the drain
//! waits at most [`DRAIN_LIMIT`] all the same; past it, every message fetched so far is marked
//! discarded, the run loop drops those unhandled (neither counted nor committed, so the next
//! owner reads them), and the callback goes on. The same holds once the run loop has stopped:
//! the drain does not wait, and whatever is still fetched is discarded.
//!
//! # What the fetcher does not change
//!
//! - Polling continues while the run loop works, but the hand-over channel is bounded
//!   ([`BATCHES_IN_FLIGHT`] batches of at most [`BATCH`] messages), so a run loop that is held
//!   up (a dead-letter write retrying) holds the fetcher up within a few batches, and
//!   librdkafka's `max.poll.interval.ms` still notices a wedged tracker.
//! - Offsets: nothing is stored or committed here; the run loop records handled messages in
//!   the book, and checkpoints and hand-overs commit from it as before.
//! - Shutdown: the run loop stops taking batches ([`Pipeline::loop_stopped`]); the fetcher then
//!   only serves callbacks (leaving the group needs the revocation served) and drops what it
//!   fetches, until [`Pipeline::stop`], just before the consumer is closed.

use order_contract::{Order, RejectReason};
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
/// fetcher reads ahead (about 0.5 MB of decoded orders).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// How long a rebalance callback waits for the run loop to handle what was fetched before it.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long the fetcher pauses after a consumer error before it polls again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How long one poll waits for a message, and so how soon the fetcher sees [`Pipeline::stop`].
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
    /// Decodes `message`, refusing values over `max_order_bytes`.
    pub fn decode(message: &BorrowedMessage<'_>, max_order_bytes: usize) -> Fetched {
        Fetched {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            decoded: Order::decode(message.payload(), max_order_bytes).map_err(|reason| Rejected {
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
    /// `poll` sends it before it waits.
    in_hand: Mutex<Vec<Fetched>>,
    sender: mpsc::Sender<Batch>,
    /// The number of the last batch sent.
    sent: AtomicU64,
    /// The number of the last batch the run loop is done with (handled or dropped), and how
    /// many drains wait for it to change (so that settling wakes nobody when none waits).
    settled: Mutex<Settled>,
    settled_changed: Condvar,
    /// Batches up to this number are to be dropped unhandled (a drain gave up on them).
    discard_through: AtomicU64,
    loop_stopped: AtomicBool,
    stop: AtomicBool,
    /// The fetcher's last poll found librdkafka's queue empty.
    idle: AtomicBool,
}

#[derive(Debug, Default)]
struct Settled {
    number: u64,
    waiting: usize,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The run loop has handled every message fetched so far: it had this many batches left
    /// when the drain began, and finished them in `waited`.
    Handled { batches: u64, waited: Duration },
    /// The run loop has stopped: what was still fetched is dropped unhandled.
    LoopStopped,
    /// The run loop did not finish in time: what was still fetched is dropped unhandled.
    TimedOut,
}

impl Pipeline {
    /// A pipeline and the receiving end the run loop takes batches from.
    pub fn new() -> (Arc<Pipeline>, mpsc::Receiver<Batch>) {
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let pipeline = Pipeline {
            in_hand: Mutex::new(Vec::with_capacity(BATCH)),
            sender,
            sent: AtomicU64::new(0),
            settled: Mutex::new(Settled::default()),
            settled_changed: Condvar::new(),
            discard_through: AtomicU64::new(0),
            loop_stopped: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            idle: AtomicBool::new(false),
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
        while !self.stop.load(Ordering::Acquire) {
            // Waits for the first message of a batch, then takes those already waiting.
            let mut wait = POLL_WAIT;
            loop {
                match consumer.poll(wait) {
                    Some(Ok(message)) => {
                        self.idle.store(false, Ordering::Release);
                        if self.loop_stopped.load(Ordering::Acquire) {
                            continue; // unhandled and never stored: the next owner reads it
                        }
                        let fetched = Fetched::decode(&message, max_order_bytes);
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
        }
    }

    /// Sends the batch in hand to the run loop (waiting for room), or drops it once the run
    /// loop has stopped. Only the fetcher's thread sends (a callback served elsewhere, by the
    /// close at shutdown, comes after the run loop stopped), so batches arrive in number order.
    fn send_in_hand(&self) {
        let messages = match self.in_hand.lock() {
            // A fresh batch of full size, so that filling it never reallocates.
            Ok(mut in_hand) if !in_hand.is_empty() => {
                std::mem::replace(&mut *in_hand, Vec::with_capacity(BATCH))
            }
            _ => return,
        };
        if self.loop_stopped.load(Ordering::Acquire) {
            return;
        }
        // Counted as sent first, so that a drain never misses it; if the run loop is gone,
        // it is settled at once.
        let number = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        if self
            .sender
            .blocking_send(Batch { number, messages })
            .is_err()
        {
            self.settle(number);
        }
    }

    /// Called by every rebalance callback before it touches the book: see the module header.
    /// Blocking (the callbacks run inside the fetcher's `poll`).
    pub fn drain(&self, limit: Duration) -> Drained {
        self.send_in_hand();
        let sent = self.sent.load(Ordering::Acquire);
        let started = Instant::now();
        let deadline = started + limit;
        let Ok(mut settled) = self.settled.lock() else {
            self.discard_through(sent);
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
                Err(_) => {
                    self.discard_through(sent);
                    return Drained::TimedOut;
                }
            };
        };
        settled.waiting -= 1;
        drop(settled);
        match drained {
            Drained::Handled { .. } => {}
            Drained::LoopStopped | Drained::TimedOut => self.discard_through(sent),
        }
        drained
    }

    fn discard_through(&self, number: u64) {
        self.discard_through.fetch_max(number, Ordering::AcqRel);
    }

    /// Whether batch `number` must be dropped unhandled (a drain gave up on it). The run loop
    /// asks before each message, and again before counting one whose dead-letter write waited.
    pub fn discarded(&self, number: u64) -> bool {
        number <= self.discard_through.load(Ordering::Acquire)
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
        let settled = self.settled.lock().map_or(0, |settled| settled.number);
        self.idle.load(Ordering::Acquire)
            && settled >= self.sent.load(Ordering::Acquire)
            && self.in_hand.lock().is_ok_and(|in_hand| in_hand.is_empty())
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
            "the messages fetched before the {what} were not handled within {} ms; they are \
             dropped unhandled and uncommitted (the next owner reads them)",
            DRAIN_LIMIT.as_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(offset: i64) -> Fetched {
        Fetched {
            partition: 0,
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
    fn fetch(pipeline: &Pipeline, offset: i64) {
        pipeline
            .in_hand
            .lock()
            .expect("in hand")
            .push(fetched(offset));
    }

    #[test]
    fn a_drain_sends_the_batch_in_hand_and_waits_until_the_run_loop_has_handled_it() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0);
        fetch(&pipeline, 1);
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
        let drained = pipeline.drain(Duration::from_secs(5));
        assert!(
            matches!(drained, Drained::Handled { batches: 1, .. }),
            "{drained:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(run_loop.join().expect("run loop"), (1, 2));
        assert!(!pipeline.discarded(1));
        // Nothing fetched since: the next drain has nothing to wait for.
        assert!(matches!(
            pipeline.drain(Duration::from_secs(5)),
            Drained::Handled { batches: 0, .. }
        ));
    }

    #[test]
    fn a_drain_that_times_out_has_what_was_fetched_before_it_dropped_unhandled() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0);
        assert_eq!(
            pipeline.drain(Duration::from_millis(100)),
            Drained::TimedOut
        );
        let stale = batches.try_recv().expect("sent before waiting");
        assert!(pipeline.discarded(stale.number));
        // What is fetched after the drain is handled as usual.
        fetch(&pipeline, 1);
        pipeline.send_in_hand();
        let fresh = batches.try_recv().expect("sent");
        assert!(!pipeline.discarded(fresh.number));
    }

    #[test]
    fn once_the_run_loop_has_stopped_a_drain_does_not_wait_and_nothing_more_is_sent() {
        let (pipeline, mut batches) = Pipeline::new();
        fetch(&pipeline, 0);
        pipeline.send_in_hand();
        pipeline.loop_stopped();
        let started = Instant::now();
        assert_eq!(pipeline.drain(Duration::from_secs(5)), Drained::LoopStopped);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(pipeline.discarded(1), "the unhandled batch is dropped");
        fetch(&pipeline, 1);
        pipeline.send_in_hand();
        assert_eq!(batches.try_recv().map(|batch| batch.number).ok(), Some(1));
        assert!(batches.try_recv().is_err(), "nothing sent after the stop");
    }

    #[test]
    fn caught_up_only_once_every_batch_is_handled_and_the_last_poll_found_nothing() {
        let (pipeline, mut batches) = Pipeline::new();
        pipeline.idle.store(true, Ordering::Release);
        assert!(pipeline.caught_up());
        fetch(&pipeline, 0);
        assert!(!pipeline.caught_up(), "a batch in hand");
        pipeline.send_in_hand();
        assert!(!pipeline.caught_up(), "a batch not handled yet");
        let batch = batches.try_recv().expect("sent");
        pipeline.settle(batch.number);
        assert!(pipeline.caught_up());
        pipeline.idle.store(false, Ordering::Release);
        assert!(!pipeline.caught_up(), "the fetcher is reading");
    }
}
