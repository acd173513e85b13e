//! The tracker's per-message cost without Kafka, measured on the real handling
//! ([`MessageHandler::handle`]: decode, duplicate memory, statistics, alerts) and, for
//! comparison in the same run, on decoding alone. `cargo bench -p order-tracker`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use order_contract::Order;
use order_contract::samples::OrderGenerator;
use order_tracker::handling::MessageHandler;
use order_tracker::stats::AlertRules;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

const MAX_ORDER_BYTES: usize = 64 * 1024;

fn payloads(count: usize) -> Vec<Vec<u8>> {
    let mut generator = OrderGenerator::seeded(300, 42);
    (0..count)
        .map(|_| generator.next_order().to_json())
        .collect()
}

/// A handler with the tracker's default settings.
fn handler() -> MessageHandler {
    MessageHandler::new(
        NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
        AlertRules::new(15_000, 5, Duration::from_secs(60)),
        MAX_ORDER_BYTES,
    )
}

fn decode(c: &mut Criterion) {
    let payloads = payloads(1000);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("1000 orders", |b| {
        b.iter(|| {
            for payload in &payloads {
                black_box(Order::decode(Some(payload), MAX_ORDER_BYTES).ok());
            }
        })
    });
    group.finish();
}

fn handle(c: &mut Criterion) {
    let payloads = payloads(1000);
    let mut group = c.benchmark_group("handle");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    // Fresh state per batch, so every order is new: the cost of a first sighting.
    group.bench_function("1000 new orders", |b| {
        b.iter_batched(
            handler,
            |mut handler| {
                for payload in &payloads {
                    black_box(handler.handle(Some(payload)));
                }
                handler
            },
            BatchSize::LargeInput,
        )
    });
    // The same orders again: every one a recognised redelivery (a replay after a crash).
    group.bench_function("1000 redelivered orders", |b| {
        b.iter_batched(
            || {
                let mut handler = handler();
                for payload in &payloads {
                    handler.handle(Some(payload));
                }
                handler
            },
            |mut handler| {
                for payload in &payloads {
                    black_box(handler.handle(Some(payload)));
                }
                handler
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode, handle);
criterion_main!(benches);
