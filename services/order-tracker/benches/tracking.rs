//! The tracker's per-message cost without Kafka: decoding an order and updating statistics,
//! alerts and the duplicate memory. `cargo bench -p order-tracker`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use order_contract::Order;
use order_producer::generator::OrderGenerator;
use order_tracker::stats::{AlertRules, SeenOrders, Statistics};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

fn payloads(count: usize) -> Vec<Vec<u8>> {
    let mut generator = OrderGenerator::seeded(300, 42);
    (0..count)
        .map(|_| generator.next_order().to_json())
        .collect()
}

fn decode(c: &mut Criterion) {
    let payloads = payloads(1000);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("1000 orders", |b| {
        b.iter(|| {
            for payload in &payloads {
                black_box(Order::decode(Some(payload), 64 * 1024).ok());
            }
        })
    });
    group.finish();
}

fn track(c: &mut Criterion) {
    let payloads = payloads(1000);
    let orders: Vec<Order> = payloads
        .iter()
        .filter_map(|p| Order::decode(Some(p), 64 * 1024).ok())
        .collect();
    let mut group = c.benchmark_group("track");
    group.throughput(Throughput::Elements(orders.len() as u64));
    // Fresh state per batch, so every order is new: the cost of a first sighting.
    group.bench_function("1000 orders: dedup, statistics, alerts", |b| {
        b.iter_batched(
            || {
                (
                    Statistics::default(),
                    SeenOrders::new(NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)),
                    AlertRules::new(15_000, 5, Duration::from_secs(60)),
                )
            },
            |(mut statistics, mut seen, mut alerts)| {
                for order in &orders {
                    if seen.first_sighting(order.order_id) {
                        statistics.record(order);
                    }
                    black_box(alerts.check(order));
                }
                statistics
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode, track);
criterion_main!(benches);
