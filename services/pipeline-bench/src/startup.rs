//! Keeping the producers' start-up stall out of the throughput and latency figures.
//!
//! librdkafka's idempotent producer may send nothing until it holds a ProducerId, and it asks
//! for one again only 500 ms later (sometimes 1,000 ms) when no broker connection was up yet as
//! the first metadata arrived (`rdkafka_idempotence.c`, "Coordinator not up"). Every producer
//! here (the service, the thin loop, the Python seed) starts sending either about 50 ms or about
//! 550 ms after it starts, by luck. Measured over a whole run, that luck outweighs the
//! difference between the clients. So the headline figures come from the broker's own record,
//! each message's CreateTime (librdkafka stamps it when the producer hands the message over):
//! - a producer's *steady rate* counts only the orders between the 10th and the 90th percentile
//!   of its run's CreateTimes. Before the ProducerId arrives, the producer fills librdkafka's
//!   bounded queue within milliseconds (about 11,000 orders fit the services' 6 MiB), then waits.
//!   While it waits, nothing is created. So a run more than ten times longer than that burst has
//!   both the burst and the stall in its first 10%. After the ProducerId, hand-overs go at the
//!   producer's own pace, or at the deliveries' while the queue is full. The last 10% leaves
//!   out the end of the run as well. A shorter run (CI's smoke run of 2,000 orders) is all
//!   burst, and its steady rate means nothing.
//! - a latency run counts only the orders created at least a warm-up after its first order;
//!   the orders created during the stall wait for it, and they alone would be the p99. How long
//!   the first order waited is reported beside it, so the start-up stays visible.
//!
//! These functions are pure, so that their tests can put a stall or a burst exactly where they
//! want it.

use crate::report::percentile_index;

/// The percentile ranks of the CreateTimes between which a producer's steady rate is taken
/// (the report's column header names them).
pub const STEADY_FROM_PERCENTILE: f64 = 10.0;
pub const STEADY_TO_PERCENTILE: f64 = 90.0;

/// Fewer orders than this leave less than one order in each 10% at the ends, so nothing
/// would be left out and the "steady" rate would be the whole run's.
const STEADY_MIN_ORDERS: usize = 10;

/// A producer's steady rate in orders per second, from its orders' CreateTimes (ms since the
/// epoch, in any order): the orders between the 10th and 90th percentile ranks (nearest rank,
/// as [`crate::report::percentile`]) over the time between those two orders' CreateTimes.
/// Counted as the steps from one rank to the other, so evenly spaced orders give their rate
/// exactly.
///
/// NaN when there are fewer than ten orders or when those ranks were created in the same
/// millisecond: no rate can be told from them.
pub fn steady_rate(create_times_ms: &[i64]) -> f64 {
    let count = create_times_ms.len();
    if count < STEADY_MIN_ORDERS {
        return f64::NAN;
    }
    let mut sorted = create_times_ms.to_vec();
    sorted.sort_unstable();
    let (from, to) = (
        percentile_index(count, STEADY_FROM_PERCENTILE),
        percentile_index(count, STEADY_TO_PERCENTILE),
    );
    let span_ms = sorted[to] - sorted[from];
    if span_ms <= 0 {
        return f64::NAN;
    }
    (to - from) as f64 * 1000.0 / span_ms as f64
}

/// One order of a latency run: when it was created and how long it took to be handled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySample {
    /// Its message's CreateTime, ms since the epoch.
    pub created_ms: i64,
    /// From its CreateTime to the moment the consumer had handled it.
    pub latency_ms: f64,
}

/// The latencies of the orders created at least `warmup_ms` after the run's first order (its
/// earliest CreateTime); empty when there are none.
pub fn latencies_after_warmup(samples: &[LatencySample], warmup_ms: i64) -> Vec<f64> {
    let Some(first_created) = samples.iter().map(|sample| sample.created_ms).min() else {
        return Vec::new();
    };
    samples
        .iter()
        .filter(|sample| sample.created_ms >= first_created + warmup_ms)
        .map(|sample| sample.latency_ms)
        .collect()
}

/// The latency of the run's first order: the earliest CreateTime (of several orders created in
/// that millisecond, the first in `samples`, which is the order they were handled in). NaN for
/// no orders.
pub fn first_order_latency(samples: &[LatencySample]) -> f64 {
    samples
        .iter()
        .min_by_key(|sample| sample.created_ms)
        .map_or(f64::NAN, |sample| sample.latency_ms)
}

/// The warm-up a latency run leaves out: the one asked for, but at most half the run, so that
/// a short run (CI's smoke run lasts 2 s) still has orders to measure.
pub fn latency_warmup_ms(asked_secs: f64, run_secs: u64) -> i64 {
    (asked_secs.min(run_secs as f64 / 2.0) * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` orders from `start_ms`, one every `step_ms`.
    fn evenly(start_ms: i64, count: i64, step_ms: i64) -> Vec<i64> {
        (0..count).map(|i| start_ms + i * step_ms).collect()
    }

    #[test]
    fn evenly_spaced_orders_give_their_exact_rate() {
        // One order every 2 ms is 500 orders/s, whatever the count.
        for count in [10, 11, 100, 1_001, 200_000] {
            assert_eq!(
                steady_rate(&evenly(1_000, count, 2)),
                500.0,
                "{count} orders"
            );
        }
    }

    #[test]
    fn the_order_the_times_come_in_does_not_matter() {
        let mut times = evenly(0, 1_000, 4);
        times.reverse();
        times.swap(3, 700);
        assert_eq!(steady_rate(&times), 250.0);
    }

    #[test]
    fn a_start_up_burst_and_stall_in_the_first_tenth_does_not_change_the_rate() {
        // 99 orders queued in the first millisecond, then nothing for 550 ms, then one order
        // every millisecond: the steady 1,000 orders/s, not the 1,000 orders over 1.45 s.
        let mut times = vec![0; 99];
        times.extend(evenly(550, 901, 1));
        assert_eq!(times.len(), 1_000);
        assert_eq!(steady_rate(&times), 1_000.0);
    }

    #[test]
    fn a_burst_or_a_slow_tail_in_the_last_tenth_does_not_change_the_rate() {
        let steady = evenly(0, 900, 1);
        let mut burst = steady.clone();
        burst.extend([900; 100]);
        assert_eq!(steady_rate(&burst), 1_000.0);
        let mut slow_tail = steady;
        slow_tail.extend(evenly(1_000, 100, 100));
        assert_eq!(steady_rate(&slow_tail), 1_000.0);
    }

    #[test]
    fn a_stall_inside_the_steady_part_does_count() {
        // 1,000 orders, one per ms, but a 1 s stall at the middle: 800 steps over 1.8 s.
        let mut times = evenly(0, 500, 1);
        times.extend(evenly(1_500, 500, 1));
        assert!((steady_rate(&times) - 444.444).abs() < 0.001);
    }

    #[test]
    fn too_few_orders_or_no_time_between_them_give_nan_not_infinity() {
        assert!(steady_rate(&[]).is_nan());
        assert!(steady_rate(&evenly(0, 9, 1)).is_nan());
        assert!(steady_rate(&[42; 1_000]).is_nan());
        // All but the ends in one millisecond: still no time between the ranks.
        let mut times = vec![7; 998];
        times.extend([0, 100]);
        assert!(steady_rate(&times).is_nan());
    }

    fn sample(created_ms: i64, latency_ms: f64) -> LatencySample {
        LatencySample {
            created_ms,
            latency_ms,
        }
    }

    #[test]
    fn the_warm_up_leaves_out_exactly_the_orders_created_before_it_ends() {
        let samples = [
            sample(1_003, 7.0), // handled out of order: the run starts at 1,000
            sample(1_000, 550.0),
            sample(2_999, 9.0),
            sample(3_000, 5.0),
            sample(3_500, 6.0),
        ];
        assert_eq!(latencies_after_warmup(&samples, 2_000), vec![5.0, 6.0]);
        assert_eq!(latencies_after_warmup(&samples, 0).len(), 5);
        assert_eq!(latencies_after_warmup(&[], 2_000), Vec::<f64>::new());
    }

    #[test]
    fn the_first_order_is_the_earliest_created_not_the_first_handled() {
        let samples = [
            sample(1_003, 7.0),
            sample(1_000, 550.0),
            sample(1_000, 540.0),
            sample(1_500, 6.0),
        ];
        assert_eq!(first_order_latency(&samples), 550.0);
        assert!(first_order_latency(&[]).is_nan());
    }

    #[test]
    fn the_warm_up_is_at_most_half_the_run() {
        assert_eq!(latency_warmup_ms(2.0, 10), 2_000);
        assert_eq!(latency_warmup_ms(2.0, 2), 1_000);
        assert_eq!(latency_warmup_ms(2.0, 3), 1_500);
        assert_eq!(latency_warmup_ms(0.25, 10), 250);
        assert_eq!(latency_warmup_ms(0.0, 10), 0);
    }
}
