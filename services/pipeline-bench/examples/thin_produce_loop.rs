//! The thinnest produce loop rdkafka allows: what `order-producer` is measured against.
//!
//! Same librdkafka build and the same client settings as the service (they come from
//! `service_runtime::kafka`, so acks=all, idempotence, linger, lz4, queue limits and any
//! `KAFKA_*` override are the producer's own), the same payload bytes (real orders from the
//! producer's generator, serialised before the loop starts), and a delivery report for every
//! message, counted, served on the sending thread every few sends as the service's flat-out
//! generator serves its own (`order_producer::SERVE_REPORTS_EVERY`). What it leaves out is exactly what the service adds per order: generating
//! and serialising it, its headers, its delivery note and log line, its metrics.
//!
//!   thin_produce_loop --topic T --count N [--rate PER_SECOND] [--headers]
//!
//! With `--headers` every message also carries the order contract's two headers, built as the
//! service builds them (`order_producer::contract_headers`): not part of the thinnest loop, but
//! a row of its own in the benchmark, so that what the contract's headers cost (librdkafka
//! allocates them per message, and they are bytes to compress, send and store) is told apart
//! from what the service's own code costs.
//!
//! Prints one JSON line at the end: `{"delivered", "failed", "payload_bytes", "elapsed_ms"}`;
//! exits 1 if any delivery failed. With `--rate` it paces itself on an absolute schedule (for
//! the latency runs), otherwise it sends flat out.

use order_contract::samples::OrderGenerator;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Distinct orders cycled through: enough that a batch never repeats itself (which would
/// flatter LZ4), few enough to cost no memory worth counting.
const POOL: usize = 1000;

#[derive(Default)]
struct CountDeliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for CountDeliveries {}

impl ProducerContext for CountDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn main() -> ExitCode {
    let args = pipeline_bench::Args::from_env();
    let topic = args.required("--topic");
    let count: u64 = args.number("--count");
    let rate: Option<f64> = args.optional_number("--rate");
    let with_headers = args.flag("--headers");

    let vars = service_runtime::config::process_env();
    let producer: BaseProducer<CountDeliveries> = pipeline_bench::kafka_settings(&vars)
        .and_then(|settings| settings.producer("thin-produce-loop"))
        .unwrap_or_else(|err| pipeline_bench::fail(&err))
        .create_with_context(CountDeliveries::default())
        .unwrap_or_else(|err| pipeline_bench::fail(&err));

    let mut generator = OrderGenerator::seeded(300, 1);
    let pool: Vec<(String, Vec<u8>)> = (0..POOL)
        .map(|_| {
            let order = generator.next_order();
            (order.customer_id.to_string(), order.to_json())
        })
        .collect();
    let payload_bytes = pool.iter().map(|(_, p)| p.len()).sum::<usize>() / POOL;

    let started = Instant::now();
    for i in 0..count {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            while Instant::now() < due {
                producer.poll(due.saturating_duration_since(Instant::now()));
            }
        }
        let (key, payload) = &pool[(i % POOL as u64) as usize];
        let mut record = BaseRecord::to(&topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        if with_headers {
            record = record.headers(order_producer::contract_headers(
                order_contract::SCHEMA_VERSION,
            ));
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => pipeline_bench::fail(&err),
            }
        }
        // As often as the service's flat-out generator looks at its reports: one look serves a
        // whole batch's report, and looking after every send cost the service a twentieth.
        if (i + 1).is_multiple_of(order_producer::SERVE_REPORTS_EVERY) {
            producer.poll(Duration::ZERO);
        }
    }
    // Flushed as the services flush (`service_runtime::kafka::flush_promptly`): rdkafka's own
    // `flush` polls in steps of 100 ms that never end early, which would charge this loop a
    // tenth of a second the services no longer pay. This loop has no polling thread, so it
    // serves its delivery reports itself between the checks.
    let flush_deadline = Instant::now() + Duration::from_secs(60);
    let flushed = loop {
        match producer.flush(Duration::ZERO) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if Instant::now() < flush_deadline =>
            {
                producer.poll(Duration::from_millis(1));
            }
            other => break other,
        }
    };
    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed);
    let failed = context.failed.load(Ordering::Relaxed);
    pipeline_bench::print_json(&serde_json::json!({
        "delivered": delivered,
        "failed": failed,
        "payload_bytes": payload_bytes,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
    }));
    if flushed.is_ok() && failed == 0 && delivered == count {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
