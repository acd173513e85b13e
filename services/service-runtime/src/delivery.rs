//! Producers whose delivery reports a thread of ours serves: [`ServedProducer`], and
//! [`ReplyContext`] for a sender that awaits each message's report.
//!
//! librdkafka hands every delivery report back through a queue that the application must poll;
//! the report callback runs on the polling thread, and that thread also frees the message
//! (librdkafka's copy of it, its headers, its delivery opaque). rdkafka's `ThreadedProducer`
//! (and `FutureProducer`, built on it) polls from a thread of its own, and two things about that
//! thread cost the services:
//! - running flat out, every message is allocated on the sending thread and freed on the
//!   polling one. glibc hands that memory back to the sender only through its slow paths (a
//!   locked arena, bins to sort): a third of the order producer's sending thread went to
//!   `malloc` and `free` (measured with glibc's allocator; every binary has used jemalloc since
//!   46e3dee, `crate::allocator`, and with it serving the reports on the background thread
//!   still cost more CPU in all than it took off the sender: 3.55 -> 4.03 s per 1,000,000
//!   orders). The thinnest produce loop polls on the thread that sends, and frees
//!   where it allocated. So a sender that runs flat out may serve its own reports
//!   ([`ServedProducer::serving_own_reports`]) while the background thread stands aside;
//! - idle, it spun: rdkafka's `poll` waits in whole milliseconds rounded *down* and polls again
//!   without waiting until its deadline, so each of its 100 ms waits ended in a millisecond of
//!   polling in a loop, about 1% of a core per producer. [`POLL_WAIT`] says how ours avoids it.
//!
//! Either way each report is served exactly once (librdkafka's queue hands each event to one
//! poller), so no delivery guarantee depends on who polls. Dropping a [`ServedProducer`] stops
//! its thread (within [`POLL_WAIT`]) and then drops the producer, which purges what is still
//! queued and serves those reports as failed, as rdkafka's `ThreadedProducer` does.

use crate::kafka::ErrorLog;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, ProducerContext};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long one poll of the background thread waits for reports, and so how soon it notices a
/// sender taking over or handing back, and the producer being dropped.
///
/// Why the extra 20 microseconds: rdkafka's `poll` waits in whole milliseconds, rounding the
/// time left *down*, and polls again without waiting until its deadline has passed. Asked for
/// exactly 100 ms, librdkafka waited 99 and the last millisecond was spent polling in a loop.
/// With the deadline a little past the 100 ms that librdkafka does wait, the wait's own
/// wake-up lateness carries it past the deadline. That holds for a wait that no event cuts
/// short (an idle producer's); after a report the time left has a fraction of a millisecond
/// again, which is still spent polling.
pub const POLL_WAIT: Duration = Duration::from_micros(100_020);

/// A librdkafka producer with a background thread of ours serving its delivery reports (see
/// the module header). Shared by reference; dropping it stops the thread.
pub struct ServedProducer<C: ProducerContext + 'static> {
    shared: Arc<Shared<C>>,
    background: Option<JoinHandle<()>>,
}

struct Shared<C: ProducerContext + 'static> {
    kafka: BaseProducer<C>,
    /// A sender is serving the reports itself: the background thread stands aside.
    sender_serves: AtomicBool,
    stop: AtomicBool,
}

impl<C: ProducerContext + 'static> ServedProducer<C> {
    /// Wraps `kafka` and starts the thread, named `thread_name`, that serves its reports.
    pub fn start(kafka: BaseProducer<C>, thread_name: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            kafka,
            sender_serves: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let background = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                while !serving.stop.load(Ordering::Acquire) {
                    if serving.sender_serves.load(Ordering::Acquire) {
                        std::thread::park_timeout(POLL_WAIT);
                    } else {
                        serving.kafka.poll(POLL_WAIT);
                    }
                }
            })?;
        Ok(ServedProducer {
            shared,
            background: Some(background),
        })
    }

    /// The librdkafka producer: to send (its reports are served as the module header says),
    /// and for metadata, flushing ([`crate::kafka::flush_promptly`]), purging and counting what
    /// is in flight.
    pub fn kafka(&self) -> &BaseProducer<C> {
        &self.shared.kafka
    }

    /// Runs `work` on this thread while the background thread stands aside: `work` must poll
    /// the producer it is given (between sends, and while it waits for room in the queue),
    /// since nobody else serves the reports meanwhile. Blocking; for a flat-out sender only.
    pub fn serving_own_reports<T>(&self, work: impl FnOnce(&BaseProducer<C>) -> T) -> T {
        /// Hands the reports back even if `work` panics, so that a flush still sees them served.
        struct HandBack<'a, C: ProducerContext + 'static>(&'a ServedProducer<C>);
        impl<C: ProducerContext + 'static> Drop for HandBack<'_, C> {
            fn drop(&mut self) {
                self.0.shared.sender_serves.store(false, Ordering::Release);
                if let Some(background) = &self.0.background {
                    background.thread().unpark();
                }
            }
        }
        self.shared.sender_serves.store(true, Ordering::Release);
        let _hand_back = HandBack(self);
        work(&self.shared.kafka)
    }
}

impl<C: ProducerContext + 'static> std::fmt::Debug for ServedProducer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedProducer")
            .field("sender_serves", &self.shared.sender_serves)
            .finish_non_exhaustive()
    }
}

impl<C: ProducerContext + 'static> Drop for ServedProducer<C> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(background) = self.background.take() {
            background.thread().unpark();
            let _ = background.join();
        }
    }
}

/// Where a message landed: (partition, offset).
pub type Placement = (i32, i64);

/// Where one message's delivery report goes: a channel its sender awaits.
pub type Reply = tokio::sync::oneshot::Sender<KafkaResult<Placement>>;

/// A context whose every message carries a [`Reply`]: send, then await the report, as with
/// rdkafka's `FutureProducer`. Client errors are logged without flooding ([`ErrorLog`]), and
/// statistics are not exported.
#[derive(Debug, Default)]
pub struct ReplyContext {
    errors: ErrorLog,
}

impl ClientContext for ReplyContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }

    /// rdkafka's default would parse the statistics and log the whole structure every interval.
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ProducerContext for ReplyContext {
    type DeliveryOpaque = Box<Reply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Box<Reply>) {
        // A sender that stopped waiting (it timed out) no longer needs the answer.
        let _ = reply.send(match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((err, _)) => Err(err.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer};
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    const TOPIC: &str = "served";

    /// Counts delivery reports.
    #[derive(Default)]
    struct Counting {
        delivered: AtomicU64,
    }

    impl ClientContext for Counting {}

    impl ProducerContext for Counting {
        type DeliveryOpaque = ();

        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            if result.is_ok() {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn producer<C: ProducerContext + 'static>(
        mock: &MockCluster<'_, DefaultProducerContext>,
        context: C,
    ) -> ServedProducer<C> {
        let kafka: BaseProducer<C> = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("linger.ms", "5")
            .create_with_context(context)
            .expect("producer");
        ServedProducer::start(kafka, "test-reports").expect("report thread")
    }

    fn send(kafka: &BaseProducer<Counting>, count: usize) {
        for i in 0..count {
            let payload = format!("message {i}");
            kafka
                .send(BaseRecord::<str, str>::to(TOPIC).payload(&payload))
                .map_err(|(err, _)| err)
                .expect("queued");
        }
    }

    /// Waits up to `limit` for `count` reports, calling `meanwhile` between looks.
    fn delivered_within(
        producer: &BaseProducer<Counting>,
        count: u64,
        limit: Duration,
        meanwhile: impl Fn(),
    ) -> bool {
        let deadline = Instant::now() + limit;
        let delivered = || producer.context().delivered.load(Ordering::Relaxed);
        while Instant::now() < deadline {
            if delivered() >= count {
                return true;
            }
            meanwhile();
            std::thread::sleep(Duration::from_millis(10));
        }
        delivered() >= count
    }

    #[test]
    fn a_sender_serving_its_own_reports_gets_all_of_them_and_then_hands_them_back() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(TOPIC, 3, 1).expect("topic");
        let producer = producer(&mock, Counting::default());
        let kafka = producer.kafka();
        // The background thread serves reports (the connection and producer id are set up too).
        send(kafka, 10);
        assert!(delivered_within(kafka, 10, Duration::from_secs(10), || {}));

        producer.serving_own_reports(|kafka| {
            // Long enough for the background thread to notice and stand aside.
            std::thread::sleep(POLL_WAIT * 3);
            send(kafka, 50);
            // The mock cluster acknowledges within milliseconds; nobody polls, so nobody has
            // served those reports: they wait for this thread.
            assert!(
                !delivered_within(kafka, 11, Duration::from_millis(500), || {}),
                "the background thread served a report while the sender was serving its own"
            );
            assert!(
                delivered_within(kafka, 60, Duration::from_secs(10), || {
                    kafka.poll(Duration::ZERO)
                }),
                "the sender's polls served its reports"
            );
        });

        // Handed back: the background thread serves again, with nobody else polling.
        send(kafka, 40);
        assert!(
            delivered_within(kafka, 100, Duration::from_secs(10), || {}),
            "the background thread took the reports back"
        );
    }

    #[tokio::test]
    async fn each_message_with_a_reply_context_gets_its_placement_or_its_error() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(TOPIC, 1, 1).expect("topic");
        let producer = producer(&mock, ReplyContext::default());
        let (reply, answer) = tokio::sync::oneshot::channel();
        producer
            .kafka()
            .send(
                BaseRecord::<str, str, Box<Reply>>::with_opaque_to(TOPIC, Box::new(reply))
                    .payload("one"),
            )
            .map_err(|(err, _)| err)
            .expect("queued");
        let placed = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered in time")
            .expect("a report");
        assert_eq!(placed.expect("delivered"), (0, 0));

        // A produce the broker refuses for good: the report is that error, not silence.
        mock.request_errors(
            rdkafka::types::RDKafkaApiKey::Produce,
            &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let (reply, answer) = tokio::sync::oneshot::channel();
        producer
            .kafka()
            .send(
                BaseRecord::<str, str, Box<Reply>>::with_opaque_to(TOPIC, Box::new(reply))
                    .payload("two"),
            )
            .map_err(|(err, _)| err)
            .expect("queued");
        let refused = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered in time")
            .expect("a report");
        assert!(refused.is_err(), "{refused:?}");
    }
}
