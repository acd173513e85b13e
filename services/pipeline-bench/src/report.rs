//! Turning runs into the printed tables: medians over rounds, and ratios taken pair by pair
//! within a round (so that a machine that slows down between rounds still compares fairly).

use std::collections::BTreeMap;
use std::fmt::Write;

/// The median of the finite `values` (the mean of the middle two for an even count); NaN for
/// none (a run too short to tell a rate gives NaN, and the table says "n/a" rather than 0).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    sorted[percentile_index(sorted.len(), p)]
}

/// Where the `p`-th percentile (0..=100, nearest rank) is among `count` sorted values (at
/// least one).
pub fn percentile_index(count: usize, p: f64) -> usize {
    let rank = ((p / 100.0) * count as f64).ceil() as usize;
    rank.clamp(1, count) - 1
}

/// One row's figures, one entry per round.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub per_round: Vec<f64>,
}

impl Series {
    pub fn push(&mut self, value: f64) {
        self.per_round.push(value);
    }

    pub fn median(&self) -> f64 {
        median(&self.per_round)
    }

    /// The smallest finite figure; NaN for none.
    pub fn min(&self) -> f64 {
        self.finite().reduce(f64::min).unwrap_or(f64::NAN)
    }

    /// The largest finite figure; NaN for none.
    pub fn max(&self) -> f64 {
        self.finite().reduce(f64::max).unwrap_or(f64::NAN)
    }

    fn finite(&self) -> impl Iterator<Item = f64> + '_ {
        self.per_round.iter().copied().filter(|v| v.is_finite())
    }

    /// The median over rounds of `self / other` in the same round.
    pub fn ratio_to(&self, other: &Series) -> f64 {
        let ratios: Vec<f64> = self
            .per_round
            .iter()
            .zip(&other.per_round)
            .map(|(a, b)| a / b)
            .collect();
        median(&ratios)
    }
}

/// Throughput, memory and CPU of one row over all rounds.
#[derive(Debug, Clone, Default)]
pub struct ThroughputRow {
    /// The headline rate: a producer's steady rate (`crate::startup::steady_rate`), a
    /// consumer's from its first order handled to its last.
    pub orders_per_sec: Series,
    /// Producers only: orders over the process's whole wall time, start-up stall included.
    pub whole_run_orders_per_sec: Series,
    pub peak_rss_mb: Series,
    pub cpu_us_per_order: Series,
}

/// Latency of one producer/consumer pair (or of the HTTP intake) over all rounds.
#[derive(Debug, Clone, Default)]
pub struct LatencyRow {
    pub p50_ms: Series,
    pub p99_ms: Series,
    /// Pairs only: how long the run's first order took, start-up stall included.
    pub first_order_ms: Series,
}

/// The HTTP intake's figures over all rounds: accepted orders per second, memory and CPU of
/// the producer process, and response times.
#[derive(Debug, Clone, Default)]
pub struct IntakeRow {
    pub throughput: ThroughputRow,
    pub latency: LatencyRow,
}

/// The HTTP intake's table: one row, at the stated concurrency.
pub fn intake_table(label: &str, concurrency: usize, orders: u64, row: &IntakeRow) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| `POST /orders`, {concurrency} concurrent clients, {} orders per run | accepted orders/s, median (min-max) | p50 ms | p99 ms | peak RSS | CPU us/order |",
        thousands(orders as f64)
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        out,
        "| {label} | {} ({}-{}) | {:.0} | {:.0} | {:.0} MB | {:.1} |",
        thousands(row.throughput.orders_per_sec.median()),
        thousands(row.throughput.orders_per_sec.min()),
        thousands(row.throughput.orders_per_sec.max()),
        row.latency.p50_ms.median(),
        row.latency.p99_ms.median(),
        row.throughput.peak_rss_mb.median(),
        row.throughput.cpu_us_per_order.median(),
    );
    out
}

/// `128,400`; `n/a` for NaN or infinity.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let whole = value.round() as i64;
    let digits = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 { format!("-{out}") } else { out }
}

/// `value` with `decimals` decimals; `n/a` for NaN or infinity.
fn fixed(value: f64, decimals: usize) -> String {
    with_unit(value, decimals, "")
}

/// `value` with `decimals` decimals followed by `unit` (`1.02x`, `58%`), or `n/a` alone.
fn with_unit(value: f64, decimals: usize, unit: &str) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}{unit}")
    } else {
        "n/a".into()
    }
}

/// A throughput table: `rows` in order; each row may name a loop and a Python row to compare
/// against (by label). `rate` names the headline rate column; `whole_run` adds the producers'
/// whole-run rate as the last column.
pub fn throughput_table(
    title: &str,
    rate: &str,
    whole_run: bool,
    rows: &[(&str, Option<&str>, Option<&str>)],
    data: &BTreeMap<String, ThroughputRow>,
) -> String {
    let mut out = String::new();
    let (whole_run_header, whole_run_rule) = if whole_run {
        (" whole run orders/s, median (min-max) |", " --- |")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| {title} | {rate}, median (min-max) | vs loop | vs Python | peak RSS | CPU us/order |{whole_run_header}"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |{whole_run_rule}");
    for (label, loop_label, python_label) in rows {
        let Some(row) = data.get(*label) else {
            continue;
        };
        let versus =
            |other: &Option<&str>, as_percent: bool| match other.and_then(|name| data.get(name)) {
                Some(reference) => {
                    let ratio = row.orders_per_sec.ratio_to(&reference.orders_per_sec);
                    if as_percent {
                        with_unit(ratio * 100.0, 0, "%")
                    } else {
                        with_unit(ratio, 1, "x")
                    }
                }
                None => String::new(),
            };
        let whole_run_cell = if whole_run {
            let series = &row.whole_run_orders_per_sec;
            format!(
                " {} ({}-{}) |",
                thousands(series.median()),
                thousands(series.min()),
                thousands(series.max())
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {label} | {} ({}-{}) | {} | {} | {:.0} MB | {:.1} |{whole_run_cell}",
            thousands(row.orders_per_sec.median()),
            thousands(row.orders_per_sec.min()),
            thousands(row.orders_per_sec.max()),
            versus(loop_label, true),
            versus(python_label, false),
            row.peak_rss_mb.median(),
            row.cpu_us_per_order.median(),
        );
    }
    out
}

/// The latency table; each row compared with the raw-client row named. The percentiles are of
/// the orders created after the first `warmup_ms`; the last column is the run's first order.
pub fn latency_table(
    rate: f64,
    warmup_ms: i64,
    rows: &[(&str, Option<&str>)],
    data: &BTreeMap<String, LatencyRow>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| end to end at {} orders/s (CreateTime to handled), orders created after the first {} s | p50 ms | p99 ms | p50 vs raw | p99 vs raw | first order ms |",
        thousands(rate),
        warmup_ms as f64 / 1000.0,
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for (label, raw_label) in rows {
        let Some(row) = data.get(*label) else {
            continue;
        };
        let (p50_ratio, p99_ratio) = match raw_label.and_then(|name| data.get(name)) {
            Some(raw) => (
                with_unit(row.p50_ms.ratio_to(&raw.p50_ms), 2, "x"),
                with_unit(row.p99_ms.ratio_to(&raw.p99_ms), 2, "x"),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {p50_ratio} | {p99_ratio} | {} |",
            fixed(row.p50_ms.median(), 0),
            fixed(row.p99_ms.median(), 0),
            fixed(row.first_order_ms.median(), 0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), 50.0);
        assert_eq!(percentile(&hundred, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn rounds_that_could_tell_no_figure_are_left_out_and_none_at_all_reads_n_a() {
        let some = Series {
            per_round: vec![f64::NAN, 300.0, f64::INFINITY, 100.0],
        };
        assert_eq!(
            (some.median(), some.min(), some.max()),
            (200.0, 100.0, 300.0)
        );
        let none = Series {
            per_round: vec![f64::NAN],
        };
        assert!(none.median().is_nan() && none.min().is_nan() && none.max().is_nan());
        assert_eq!(thousands(none.median()), "n/a");
        assert_eq!(fixed(f64::INFINITY, 2), "n/a");
        assert_eq!(fixed(1.234, 2), "1.23");
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        let fast = Series {
            per_round: vec![100.0, 50.0, 100.0],
        };
        let slow = Series {
            per_round: vec![50.0, 25.0, 50.0],
        };
        assert_eq!(fast.ratio_to(&slow), 2.0);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
