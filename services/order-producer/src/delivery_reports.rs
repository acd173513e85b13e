//! The producer, and which thread serves its delivery reports.
//!
//! librdkafka hands every delivery report back through a queue that the application must poll;
//! the report callback ([`OrderDeliveryContext`]'s `delivery`) runs on the polling thread, and
//! that thread also frees the message: librdkafka's copy of it, its headers and its
//! [`DeliveryNote`](crate::DeliveryNote). rdkafka's `ThreadedProducer` polls from a thread of
//! its own, so every message was allocated on the producing thread and freed on another. glibc
//! then hands that memory back to the producing thread only through its slow paths (a locked
//! arena, bins to sort): running flat out, a third of the producing thread's time went to
//! `malloc` and `free`, and that thread sets the producer's rate. The thinnest produce loop polls
//! on the thread that sends, and frees where it allocated.
//!
//! So two threads can serve the reports, never both for long:
//! - a background thread ([`OrderProducer::start`]) polls whenever no sender does: for paced
//!   generation, for the HTTP intake (whose requests wait for their reports), and for the final
//!   flush;
//! - a sender that runs flat out calls [`OrderProducer::serving_own_reports`]: while it works
//!   the background thread stands aside (it notices within one poll, [`POLL_WAIT`]), and the
//!   sender polls between sends (every few, see `SERVE_REPORTS_EVERY`), as the thinnest loop
//!   does. Any report that arrives while it works is served by it, the intake's too, so nobody
//!   waits for the background thread.
//!
//! Either way each report is served exactly once (librdkafka's queue hands each event to one
//! poller), so the delivery guarantees in the crate header do not depend on who polls.

use crate::OrderDeliveryContext;
use rdkafka::producer::{BaseProducer, BaseRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The Kafka producer of orders, as librdkafka builds it.
pub(crate) type Kafka = BaseProducer<OrderDeliveryContext>;

/// One message to send: an order's record with its delivery note.
pub(crate) type OrderRecord<'a> = BaseRecord<'a, str, [u8], Box<crate::DeliveryNote>>;

/// How long one poll of the background thread waits for reports, and so how soon it notices a
/// sender taking over or handing back, and the producer being dropped.
///
/// Why the extra 20 microseconds: rdkafka's `poll` waits in whole milliseconds, rounding the
/// time left *down*, and polls again without waiting until its deadline has passed. Asked for
/// exactly 100 ms, librdkafka waited 99 and the last millisecond was spent polling in a loop:
/// about 1% of a core for an idle producer. With the deadline a little past the 100 ms that
/// librdkafka does wait, the wait's own wake-up lateness carries it past the deadline. That
/// holds for a wait that no event cuts short (an idle producer's); after a report the time
/// left has a fraction of a millisecond again, which is still spent polling.
pub(crate) const POLL_WAIT: Duration = Duration::from_micros(100_020);

/// The orders producer with its background report thread; shared by the generator and the
/// HTTP intake. Dropping it stops that thread (within [`POLL_WAIT`]).
pub(crate) struct OrderProducer {
    shared: Arc<Shared>,
    background: Option<JoinHandle<()>>,
}

struct Shared {
    kafka: Kafka,
    /// A sender is serving the reports itself: the background thread stands aside.
    sender_serves: AtomicBool,
    stop: AtomicBool,
}

impl OrderProducer {
    /// Wraps `kafka` and starts the background thread that serves its reports.
    pub(crate) fn start(kafka: Kafka) -> std::io::Result<OrderProducer> {
        let shared = Arc::new(Shared {
            kafka,
            sender_serves: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let background = std::thread::Builder::new()
            .name("delivery-reports".into())
            .spawn(move || {
                while !serving.stop.load(Ordering::Acquire) {
                    if serving.sender_serves.load(Ordering::Acquire) {
                        std::thread::park_timeout(POLL_WAIT);
                    } else {
                        serving.kafka.poll(POLL_WAIT);
                    }
                }
            })?;
        Ok(OrderProducer {
            shared,
            background: Some(background),
        })
    }

    /// The librdkafka producer: to send (its reports are served as the module header says), and
    /// for metadata, flushing, purging and counting what is in flight.
    pub(crate) fn kafka(&self) -> &Kafka {
        &self.shared.kafka
    }

    /// Runs `work` on this thread while the background thread stands aside: `work` must poll
    /// the producer it is given (between sends, and while it waits for room in the queue),
    /// since nobody else serves the reports meanwhile. Blocking; for a flat-out sender only.
    pub(crate) fn serving_own_reports<T>(&self, work: impl FnOnce(&Kafka) -> T) -> T {
        /// Hands the reports back even if `work` panics, so that a flush still sees them served.
        struct HandBack<'a>(&'a OrderProducer);
        impl Drop for HandBack<'_> {
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

impl std::fmt::Debug for OrderProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderProducer")
            .field("sender_serves", &self.shared.sender_serves)
            .finish_non_exhaustive()
    }
}

impl Drop for OrderProducer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(background) = self.background.take() {
            background.thread().unpark();
            let _ = background.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProducerConfig;
    use crate::{DeliveryNote, ProducerMetrics, order_record};
    use order_contract::samples::OrderGenerator;
    use rdkafka::mocking::MockCluster;
    use service_runtime::kafka::ErrorLog;
    use std::time::Instant;

    const TOPIC: &str = "orders";

    fn producer_on(
        mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    ) -> (OrderProducer, ProducerMetrics) {
        let vars = vec![(
            "KAFKA_BOOTSTRAP_SERVERS".to_string(),
            mock.bootstrap_servers(),
        )];
        let config = ProducerConfig::from_vars(&vars).expect("config");
        let metrics = ProducerMetrics::default();
        let kafka: Kafka = config
            .producer
            .create_with_context(OrderDeliveryContext {
                metrics: metrics.clone(),
                errors: ErrorLog::default(),
            })
            .expect("producer");
        (OrderProducer::start(kafka).expect("report thread"), metrics)
    }

    fn send_orders(send: impl Fn(OrderRecord<'_>) -> bool, count: usize) {
        let mut generator = OrderGenerator::seeded(10, 7);
        for _ in 0..count {
            let order = generator.next_order();
            let payload = order.to_json();
            assert!(send(order_record(
                TOPIC,
                &order,
                &payload,
                DeliveryNote::of(&order)
            )));
        }
    }

    /// Waits up to `limit` for `delivered` to reach `count`, calling `meanwhile` between looks.
    fn delivered_within(
        metrics: &ProducerMetrics,
        count: u64,
        limit: Duration,
        meanwhile: impl Fn(),
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if metrics.delivered.get() >= count {
                return true;
            }
            meanwhile();
            std::thread::sleep(Duration::from_millis(10));
        }
        metrics.delivered.get() >= count
    }

    #[test]
    fn a_sender_serving_its_own_reports_gets_all_of_them_and_then_hands_them_back() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(TOPIC, 3, 1).expect("topic");
        let (producer, metrics) = producer_on(&mock);
        let by_background = |record: OrderRecord<'_>| producer.kafka().send(record).is_ok();
        // The background thread serves reports (the connection and producer id are set up too).
        send_orders(by_background, 10);
        assert!(delivered_within(
            &metrics,
            10,
            Duration::from_secs(10),
            || {}
        ));

        producer.serving_own_reports(|kafka| {
            // Long enough for the background thread to notice and stand aside.
            std::thread::sleep(POLL_WAIT * 3);
            send_orders(|record| kafka.send(record).is_ok(), 50);
            // The mock cluster acknowledges within milliseconds; nobody polls, so nobody has
            // served those reports: they wait for this thread.
            assert!(
                !delivered_within(&metrics, 11, Duration::from_millis(500), || {}),
                "the background thread served a report while the sender was serving its own"
            );
            assert!(
                delivered_within(&metrics, 60, Duration::from_secs(10), || {
                    kafka.poll(Duration::ZERO)
                }),
                "the sender's polls served its reports"
            );
        });

        // Handed back: the background thread serves again, with nobody else polling.
        send_orders(by_background, 40);
        assert!(
            delivered_within(&metrics, 100, Duration::from_secs(10), || {}),
            "the background thread took the reports back"
        );
        assert_eq!(metrics.failed.get(), 0);
    }
}
